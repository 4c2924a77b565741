"""List queries: ``limit``, ``marker``, sort, ``fields``, filters and the page links, read
the way each OpenStack API reads them.

A list handler turns the query string into one ``ListRequest`` with its API's dialect::

    req = NOVA.parse(request.query_params, SERVERS, admin=context.is_admin)

and hands ``req`` to the domain, which pages in SQL (``stratus.core.db.paging``): it orders
by ``req.sort`` (plus a unique tie-breaker), starts after ``req.marker`` and fetches
``req.limit + 1`` rows to learn whether more follow. The handler then adds the dialect's
links to the body::

    body.update(NOVA.links(req, urls.url("servers"), next_marker=last_id_or_None))

The dialects differ in every detail clients can see, and those details are kept:

* Nova: repeated ``sort_key``/``sort_dir`` (fewer dirs than keys: the first dir, or desc;
  default ``created_at``), admin-only keys silently dropped for others; ``limit`` >= 0 with
  no ceiling; ``servers_links`` rel=next carrying every parameter with the new marker.
* Neutron: ``sort_key``/``sort_dir`` in equal numbers (dirs default asc), ``fields``,
  ``limit`` 0 meaning none, ``page_reverse``; every other parameter a filter (several
  values: any of them); ``<collection>_links`` with next and, after a marker, previous.
* Glance: ``sort=k:dir,k2`` or ``sort_key`` (with one ``sort_dir`` or one per key), default
  ``created_at`` desc; ``limit`` defaults and is capped; ``first`` and ``next`` URLs.
* Cinder: ``sort=k:dir,k2`` or a single ``sort_key``/``sort_dir``; ``limit`` capped (also
  when absent), ``offset``; ``volumes_links`` rel=next with the effective limit.

Sort keys are ``stratus.core.db.paging.SortKey`` (the API's name of a sort column and a
direction), so ``req.sort`` goes to ``paging.page`` as it is. Markers are looked up by the
domain (only it knows visibility); ``paging`` raises ``MarkerNotFound`` for an unknown one,
which an API whose words differ turns into its dialect's ``marker_not_found(marker)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode

from stratus.core.db.paging import SortKey
from stratus.core.exceptions import BadRequest, StratusError
from stratus.core.web import params as bools


@dataclass(frozen=True)
class ListSpec:
    """What one collection accepts: its name (``servers``: the body key and ``*_links``),
    its sort keys (empty: not checked here), and its page sizes."""

    collection: str
    sort_keys: Collection[str] = ()
    #: Sort keys only admins may use (Nova drops them for others, silently).
    admin_sort_keys: Collection[str] = ()
    #: Page size when ``limit`` is absent (None: everything).
    default_limit: int | None = None
    #: Ceiling on ``limit`` (None: none).
    max_limit: int | None = None


@dataclass(frozen=True)
class ListRequest:
    """One list request, parsed. Empty ``sort`` means the collection's default order."""

    limit: int | None = None
    marker: str | None = None
    sort: tuple[SortKey, ...] = ()
    fields: tuple[str, ...] = ()
    #: Every other query parameter: name → values in the order sent.
    filters: dict[str, list[str]] = field(default_factory=dict)
    offset: int = 0
    #: Neutron's ``page_reverse``: walk the order backwards from the marker.
    page_reverse: bool = False
    #: The query string as sent (name, value), from which the page links are built.
    query: tuple[tuple[str, str], ...] = ()

    def filter(self, name: str) -> str | None:
        """The last value sent for filter ``name`` (as ``dict(query_params)`` would)."""
        values = self.filters.get(name)
        return values[-1] if values else None

    def without(self, *names: str) -> ListRequest:
        """This request with parameters ``names`` forgotten (not filters, not in links)."""
        return dataclasses.replace(
            self, filters={k: v for k, v in self.filters.items() if k not in names},
            query=tuple((k, v) for k, v in self.query if k not in names))


class QueryLike(Protocol):
    def multi_items(self) -> list[tuple[str, str]]: ...


Params = QueryLike | Iterable[tuple[str, str]]


def _pairs(params: Params) -> tuple[tuple[str, str], ...]:
    if hasattr(params, "multi_items"):
        return tuple(params.multi_items())
    return tuple(params)


