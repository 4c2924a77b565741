"""One route shape for Keystone's plain resources: list with filters, show, patch, delete.

``add_routes(router, Resource(...))`` registers, for a resource ``name`` kept in the
``part`` repository of the service (``svc.<part>``):

- ``GET /<plural>``: ``identity:list_<plural>``, then ``list_<plural>(**filters)`` with the
  filters given in the query string (boolean ones parsed, a bad value a 400);
- ``GET /<plural>/{<name>_id}``: ``identity:get_<name>``, then ``get_<name>(id)``;
- ``PATCH /<plural>/{<name>_id}``: ``identity:update_<name>``, then
  ``update_<name>(id, body.<name>.changes())``;
- ``DELETE /<plural>/{<name>_id}``: ``identity:delete_<name>``, then ``delete_<name>(id)``, 204;
- ``POST /<plural>`` (with a ``create_body``): ``identity:create_<name>`` (on the target
  ``{<name>: {"domain_id": ...}}`` for resources made in a domain), then
  ``create_<name>(**body.<name>.create_args(domain_id))``, 201.

Each answers ``{<name>: view}`` or Keystone's collection.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from stratus.core.web import params
from stratus.identity.api import views
from stratus.identity.api.common import default_domain
from stratus.identity.api.deps import BaseURL, CallerDep, Context, Reader, Service
from stratus.identity.service import IdentityService


@dataclass(frozen=True)
class Resource:
    name: str
    plural: str
    #: The ``IdentityService`` attribute holding the repository.
    part: str
    view: Callable[[Any, str], dict[str, Any]]
    #: The PATCH body: ``{<name>: <model with changes()>}``.
    update_body: type[BaseModel]
    #: The POST body: ``{<name>: <model with create_args()>}``.
    create_body: type[BaseModel]
    filters: tuple[str, ...] = ()
    bool_filters: tuple[str, ...] = ()
    #: Whether policy sees the resource as ``{<name>: {"id": ...}}`` (owner-checked rules).
    scoped: bool = False

    def call(self, svc: IdentityService, verb: str) -> Any:
        """The repository method ``<verb>`` of this resource's part."""
        return getattr(getattr(svc, self.part), verb)

    def target(self, request: Request) -> tuple[str, dict[str, Any] | None]:
        resource_id: str = request.path_params[f"{self.name}_id"]
        return resource_id, ({self.name: {"id": resource_id}} if self.scoped else None)


def add_routes(router: APIRouter, r: Resource) -> None:
    one = f"/{r.plural}/{{{r.name}_id}}"

    async def listing(request: Request, svc: Reader, caller: CallerDep,
                      base: BaseURL) -> dict[str, Any]:
        caller.authorize(f"identity:list_{r.plural}")
        query = request.query_params
        filters: dict[str, Any] = {key: query.get(key) for key in r.filters}
        filters.update({key: params.KEYSTONE.optional_boolean(key, query.get(key))
                        for key in r.bool_filters})
        rows = await r.call(svc, f"list_{r.plural}")(**filters)
        return views.collection_of(r.plural, r.view, rows, base, r.plural)

    async def show(request: Request, svc: Reader, caller: CallerDep,
                   base: BaseURL) -> dict[str, Any]:
        resource_id, target = r.target(request)
        caller.authorize(f"identity:get_{r.name}", target)
        return {r.name: r.view(await r.call(svc, f"get_{r.name}")(resource_id), base)}

    async def update(request: Request, body: BaseModel, svc: Service, caller: CallerDep,
                     base: BaseURL) -> dict[str, Any]:
        resource_id, target = r.target(request)
        caller.authorize(f"identity:update_{r.name}", target)
        changes = getattr(body, r.name).changes()
        row = await r.call(svc, f"update_{r.name}")(resource_id, changes)
        return {r.name: r.view(row, base)}

    async def delete(request: Request, svc: Service, caller: CallerDep) -> Response:
        resource_id, target = r.target(request)
        caller.authorize(f"identity:delete_{r.name}", target)
        await r.call(svc, f"delete_{r.name}")(resource_id)
        return Response(status_code=204)

    async def create(body: BaseModel, svc: Service, caller: CallerDep, context: Context,
                     base: BaseURL) -> dict[str, Any]:
        fields = getattr(body, r.name)
        domain_id = default_domain(context, fields.domain_id) if fields.in_domain else None
        args = fields.create_args(domain_id)
        caller.authorize(f"identity:create_{r.name}",
                  {r.name: {"domain_id": domain_id}} if fields.in_domain else None)
        return {r.name: r.view(await r.call(svc, f"create_{r.name}")(**args), base)}

    # FastAPI reads a body's model from the annotation: this resource's, not BaseModel.
    update.__annotations__["body"] = r.update_body
    create.__annotations__["body"] = r.create_body
    router.add_api_route(f"/{r.plural}", listing, methods=["GET"])
    router.add_api_route(f"/{r.plural}", create, methods=["POST"], status_code=201)
    router.add_api_route(one, show, methods=["GET"])
    router.add_api_route(one, update, methods=["PATCH"])
    router.add_api_route(one, delete, methods=["DELETE"], status_code=204)
