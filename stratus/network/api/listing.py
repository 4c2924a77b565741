"""List requests of the Network API: Neutron's query language read by core's ``NEUTRON``
dialect (``stratus.core.web.listing``), paged in SQL by the domain
(``stratus.network.filters``), answered with ``<collection>_links`` (next after a full page,
previous after a marker); ``fields`` cuts each item."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from stratus.core.db.paging import Page, SortKey
from stratus.core.web import listing
from stratus.core.web.app import api_root
from stratus.network.errors import InvalidInput
from stratus.network.filters import ListQuery

NEUTRON = listing.NEUTRON.raising(InvalidInput)


def collection_url(request: Request) -> str:
    return f"{api_root(request)}{request.url.path[len(request.scope.get('root_path', '')):]}"


def fields(request: Request) -> tuple[str, ...]:
    """``fields`` of a show request."""
    return tuple(f for f in request.query_params.getlist("fields") if f)


def cut(item: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    if not names:
        return item
    return {k: item[k] for k in names if k in item}


@dataclass(frozen=True)
class Listing:
    """One list request: what the domain pages (``query``) and how the answer looks."""

    spec: listing.ListSpec
    request: listing.ListRequest
    url: str

    @property
    def query(self) -> ListQuery:
        req = self.request
        return ListQuery(filters=req.filters,
                         sort=tuple(SortKey(k.column, k.direction) for k in req.sort),
                         marker=req.marker, limit=req.limit, page_reverse=req.page_reverse,
                         fields=req.fields)

    def body(self, items: list[dict[str, Any]], page: Page, id_of: Any = None) -> dict[str, Any]:
        """The list body: ``items`` (the page's rows as views) cut to ``fields``, and links."""
        ids = [id_of(row) if id_of else row.id for row in page.rows]
        next_marker = None
        if page.more and ids:
            next_marker = ids[0] if self.request.page_reverse else ids[-1]
        body: dict[str, Any] = {self.spec.collection: [cut(i, self.request.fields)
                                                       for i in items]}
        return body | NEUTRON.links(self.request, self.spec, self.url, next_marker=next_marker,
                                    previous_marker=ids[0] if ids else None)


def of(request: Request, collection: str) -> Listing:
    """The list request of ``collection`` (its sort keys are checked by the domain)."""
    spec = listing.ListSpec(collection)
    return Listing(spec, NEUTRON.parse(request.query_params, spec), collection_url(request))