def _last(pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Name → last value; the order of first appearance (``dict(QueryParams)``)."""
    return {k: v for k, v in pairs}


def _all(pairs: Sequence[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in pairs if k == name]


def _filters(pairs: Sequence[tuple[str, str]], control: Collection[str]) -> dict[str, list[str]]:
    filters: dict[str, list[str]] = {}
    for key, value in pairs:
        if key not in control:
            filters.setdefault(key, []).append(value)
    return filters


def _query_string(items: Iterable[tuple[str, str]]) -> str:
    """Nova's and Cinder's link query: ``k=v`` joined by ``&``, as sent (not re-encoded)."""
    return "&".join(f"{k}={v}" for k, v in items)


class ListDialect:
    """One API's reading of list parameters and its page links."""

    name = "base"
    control: frozenset[str] = frozenset({"limit", "marker", "sort_key", "sort_dir"})
    error: type[StratusError] = BadRequest

    def parse(self, params: Params, spec: ListSpec, *, admin: bool = False) -> ListRequest:
        raise NotImplementedError

    def links(self, req: ListRequest, spec: ListSpec, url: str, *, next_marker: str | None,
              previous_marker: str | None = None) -> dict[str, Any]:
        """The body keys this API adds for paging; ``url`` is the collection's URL."""
        raise NotImplementedError

    def marker_not_found(self, marker: str) -> StratusError:
        return self.error(f"Marker {marker} could not be found.")

    def raising(self, error: type[StratusError]) -> ListDialect:
        """This dialect with its errors raised as ``error`` (an API's own subclass)."""
        clone = type(self)()
        clone.error = error
        return clone


class NovaListing(ListDialect):
    name = "nova"
    _limit = dataclasses.replace(
        bools.NOVA, int_message=lambda name, *_: f"{name} must be an integer",
        min_message=lambda name, _, minimum: f"{name} must be >= {minimum}")

    def parse(self, params: Params, spec: ListSpec, *, admin: bool = False) -> ListRequest:
        pairs = _pairs(params)
        keys = _all(pairs, "sort_key") or ["created_at"]
        dirs = _all(pairs, "sort_dir")
        if len(dirs) > len(keys):
            raise self.error("There are more sort_dir than sort_key values.")
        sort: list[SortKey] = []
        for index, key in enumerate(keys):
            direction = dirs[index] if index < len(dirs) else (dirs[0] if dirs else "desc")
            if direction not in ("asc", "desc"):
                raise self.error(f"Invalid sort_dir {direction!r}.")
            if spec.sort_keys and key not in spec.sort_keys:
                raise self.error(f"Invalid sort_key {key!r}.")
            if key in spec.admin_sort_keys and not admin:
                continue
            sort.append(SortKey(key, direction))  # type: ignore[arg-type]
        last = _last(pairs)
        limit_text = last.get("limit")
        limit = (self._limit.raising(self.error).integer("limit", limit_text)
                 if limit_text is not None else spec.default_limit)
        if limit is not None and spec.max_limit is not None:
            limit = min(limit, spec.max_limit)
        return ListRequest(limit=limit, marker=last.get("marker"), sort=tuple(sort),
                           filters=_filters(pairs, self.control), query=pairs)

    def marker_not_found(self, marker: str) -> StratusError:
        return self.error(f"marker [{marker}] not found")

    def links(self, req: ListRequest, spec: ListSpec, url: str, *, next_marker: str | None,
              previous_marker: str | None = None) -> dict[str, Any]:
        if next_marker is None:
            return {}
        query = _last(req.query)
        query["marker"] = next_marker
        return {f"{spec.collection}_links": [{"rel": "next",
                                              "href": f"{url}?{_query_string(query.items())}"}]}


class NeutronListing(ListDialect):
    name = "neutron"
    control = frozenset({"fields", "sort_key", "sort_dir", "limit", "marker", "page_reverse"})
    #: Parameters clients send that are not attributes (accepted and ignored).
    ignored = frozenset({"verbose"})

    def parse(self, params: Params, spec: ListSpec, *, admin: bool = False) -> ListRequest:
        pairs = _pairs(params)
        keys = _all(pairs, "sort_key")
        dirs = _all(pairs, "sort_dir")
        if dirs and len(dirs) != len(keys):
            raise self.error("The number of sort_keys and sort_dirs must be same")
        sort: list[SortKey] = []
        for index, key in enumerate(keys):
            direction = (dirs[index] if dirs else "asc").lower()
            if direction not in ("asc", "desc"):
                raise self.error(f"{dirs[index]} is invalid value for sort_dir, valid value "
                                 "is 'asc' and 'desc'")
            if spec.sort_keys and key not in spec.sort_keys:
                raise self.error(f"{key} is invalid attribute for sort_keys")
            sort.append(SortKey(key, direction))  # type: ignore[arg-type]
        last = _last(pairs)
        dialect = bools.NEUTRON.raising(self.error)
        limit = dialect.optional_integer("limit", last.get("limit"))
        if limit is None:
            limit = spec.default_limit
        elif spec.max_limit is not None:
            limit = min(limit, spec.max_limit)
        return ListRequest(
            limit=limit or None, marker=last.get("marker") or None, sort=tuple(sort),
            fields=tuple(f for f in _all(pairs, "fields") if f),
            filters=_filters(pairs, self.control | self.ignored),
            page_reverse=bools.NEUTRON_FLAG.boolean("page_reverse", last.get("page_reverse", "")),
            query=pairs)

    def links(self, req: ListRequest, spec: ListSpec, url: str, *, next_marker: str | None,
              previous_marker: str | None = None) -> dict[str, Any]:
        """``next`` after a full page; ``previous`` when this page started at a marker."""
        if req.limit is None:
            return {}
        links = []
        if next_marker is not None:
            links.append({"rel": "next", "href": self._page_url(req, url, next_marker)})
        if req.marker is not None and previous_marker is not None:
            links.append({"rel": "previous",
                          "href": self._page_url(req, url, previous_marker, reverse=True)})
        return {f"{spec.collection}_links": links} if links else {}

    @staticmethod
    def _page_url(req: ListRequest, url: str, marker: str, reverse: bool = False) -> str:
        params: list[tuple[str, str]] = []
        for key, values in req.filters.items():
            params.extend((key, v) for v in values)
        params.extend(("fields", f) for f in req.fields)
        for sort in req.sort:
            params.extend((("sort_key", sort.column), ("sort_dir", sort.direction)))
        params.extend((("limit", str(req.limit)), ("marker", marker)))
        if reverse:
            params.append(("page_reverse", "True"))
        return f"{url}?{urlencode(params)}"


class GlanceListing(ListDialect):
    name = "glance"
    control = frozenset({"limit", "marker", "sort_key", "sort_dir", "sort"})

    def parse(self, params: Params, spec: ListSpec, *, admin: bool = False) -> ListRequest:
        pairs = _pairs(params)
        last = _last(pairs)
        limit = (bools.GLANCE.integer("limit", last["limit"]) if "limit" in last
                 else spec.default_limit)
        if limit is not None and spec.max_limit is not None:
            limit = min(limit, spec.max_limit)
        keys, dirs = _all(pairs, "sort_key"), _all(pairs, "sort_dir")
        sort: list[tuple[str, str]] = []
        if "sort" in last:
            if keys or dirs:
                raise self.error("'sort' cannot be combined with 'sort_key' or 'sort_dir'.")
            sort = _sort_param(last["sort"])
        elif keys:
            if dirs and len(dirs) not in (1, len(keys)):
                raise self.error("Give one sort_dir, or one per sort_key.")
            directions = dirs * len(keys) if len(dirs) == 1 else dirs or ["desc"] * len(keys)
            sort = list(zip(keys, directions, strict=True))
        elif dirs:
            if len(dirs) != 1:
                raise self.error("Give one sort_dir, or one per sort_key.")
            sort = [("created_at", dirs[0])]
        for key, direction in sort:
            if spec.sort_keys and key not in spec.sort_keys:
                raise self.error(f"Invalid sort key {key!r}: must be one of "
                                 f"{', '.join(spec.sort_keys)}.")
            if direction not in ("asc", "desc"):
                raise self.error(f"Invalid sort direction {direction!r}: asc or desc.")
        return ListRequest(
            limit=limit, marker=last.get("marker"),
            sort=tuple(SortKey(k, d) for k, d in sort  # type: ignore[arg-type]
                       ) or (SortKey("created_at", "desc"),),
            filters=_filters(pairs, self.control), query=pairs)

    def marker_not_found(self, marker: str) -> StratusError:
        return self.error(f"Invalid marker. Image {marker} could not be found.")

    def links(self, req: ListRequest, spec: ListSpec, url: str, *, next_marker: str | None,
              previous_marker: str | None = None) -> dict[str, Any]:
        """``first`` always (the query without its marker), ``next`` after a full page."""
        kept = [(k, v) for k, v in req.query if k != "marker"]
        body = {"first": url + (f"?{urlencode(kept)}" if kept else "")}
        if next_marker is not None:
            body["next"] = f"{url}?" + urlencode([*kept, ("marker", next_marker)])
        return body


class CinderListing(ListDialect):
    name = "cinder"
    control = frozenset({"limit", "marker", "offset", "sort", "sort_key", "sort_dir"})

    def parse(self, params: Params, spec: ListSpec, *, admin: bool = False) -> ListRequest:
        pairs = _pairs(params)
        last = _last(pairs)
        # Cinder reads limit and offset before the sort: its first error is the one answered.
        dialect = bools.CINDER.raising(self.error)
        limit = dialect.optional_integer("limit", last.get("limit"))
        if limit is None:
            limit = spec.max_limit if spec.default_limit is None else spec.default_limit
        elif spec.max_limit is not None:
            limit = min(limit, spec.max_limit)
        offset = dialect.integer("offset", last.get("offset", "0"))
        sort: list[tuple[str, str]] = []
        if "sort" in last:
            if "sort_key" in last or "sort_dir" in last:
                raise self.error("Invalid input received: The 'sort' parameter cannot be used "
                                 "with 'sort_key' or 'sort_dir'.")
            sort = _sort_param(last["sort"])
        elif "sort_key" in last or "sort_dir" in last:
            sort = [(last.get("sort_key", "created_at"), last.get("sort_dir", "desc"))]
        for key, direction in sort:
            if spec.sort_keys and key not in spec.sort_keys:
                raise self.error(f"Invalid input received: Invalid sort key {key!r}.")
            if direction not in ("asc", "desc"):
                raise self.error(f"Invalid input received: Invalid sort direction "
                                 f"{direction!r}.")
        return ListRequest(
            limit=limit, marker=last.get("marker"),
            sort=tuple(SortKey(k, d) for k, d in sort),  # type: ignore[arg-type]
            offset=offset,
            filters=_filters(pairs, self.control), query=pairs)

    @staticmethod
    def next_marker(req: ListRequest, ids: Sequence[str], more: bool) -> str | None:
        """The marker of the next page's link. Cinder links on from every full page (as
        many items as the effective limit), even when nothing follows it, as well as from a
        page with more behind it."""
        if not ids:
            return None
        full = req.limit is not None and len(ids) >= req.limit
        return ids[-1] if more or full else None

    def links(self, req: ListRequest, spec: ListSpec, url: str, *, next_marker: str | None,
              previous_marker: str | None = None) -> dict[str, Any]:
        """rel=next with the effective limit; the query's other parameters as sent."""
        if next_marker is None:
            return {}
        query = {k: v for k, v in _last(req.query).items() if k != "marker"}
        query.update(limit=str(req.limit), marker=next_marker)
        return {f"{spec.collection}_links": [{"href": f"{url}?{_query_string(query.items())}",
                                              "rel": "next"}]}


def _sort_param(text: str) -> list[tuple[str, str]]:
    """``sort=k1:dir,k2`` → [(k1, dir), (k2, "desc")]."""
    items = []
    for part in text.split(","):
        key, _, direction = part.strip().partition(":")
        items.append((key, direction or "desc"))
    return items


NOVA = NovaListing()
NEUTRON = NeutronListing()
GLANCE = GlanceListing()
CINDER = CinderListing()
