"""``/os-aggregates``: host aggregates (an operator's): list, create, show, update,
delete, and the actions ``add_host``, ``remove_host`` and ``set_metadata``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from stratus.compute.aggregates import ZONE_KEY, Aggregate
from stratus.compute.api.deps import CallerDep, Service, Version
from stratus.compute.api.server_views import action_timestamp
from stratus.core.exceptions import BadRequest
from stratus.core.web.actions import one_action
from stratus.core.web.microversions import APIVersion

router = APIRouter(prefix="/v2.1/os-aggregates")

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class AggregateCreate(_Strict):
    name: Text
    availability_zone: Text | None = None


class AggregateCreateBody(_Strict):
    aggregate: AggregateCreate


class AggregateUpdate(_Strict):
    name: Text | None = None
    availability_zone: Text | None = None


class AggregateUpdateBody(_Strict):
    aggregate: AggregateUpdate


class HostArgs(_Strict):
    host: Text


class MetadataArgs(_Strict):
    metadata: dict[Annotated[str, Field(min_length=1, max_length=255)],
                   Annotated[str, Field(max_length=255)] | None]


def view(aggregate: Aggregate, version: APIVersion, *, full: bool = True) -> dict[str, Any]:
    """Nova's aggregate; ``full=False``: as create answers it (no hosts, no metadata)."""
    metadata = dict(aggregate.metadata_ or {})
    body: dict[str, Any] = {
        "id": aggregate.id, "name": aggregate.name,
        "availability_zone": metadata.get(ZONE_KEY),
        "created_at": action_timestamp(aggregate.created_at),
        "updated_at": action_timestamp(aggregate.updated_at),
        "deleted": False, "deleted_at": None,
    }
    if full:
        body["hosts"] = list(aggregate.hosts)
        body["metadata"] = metadata
    if version.at_least("2.41"):
        body["uuid"] = aggregate.uuid
    return body


@router.get("")
async def list_aggregates(svc: Service, caller: CallerDep,
                          version: Version) -> dict[str, Any]:
    caller.authorize("os_compute_api:os-aggregates:index")
    return {"aggregates": [view(a, version) for a in await svc.aggregates.list()]}


@router.post("")
async def create_aggregate(body: AggregateCreateBody, svc: Service, caller: CallerDep,
                           version: Version) -> dict[str, Any]:
    caller.authorize("os_compute_api:os-aggregates:create")
    aggregate = await svc.aggregates.create(body.aggregate.name,
                                            body.aggregate.availability_zone)
    return {"aggregate": view(aggregate, version, full=False)}


@router.get("/{aggregate_id}")
async def show_aggregate(aggregate_id: str, svc: Service, caller: CallerDep,
                         version: Version) -> dict[str, Any]:
    caller.authorize("os_compute_api:os-aggregates:show")
    return {"aggregate": view(await svc.aggregates.get(aggregate_id), version)}


@router.put("/{aggregate_id}")
async def update_aggregate(aggregate_id: str, body: AggregateUpdateBody, svc: Service,
                           caller: CallerDep, version: Version) -> dict[str, Any]:
    caller.authorize("os_compute_api:os-aggregates:update")
    change = body.aggregate
    if not change.model_fields_set:
        raise BadRequest("Invalid input: an update names the name or the "
                         "availability_zone.")
    aggregate = await svc.aggregates.update(
        aggregate_id, name=change.name, zone=change.availability_zone,
        zone_given="availability_zone" in change.model_fields_set)
    return {"aggregate": view(aggregate, version)}


@router.delete("/{aggregate_id}")
async def delete_aggregate(aggregate_id: str, svc: Service, caller: CallerDep) -> Response:
    caller.authorize("os_compute_api:os-aggregates:delete")
    await svc.aggregates.delete(aggregate_id)
    return Response(status_code=200)


@router.post("/{aggregate_id}/action")
async def aggregate_action(aggregate_id: str, request: Request, svc: Service,
                           caller: CallerDep, version: Version) -> dict[str, Any]:
    name, args = await one_action(request)
    try:
        if name in ("add_host", "remove_host"):
            caller.authorize(f"os_compute_api:os-aggregates:{name}")
            host = HostArgs.model_validate(args).host
            aggregate = await (svc.aggregates.add_host if name == "add_host"
                               else svc.aggregates.remove_host)(aggregate_id, host)
        elif name == "set_metadata":
            caller.authorize("os_compute_api:os-aggregates:set_metadata")
            aggregate = await svc.aggregates.set_metadata(
                aggregate_id, MetadataArgs.model_validate(args).metadata)
        else:
            raise BadRequest(f"Invalid input: there is no aggregate action {name}.")
    except ValidationError as exc:
        raise BadRequest(f"Invalid input for {name}: {exc.errors()[0]['msg']}.") from None
    return {"aggregate": view(aggregate, version)}
