"""The routes every Neutron collection has, made once from a description of the collection.

``/v2.0/<collection>`` lists (GET) and creates (POST, one item or a bulk list);
``/v2.0/<collection>/{id}`` shows (GET), updates (PUT) and deletes (DELETE, 204). A
``Collection`` names the domain part that holds the resource and how rows are shown; the
part's methods follow one naming rule (``list_<plural>``, ``get_<singular>``,
``create_<singular>``, ``update_<singular>``, ``delete_<singular>``), so the routes find them
by name. A collection without a create or update body has no such route.

This module does not use postponed annotations: FastAPI reads the routes' signatures. A
route opens its transaction itself (``deps.Transaction``: reading, or writing for a write
and for a collection whose reads write), once FastAPI has solved the caller: not as a
FastAPI dependency, whose exit stack cost more Python calls than the rest of the
dependency solving."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from stratus.core.policy import Caller
from stratus.core.web import openapi
from stratus.network.api import listing
from stratus.network.api.bodies import single_or_bulk, update_body
from stratus.network.api.deps import CallerDep, Transaction
from stratus.network.api.schemas import Body
from stratus.network.service import NetworkService

#: Shows a batch of rows (a batch, so a view may read what all rows need in one query).
Views = Callable[[NetworkService, Caller, list[Any]], Awaitable[list[dict[str, Any]]]]


def each(view: Callable[[NetworkService, Caller, Any], dict[str, Any]]) -> Views:
    """The batch view of a view that shows one row from the row alone."""
    async def views(svc: NetworkService, caller: Caller, rows: list[Any]) -> list[dict[str, Any]]:
        return [view(svc, caller, row) for row in rows]
    return views


async def _nothing_first(svc: NetworkService, caller: Caller) -> None:
    return None


@dataclass(frozen=True)
class Collection:
    """One Neutron collection as its routes need it."""

    singular: str  # the body's key for one item: "security_group"
    plural: str  # the collection's key and, dashed, its path: "security_groups"
    part: Callable[[NetworkService], Any]  # the domain part holding the resource
    views: Views
    create: type[Body] | None = None
    update: type[Body] | None = None
    #: Reads take the writing transaction (security group reads make the default group).
    reads_write: bool = False
    #: Runs before a show (in the show's transaction).
    before_show: Callable[[NetworkService, Caller], Awaitable[None]] = _nothing_first

    @property
    def path(self) -> str:
        return "/" + self.plural.replace("_", "-")

    def method(self, svc: NetworkService, verb: str, *, many: bool = False) -> Any:
        """The part's ``<verb>_<singular>`` (``<verb>_<plural>`` if ``many``)."""
        return getattr(self.part(svc), f"{verb}_{self.plural if many else self.singular}")

    async def shown(self, svc: NetworkService, caller: Caller, row: Any) -> dict[str, Any]:
        return (await self.views(svc, caller, [row]))[0]


def add_routes(router: APIRouter, c: Collection) -> None:
    """Add ``c``'s list, show, create, update and delete routes to ``router``."""
    reads_write = c.reads_write
    item_path = c.path + "/{resource_id}"

    async def list_rows(request: Request, caller: CallerDep) -> JSONResponse:
        async with Transaction(request, write=reads_write) as svc:
            lst = listing.of(request, c.plural)
            page = await c.method(svc, "list", many=True)(caller, lst.query)
            body = lst.body(await c.views(svc, caller, page.rows), page)
        return JSONResponse(body)

    async def show_row(resource_id: str, request: Request, caller: CallerDep) -> JSONResponse:
        async with Transaction(request, write=reads_write) as svc:
            await c.before_show(svc, caller)
            row = await c.method(svc, "get")(caller, resource_id)
            body = {c.singular: listing.cut(await c.shown(svc, caller, row),
                                            listing.fields(request))}
        return JSONResponse(body)

    async def delete_row(resource_id: str, request: Request, caller: CallerDep) -> Response:
        async with Transaction(request, write=True) as svc:
            await c.method(svc, "delete")(caller, resource_id)
        return Response(status_code=204)

    router.add_api_route(c.path, list_rows, methods=["GET"], name=f"list_{c.plural}")
    router.add_api_route(item_path, show_row, methods=["GET"], name=f"show_{c.singular}")
    if c.create is not None:
        router.add_api_route(c.path, _create_route(c, c.create), methods=["POST"],
                             name=f"create_{c.plural}",
                             openapi_extra=openapi.request_body(create_schema(c, c.create)))
    if c.update is not None:
        router.add_api_route(item_path, _update_route(c, c.update), methods=["PUT"],
                             name=f"update_{c.singular}",
                             openapi_extra=openapi.request_body(openapi.wrapped(
                                 c.singular, openapi.model_schema(c.update))))
    router.add_api_route(item_path, delete_row, methods=["DELETE"], status_code=204,
                         name=f"delete_{c.singular}")


def create_schema(c: Collection, model: type[Body]) -> dict[str, Any]:
    """A create's body: ``{singular: {...}}``, or ``{plural: [{...}, ...]}`` (bulk)."""
    item = openapi.model_schema(model)
    return {"oneOf": [openapi.wrapped(c.singular, item), openapi.wrapped(
        c.plural, {"type": "array", "items": item, "minItems": 1})]}


def _create_route(c: Collection, model: type[Body]) -> Callable[..., Awaitable[JSONResponse]]:
    async def create_rows(request: Request, caller: CallerDep) -> JSONResponse:
        async with Transaction(request, write=True) as svc:
            items, bulk = await single_or_bulk(request, c.singular, c.plural, model)
            create = c.method(svc, "create")
            created = [await create(caller, item.command()) for item in items]
            body = await c.views(svc, caller, created)
        return JSONResponse({c.plural: body} if bulk else {c.singular: body[0]},
                            status_code=201)
    return create_rows


def _update_route(c: Collection, model: type[Body]) -> Callable[..., Awaitable[JSONResponse]]:
    async def update_row(resource_id: str, request: Request,
                         caller: CallerDep) -> JSONResponse:
        async with Transaction(request, write=True) as svc:
            body = await update_body(request, c.singular, model)
            row = await c.method(svc, "update")(caller, resource_id, body.command())
            shown = {c.singular: await c.shown(svc, caller, row)}
        return JSONResponse(shown)
    return update_row
