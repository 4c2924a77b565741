"""Neutron's list query language: filters, ``fields``, ``sort_key``/``sort_dir``,
``limit``/``marker`` with ``<collection>_links``.

* Any attribute of the resource filters (``?name=a&name=b`` means a OR b); values compare
  as the API shows them (booleans as ``true``/``false``, case-blind). ``fixed_ips`` takes
  ``ip_address=X`` / ``subnet_id=Y``; list attributes (``security_groups``, ``tags``) match
  when they hold the value. An attribute the resource lacks is a 400, as with Neutron's
  filter validation.
* Filters the service can evaluate in SQL are handed to it (``pushdown``); all are checked
  again on the views, so a pushdown is only ever an optimisation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import QueryParams

from stratus.network.errors import InvalidInput

CONTROL = {"fields", "sort_key", "sort_dir", "limit", "marker", "page_reverse"}
#: Query parameters clients send that are not attributes (accepted and ignored).
IGNORED = {"verbose"}
TAG_FILTERS = ("tags", "tags-any", "not-tags", "not-tags-any")


@dataclass
class ListQuery:
    filters: dict[str, list[str]] = field(default_factory=dict)
    fields: list[str] = field(default_factory=list)
    sort: list[tuple[str, str]] = field(default_factory=list)
    limit: int | None = None
    marker: str | None = None
    page_reverse: bool = False

    def pushdown(self, columns: Mapping[str, str]) -> dict[str, list[Any]]:
        """The filters that map to a column (``columns``: attribute → column name)."""
        result: dict[str, list[Any]] = {}
        for key, values in self.filters.items():
            if key in columns:
                result.setdefault(columns[key], []).extend(values)
        return result


def parse(params: QueryParams) -> ListQuery:
    query = ListQuery()
    query.fields = [f for f in params.getlist("fields") if f]
    keys = params.getlist("sort_key")
    dirs = params.getlist("sort_dir")
    if dirs and len(dirs) != len(keys):
        raise InvalidInput("The number of sort_keys and sort_dirs must be same")
    for index, key in enumerate(keys):
        direction = (dirs[index] if dirs else "asc").lower()
        if direction not in ("asc", "desc"):
            raise InvalidInput(f"{dirs[index]} is invalid value for sort_dir, valid value "
                               "is 'asc' and 'desc'")
        query.sort.append((key, direction))
    if "limit" in params:
        try:
            limit = int(params["limit"])
        except ValueError as exc:
            raise InvalidInput(f"Invalid input for limit: '{params['limit']}' is not an "
                               "integer.") from exc
        if limit < 0:
            raise InvalidInput("Invalid input for limit: it must not be negative.")
        query.limit = limit or None
    query.marker = params.get("marker") or None
    query.page_reverse = params.get("page_reverse", "").lower() == "true"
    for key in params:
        if key in CONTROL or key in IGNORED:
            continue
        query.filters[key] = params.getlist(key)
    return query


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


def _matches(key: str, actual: Any, wanted: Sequence[str]) -> bool:
    if key == "fixed_ips" and isinstance(actual, list):
        for value in wanted:
            name, _, expected = value.partition("=")
            if any(str(ip.get(name)) == expected for ip in actual):
                return True
        return False
    if isinstance(actual, list):
        return any(_text(item) in wanted for item in actual)
    if isinstance(actual, bool):
        return _text(actual) in {w.lower() for w in wanted}
    return _text(actual) in wanted


def apply(items: list[dict[str, Any]], query: ListQuery, *, collection: str,
          url: str) -> dict[str, Any]:
    """Filter, sort, page and cut ``items`` (full views); the list body with links."""
    known = (set(items[0]) | set(TAG_FILTERS)) if items else set()
    for key in query.filters:
        if items and key not in known:
            raise InvalidInput(f"['{key}'] is invalid attribute for filtering")
    for key, _ in query.sort:
        if items and key not in known:
            raise InvalidInput(f"{key} is invalid attribute for sort_keys")
    result = [item for item in items
              if all(_matches(k, item.get(k), v) for k, v in query.filters.items()
                     if k not in TAG_FILTERS)
              and _tags_match(item.get("tags") or [], query.filters)]
    # Without sort keys the service's order stands (creation, then id): stable for markers.
    sort = list(query.sort)
    if sort and not any(k == "id" for k, _ in sort):
        sort.append(("id", sort[0][1]))
    for key, direction in reversed(sort):
        result.sort(key=_sort_key(key), reverse=direction == "desc")
    if query.page_reverse:
        result.reverse()
    if query.marker is not None:
        ids = [item["id"] for item in result]
        if query.marker not in ids:
            raise InvalidInput(f"Marker {query.marker} could not be found.")
        result = result[ids.index(query.marker) + 1:]
    links: list[dict[str, str]] = []
    if query.limit is not None and len(result) > query.limit:
        result = result[:query.limit]
        links.append({"rel": "next", "href": _page_url(url, query, result[-1]["id"])})
    if query.page_reverse:
        result.reverse()
    body: dict[str, Any] = {collection: [cut(item, query.fields) for item in result]}
    if query.limit is not None:
        if query.marker is not None and result:
            links.append({"rel": "previous", "href": _page_url(url, query, result[0]["id"],
                                                               reverse=True)})
        if links:
            body[f"{collection}_links"] = links
    return body


def _tags_match(tags: Sequence[str], filters: Mapping[str, list[str]]) -> bool:
    """Neutron's tag filters; each value is a comma-separated list."""
    have = set(tags)
    for key, values in filters.items():
        if key not in TAG_FILTERS:
            continue
        wanted = {t for v in values for t in v.split(",") if t}
        if key == "tags" and not wanted <= have:
            return False
        if key == "tags-any" and not wanted & have:
            return False
        if key == "not-tags" and wanted and wanted <= have:
            return False
        if key == "not-tags-any" and wanted & have:
            return False
    return True


def _sort_key(key: str) -> Callable[[dict[str, Any]], tuple[bool, Any]]:
    """Orders by ``key``; missing and null values first, as a database would."""
    return lambda item: (item.get(key) is not None, _sortable(item.get(key)))


def _sortable(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        return str(value)
    return "" if value is None else value


def _page_url(url: str, query: ListQuery, marker: str, reverse: bool = False) -> str:
    params: list[tuple[str, str]] = []
    for key, values in query.filters.items():
        params.extend((key, v) for v in values)
    params.extend(("fields", f) for f in query.fields)
    for key, direction in query.sort:
        params.extend((("sort_key", key), ("sort_dir", direction)))
    assert query.limit is not None
    params.extend((("limit", str(query.limit)), ("marker", marker)))
    if reverse:
        params.append(("page_reverse", "True"))
    return f"{url}?{urlencode(params)}"


def cut(item: dict[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    if not fields:
        return item
    return {k: item[k] for k in fields if k in item}
