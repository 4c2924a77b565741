"""``/servers``: boot, list, show, update, delete, and the start/stop/reboot/console actions.

A boot is validated (schema for the microversion, flavor, image, key pair, quota), written as
``building``/``scheduling`` rows, and cast to the scheduler; the answer is 202 at once.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select

from stratus.compute import server_metadata, states
from stratus.compute.api import boot_volumes, server_filters, server_views, volume_attachments
from stratus.compute.api.deps import Authorize, Context, Links, Service, URLs, Version, runtime
from stratus.compute.api.schemas import (
    ConsoleOutputRequest,
    RebootType,
    ServerCreate,
    ServerCreateBody,
    ServerUpdateBody,
)
from stratus.compute.instances import NewInstance
from stratus.compute.models import (
    ComputeServiceRecord,
    Instance,
    InstanceAction,
    InstanceActionEvent,
    ServerGroup,
    ServerGroupMember,
)
from stratus.compute.objects import BuildRequest
from stratus.compute.quotas import local_project_lock
from stratus.compute.rpcapi import ComputeAgentAPI, SchedulerAPI
from stratus.compute.scheduler.host_state import COMPUTE_BINARY, is_up
from stratus.compute.scheduler.placement import Placement
from stratus.compute.service import ComputeService
from stratus.core.bus import MessagingError
from stratus.core.clients.image import ImageClient
from stratus.core.context import RequestContext
from stratus.core.exceptions import BadRequest, Conflict, NotFound, StratusError
from stratus.core.web.microversions import APIVersion, api_version

router = APIRouter(prefix="/v2.1/servers")

Q = Annotated[str | None, Query()]

#: Seconds without a heartbeat after which a compute host is down.
SERVICE_DOWN_TIME = 60.0


def _scheduler(request: Request) -> SchedulerAPI:
    api: SchedulerAPI = request.app.state.scheduler_api
    return api


def _agents(request: Request) -> ComputeAgentAPI:
    api: ComputeAgentAPI = request.app.state.agent_api
    return api


def _images(request: Request) -> ImageClient:
    client: ImageClient = request.app.state.image_client
    return client


def _target(instance: Instance) -> dict[str, Any]:
    return {"project_id": instance.project_id, "user_id": instance.user_id}


async def _visible(svc: ComputeService, context: RequestContext, server_id: str) -> Instance:
    """The server, if the caller's project owns it (admins see every project's)."""
    return await svc.instances.get(server_id,
                                   project_id=None if context.is_admin else context.project_id)


# Boot ---------------------------------------------------------------------------------------

def _check_microversion_fields(s: ServerCreate, version: APIVersion) -> None:
    gated = (("description", "2.19"), ("tags", "2.52"), ("hostname", "2.90"))
    for field, minimum in gated:
        if getattr(s, field) is not None and not version.at_least(minimum):
            raise BadRequest(f"Invalid input for field '{field}': it needs microversion "
                             f"{minimum} or later.")
    if isinstance(s.networks, str):
        if not version.at_least("2.37"):
            raise BadRequest("Invalid input for field 'networks': 'auto' and 'none' need "
                             "microversion 2.37 or later.")
        if s.networks not in ("auto", "none"):
            raise BadRequest("Invalid input for field 'networks': use 'auto', 'none' or a "
                             "list of networks.")
    elif s.networks is None and version.at_least("2.37"):
        raise BadRequest("Invalid input for field 'networks': it is required from "
                         "microversion 2.37.")


def _boot_image(s: ServerCreate) -> str:
    """The image to boot from: ``imageRef``, or the image→local boot mapping OSC adds."""
    image = s.image_ref
    for bdm in s.block_device_mapping_v2 or []:
        if str(bdm.boot_index) != "0":
            continue
        if bdm.source_type == "image" and bdm.destination_type in (None, "local"):
            if image and bdm.uuid and bdm.uuid != image:
                raise BadRequest("The boot mapping names another image than imageRef.")
            image = image or (bdm.uuid or "")
        elif boot_volumes.is_image_to_volume(bdm):
            image = bdm.uuid or ""  # the root volume's source: checked like a boot image
        elif boot_volumes.is_volume(bdm):
            return ""
        else:
            raise BadRequest("Booting from a snapshot is not available yet; boot from an "
                             "image, a volume, or a volume made from an image.")
    if not image:
        raise BadRequest("Missing imageRef attribute.")
    return image


def _user_data(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest("User data needs to be valid base 64.") from exc
    return value


@router.post("", status_code=202)
async def create_server(body: ServerCreateBody, request: Request, context: Context,
                        authorize: Authorize, urls: URLs, version: Version) -> JSONResponse:
    assert context.project_id is not None and context.user_id is not None
    authorize("os_compute_api:servers:create", {"project_id": context.project_id})
    s = body.server
    _check_microversion_fields(s, version)
    image_id = _boot_image(s)
    root_volume = boot_volumes.root_mapping(s)
    count = s.max_count or s.min_count
    if s.min_count > count:
        raise BadRequest("min_count must be <= max_count.")
    # Booting from an existing volume names no image to check.
    image = await _images(request).get(context, image_id) if image_id else {}
    rt = runtime(request)
    group_uuid = body.hints.group if body.hints else None
    # The whole transaction under the project's quota lock (see stratus.compute.quotas).
    async with local_project_lock(context.project_id), rt.service() as svc:
        await svc.quotas.lock_project(context.project_id)
        try:
            flavor = await svc.flavors.get(str(s.flavor_ref), project_id=context.project_id,
                                           admin=context.is_admin)
        except NotFound as exc:
            raise BadRequest(f"Flavor {s.flavor_ref} could not be found.") from exc
        if (image.get("min_ram") or 0) > flavor.ram:
            raise BadRequest("Flavor's memory is too small for requested image.")
        if (image.get("min_disk") or 0) > flavor.disk and flavor.disk:
            raise BadRequest("Flavor's disk is too small for requested image.")
        key_data = None
        if s.key_name is not None:
            try:
                key_data = (await svc.keypairs.get(context.user_id, s.key_name)).public_key
            except NotFound as exc:
                raise BadRequest("Invalid key_name provided.") from exc
        group = None
        if group_uuid is not None:
            group = await svc.session.get(ServerGroup, group_uuid)
            if group is None or group.project_id != context.project_id:
                raise BadRequest(f"Invalid server group {group_uuid}.")
        if s.metadata:
            server_metadata.validate(s.metadata)
            await server_metadata.check_quota(svc, context.project_id, len(s.metadata))
        await svc.quotas.check_instances(context.project_id, count, flavor.vcpus, flavor.ram)
        instances = await svc.instances.create(context, NewInstance(
            name=s.name, image_ref="" if root_volume else image_id, flavor=flavor,
            key_name=s.key_name,
            key_data=key_data, user_data=_user_data(s.user_data), metadata=s.metadata,
            availability_zone=s.availability_zone,
            requested_networks=(s.networks if isinstance(s.networks, str) or s.networks is None
                                else [n.model_dump(exclude_none=True) for n in s.networks]),
            security_groups=tuple(g.name for g in s.security_groups or []) or ("default",),
            description=s.description, access_ip_v4=s.access_ip_v4,
            access_ip_v6=s.access_ip_v6,
            config_drive="True" if s.config_drive in (True, "True", "true") else "",
            tags=tuple(s.tags or ())), count=count)
        if group is not None:
            await svc.server_groups.add_members(group, [i.uuid for i in instances])
        flavor_info = svc.instances.record(instances[0]).flavor
    build = BuildRequest(
        instance_uuids=[i.uuid for i in instances], project_id=context.project_id,
        flavor=flavor_info, availability_zone=s.availability_zone, group_uuid=group_uuid,
        image_properties={k: str(v) for k, v in image.items()
                          if k.startswith(("hw_", "img_")) or k in ("architecture",
                                                                    "hypervisor_type")})
    to_build = list(instances)
    if root_volume is not None:
        for instance in instances:
            try:
                await boot_volumes.create_root_volume(request, context, instance.uuid,
                                                      root_volume)
            except StratusError as exc:  # no root volume: the server cannot be built
                async with rt.service() as svc:
                    await svc.instances.set_error(instance.uuid, code=exc.status,
                                                  message=f"Root volume: {exc.message}")
                to_build.remove(instance)
        build = build.model_copy(update={"instance_uuids": [i.uuid for i in to_build]})
    try:
        if to_build:
            await _scheduler(request).schedule_and_build(context, build)
    except MessagingError as exc:
        async with rt.service() as svc:  # never leave a boot stuck in BUILD
            for instance in to_build:
                await svc.instances.set_error(instance.uuid, code=503,
                                              message=f"The scheduler is unreachable: {exc}")
    first = instances[0]
    if s.return_reservation_id:
        return JSONResponse({"reservation_id": first.reservation_id}, status_code=202)
    server = {"id": first.uuid, "links": urls.pair(f"servers/{first.uuid}"),
              "OS-DCF:diskConfig": s.disk_config or "MANUAL",
              "security_groups": [{"name": n} for n in first.security_groups],
              "adminPass": s.admin_pass or secrets.token_urlsafe(9)}
    return JSONResponse({"server": server}, status_code=202,
                        headers={"Location": urls.url(f"servers/{first.uuid}")})


# Read ---------------------------------------------------------------------------------------

async def _list(svc: ComputeService, context: RequestContext, authorize: Authorize,
                request: Request) -> tuple[list[Instance], str | None]:
    """The servers a list request asks for; filters and sort keys: ``server_filters``."""
    params = request.query_params
    version = api_version(request)
    query = select(Instance)
    all_tenants = params.get("all_tenants") is not None and \
        params.get("all_tenants", "").lower() not in ("0", "false", "off", "no")
    if all_tenants:
        authorize("os_compute_api:servers:index:get_all_tenants")
        project = params.get("project_id") or params.get("tenant_id")
        if project:
            query = query.where(Instance.project_id == project)
    else:
        query = query.where(Instance.project_id == context.project_id)
    query = server_filters.apply_sql(query, params, version, context.is_admin)
    order = server_filters.sort_order(params, context.is_admin)
    instances = list(await svc.session.scalars(query.order_by(*order)))
    instances = server_filters.apply_python(instances, params, version)
    marker = params.get("marker")
    if marker is not None:
        ids = [i.uuid for i in instances]
        if marker not in ids:
            raise BadRequest(f"marker [{marker}] not found")
        instances = instances[ids.index(marker) + 1:]
    next_marker = None
    if params.get("limit") is not None:
        try:
            limit = int(params["limit"])
        except ValueError as exc:
            raise BadRequest("limit must be an integer") from exc
        if limit < 0:
            raise BadRequest("limit must be >= 0")
        if len(instances) > limit:
            next_marker = instances[limit - 1].uuid if limit else None
        instances = instances[:limit]
    return instances, next_marker


def _servers_links(urls: Links, path: str, request: Request,
                   next_marker: str | None) -> list[dict[str, str]]:
    if next_marker is None:
        return []
    params = dict(request.query_params)
    params["marker"] = next_marker
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return [{"rel": "next", "href": urls.url(f"{path}?{query}")}]


@router.get("")
async def list_servers(request: Request, svc: Service, context: Context,
                       authorize: Authorize, urls: URLs) -> dict[str, Any]:
    authorize("os_compute_api:servers:index", {"project_id": context.project_id})
    instances, next_marker = await _list(svc, context, authorize, request)
    body: dict[str, Any] = {"servers": [server_views.brief(i, urls) for i in instances]}
    if links := _servers_links(urls, "servers", request, next_marker):
        body["servers_links"] = links
    return body


async def _host_up(svc: ComputeService, hosts: set[str]) -> dict[str, bool]:
    if not hosts:
        return {}
    rows = await svc.session.scalars(select(ComputeServiceRecord).where(
        ComputeServiceRecord.binary == COMPUTE_BINARY, ComputeServiceRecord.host.in_(hosts)))
    return {r.host: is_up(r.last_seen_up, r.forced_down, SERVICE_DOWN_TIME) for r in rows}


async def _details(svc: ComputeService, context: RequestContext, urls: Links,
                   version: APIVersion, instances: list[Instance]) -> list[dict[str, Any]]:
    faults = await svc.instances.faults_of([i.uuid for i in instances])
    up = await _host_up(svc, {i.host for i in instances if i.host})
    groups: dict[str, list[str]] = {}
    if version.at_least("2.71") and instances:
        for member in await svc.session.scalars(select(ServerGroupMember).where(
                ServerGroupMember.instance_uuid.in_([i.uuid for i in instances]))):
            groups.setdefault(member.instance_uuid, []).append(member.group_uuid)
    return [server_views.detail(i, urls, version, admin=context.is_admin,
                                fault=faults.get(i.uuid), host_up=up.get(i.host or ""),
                                group_uuids=groups.get(i.uuid)) for i in instances]


@router.get("/detail")
async def list_servers_detail(request: Request, svc: Service, context: Context,
                              authorize: Authorize, urls: URLs,
                              version: Version) -> dict[str, Any]:
    authorize("os_compute_api:servers:detail", {"project_id": context.project_id})
    instances, next_marker = await _list(svc, context, authorize, request)
    body: dict[str, Any] = {"servers": await _details(svc, context, urls, version, instances)}
    await volume_attachments.fill_volumes_attached(request, context, version, body["servers"])
    if links := _servers_links(urls, "servers/detail", request, next_marker):
        body["servers_links"] = links
    return body


@router.get("/{server_id}")
async def show_server(server_id: str, request: Request, svc: Service, context: Context,
                      authorize: Authorize, urls: URLs, version: Version) -> dict[str, Any]:
    instance = await _visible(svc, context, server_id)
    authorize("os_compute_api:servers:show", _target(instance))
    (body,) = await _details(svc, context, urls, version, [instance])
    await volume_attachments.fill_volumes_attached(request, context, version, [body])
    return {"server": body}


@router.put("/{server_id}")
async def update_server(server_id: str, body: ServerUpdateBody, svc: Service,
                        context: Context, authorize: Authorize, urls: URLs,
                        version: Version) -> dict[str, Any]:
    instance = await _visible(svc, context, server_id)
    authorize("os_compute_api:servers:update", _target(instance))
    u = body.server
    if u.description is not None and not version.at_least("2.19"):
        raise BadRequest("Invalid input for field 'description': it needs microversion 2.19.")
    if u.hostname is not None and not version.at_least("2.90"):
        raise BadRequest("Invalid input for field 'hostname': it needs microversion 2.90.")
    fields = u.model_dump(exclude_unset=True)
    if "name" in fields:
        instance.display_name = u.name or instance.display_name
    if "description" in fields:
        instance.display_description = u.description
    if "access_ip_v4" in fields:
        instance.access_ip_v4 = u.access_ip_v4
    if "access_ip_v6" in fields:
        instance.access_ip_v6 = u.access_ip_v6
    if u.hostname:
        instance.hostname = u.hostname
    await svc.session.flush()
    (detail,) = await _details(svc, context, urls, version, [instance])
    return {"server": detail}


# Delete and actions -----------------------------------------------------------------------

async def _agent_up(svc: ComputeService, host: str) -> bool:
    return (await _host_up(svc, {host})).get(host, False)


@router.delete("/{server_id}", status_code=204)
async def delete_server(server_id: str, request: Request, context: Context,
                        authorize: Authorize, background: BackgroundTasks) -> Response:
    rt = runtime(request)
    async with rt.service() as svc:
        instance = await _visible(svc, context, server_id)
        authorize("os_compute_api:servers:delete", _target(instance))
        if instance.task_state == states.DELETING:
            return Response(status_code=204)
        await svc.instances.start_action(context, instance.uuid, "delete")
        host = instance.host
        local = host is None or not await _agent_up(svc, host)
        if local:
            # Never placed, or its host is down: delete here, give the resources back.
            await Placement(svc.session).free(instance.uuid)
            await svc.instances.soft_delete(instance.uuid)
            await svc.instances.finish_action(instance.uuid, context.request_id)
        else:
            instance.task_state = states.DELETING
    if local:
        # No host will release its volumes: a root volume made for it (perhaps still
        # being made) or attachments left by a dead host. After the answer, not before.
        background.add_task(boot_volumes.release_volumes, request, context, instance.uuid)
        return Response(status_code=204)
    assert host is not None
    await _agents(request).terminate_instance(context, host, instance.uuid)
    return Response(status_code=204)


def _require(instance: Instance, vm_states: tuple[str, ...], action: str) -> None:
    if instance.vm_state not in vm_states or instance.task_state is not None:
        raise Conflict(f"Cannot '{action}' instance {instance.uuid} while it is in vm_state "
                       f"{instance.vm_state} and task_state {instance.task_state}.")


@router.post("/{server_id}/action")
async def server_action(server_id: str, body: dict[str, Any], request: Request,
                        context: Context, authorize: Authorize) -> Response:
    if len(body) != 1:
        raise BadRequest("An action body holds exactly one action.")
    ((action, args),) = body.items()
    rt = runtime(request)
    agents = _agents(request)
    if action == "os-getConsoleOutput":
        request_args = ConsoleOutputRequest.model_validate(args or {})
        length = None
        if request_args.length not in (None, ""):
            try:
                length = int(request_args.length)
            except ValueError as exc:
                raise BadRequest("length must be an integer") from exc
        async with rt.service() as svc:
            instance = await _visible(svc, context, server_id)
            authorize("os_compute_api:os-console-output", _target(instance))
            if instance.host is None or instance.vm_state == states.BUILDING:
                raise Conflict("The server has no console yet.")
            host = instance.host
        output = await agents.get_console_output(context, host, instance.uuid, length)
        return JSONResponse({"output": output})
    transitions = {
        "os-stop": ("stop", (states.ACTIVE, states.ERROR), states.POWERING_OFF),
        "os-start": ("start", (states.STOPPED,), states.POWERING_ON),
    }
    async with rt.service() as svc:
        instance = await _visible(svc, context, server_id)
        if action in transitions:
            name, allowed, task = transitions[action]
            authorize(f"os_compute_api:servers:{name}", _target(instance))
            _require(instance, allowed, name)
        elif action == "reboot":
            hard = RebootType.model_validate(args or {}).type.upper() == "HARD"
            authorize("os_compute_api:servers:reboot", _target(instance))
            allowed = ((states.ACTIVE, states.STOPPED, states.PAUSED, states.SUSPENDED,
                        states.ERROR) if hard else (states.ACTIVE,))
            _require(instance, allowed, "reboot")
            task = states.REBOOTING_HARD if hard else states.REBOOTING
            name = "reboot"
        else:
            raise BadRequest(f"Unknown action {action!r}.")
        if instance.host is None:
            raise Conflict(f"Instance {instance.uuid} has no host.")
        instance.task_state = task
        await svc.instances.start_action(context, instance.uuid, name)
        host = instance.host
    if action == "os-stop":
        await agents.stop_instance(context, host, instance.uuid)
    elif action == "os-start":
        await agents.start_instance(context, host, instance.uuid)
    else:
        await agents.reboot_instance(context, host, instance.uuid, hard=hard)
    return Response(status_code=202)


# Instance actions -------------------------------------------------------------------------

def _action_view(a: InstanceAction) -> dict[str, Any]:
    return {"action": a.action, "instance_uuid": a.instance_uuid, "request_id": a.request_id,
            "user_id": a.user_id, "project_id": a.project_id,
            "start_time": server_views.action_timestamp(a.start_time), "message": a.message}


@router.get("/{server_id}/os-instance-actions")
async def list_actions(server_id: str, svc: Service, context: Context,
                       authorize: Authorize, version: Version) -> dict[str, Any]:
    instance = await svc.instances.get(
        server_id, project_id=None if context.is_admin else context.project_id,
        include_deleted=True)
    authorize("os_compute_api:os-instance-actions:list", _target(instance))
    actions = await svc.session.scalars(select(InstanceAction).where(
        InstanceAction.instance_uuid == server_id).order_by(InstanceAction.id.desc()))
    items = []
    for a in actions:
        item = _action_view(a)
        if version.at_least("2.58"):
            item["updated_at"] = server_views.action_timestamp(a.updated_at or a.start_time)
        items.append(item)
    return {"instanceActions": items}


@router.get("/{server_id}/os-instance-actions/{request_id}")
async def show_action(server_id: str, request_id: str, svc: Service, context: Context,
                      authorize: Authorize, version: Version) -> dict[str, Any]:
    instance = await svc.instances.get(
        server_id, project_id=None if context.is_admin else context.project_id,
        include_deleted=True)
    authorize("os_compute_api:os-instance-actions:show", _target(instance))
    action = await svc.instances.action_for(server_id, request_id)
    if action is None:
        raise NotFound(f"Action {request_id} not found for server {server_id}.")
    body = _action_view(action)
    if version.at_least("2.58"):
        body["updated_at"] = server_views.action_timestamp(
            action.updated_at or action.start_time)
    if authorize.allows("os_compute_api:os-instance-actions:events", _target(instance)):
        events = await svc.session.scalars(select(InstanceActionEvent).where(
            InstanceActionEvent.action_id == action.id).order_by(InstanceActionEvent.id))
        body["events"] = [{
            "event": e.event, "start_time": server_views.action_timestamp(e.start_time),
            "finish_time": server_views.action_timestamp(e.finish_time), "result": e.result,
            **({"host": e.host or "", "hostId": ""} if version.at_least("2.62") else {}),
            **({"details": e.details} if version.at_least("2.84") else {}),
        } for e in events]
    return {"instanceAction": body}

