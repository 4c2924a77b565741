"""Boot: a ``BootRequest`` becomes ``building``/``scheduling`` instance rows and a cast to
the scheduler.

In order: the image (from the image service, with the caller's token), then, in one
transaction under the project's quota lock, the flavor, the image's minimum sizes, the key
pair, the server group, the metadata quota and the instance quota, and the rows (and the
group membership). After the commit: root volumes over REST (an instance whose root volume
cannot be made goes to ERROR), then one cast to the scheduler; when the scheduler cannot be
reached the instances go to ERROR rather than stay in BUILD. The request itself (its shape for
the microversion, the block device mappings) is checked at the API's edge; the volumes,
snapshots and images the mappings name are checked before the transaction and the
ephemeral and swap disks against the flavor within it (``stratus.compute.block_devices``),
so a refused mapping leaves nothing behind.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field, replace
from typing import Any

from stratus.compute import block_devices, boot_facts, quotas, server_metadata, volume_attach
from stratus.compute.block_devices import BootDisks, Mapping
from stratus.compute.instances import CreatedInstance, NewInstance
from stratus.compute.objects import BuildRequest, FlavorInfo
from stratus.compute.service import ComputeRuntime, ComputeService
from stratus.compute.volume_attach import RootVolume
from stratus.core.bus import MessagingError
from stratus.core.clients.base import endpoint
from stratus.core.context import RequestContext, set_instance
from stratus.core.exceptions import BadRequest, Conflict, NotFound, StratusError
from stratus.core.metrics import BOOTS
from stratus.core.quotas import NeedsExclusiveLock
from stratus.core.tracing import span


@dataclass(frozen=True, kw_only=True)
class BootRequest:
    """What a caller asks to boot: ``count`` servers alike."""

    name: str
    #: The image to check and boot from; "" when booting from an existing volume.
    image_id: str
    root_volume: RootVolume | None = None
    #: The block device mappings besides the root disk, their shape checked.
    extra_disks: tuple[Mapping, ...] = ()
    flavor_ref: str
    count: int = 1
    key_name: str | None = None
    #: Base 64, as the caller sent it.
    user_data: str | None = None
    metadata: dict[str, str] | None = None
    availability_zone: str | None = None
    #: "auto", "none", a list of network requests, or None.
    requested_networks: str | list[dict[str, Any]] | None = None
    security_groups: tuple[str, ...] = ("default",)
    description: str | None = None
    access_ip_v4: str | None = None
    access_ip_v6: str | None = None
    config_drive: bool = False
    #: The administrator password (``adminPass``, given or made): for a config drive's
    #: ``meta_data.json``; stored nowhere.
    admin_pass: str | None = field(default=None, repr=False)
    tags: tuple[str, ...] = ()
    group_uuid: str | None = None


def _user_data(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest("User data needs to be valid base 64.") from exc
    return value


def image_properties(image: dict[str, Any]) -> dict[str, str]:
    """The image properties the scheduler's filters read."""
    return {k: str(v) for k, v in image.items()
            if k.startswith(("hw_", "img_")) or k in ("architecture", "hypervisor_type")}


def snapshot_root_volume(image: dict[str, Any]) -> RootVolume | None:
    """The root volume an image made by a volume-backed server's ``createImage`` asks for
    (its ``block_device_mapping`` with ``bdm_v2``): one made from the root's snapshot."""
    if str(image.get("bdm_v2", "")).lower() != "true" or not image.get("block_device_mapping"):
        return None
    try:
        mappings = json.loads(str(image["block_device_mapping"]))
    except ValueError as exc:
        raise BadRequest(f"Image {image.get('id')} has a block_device_mapping that is not "
                         "JSON.") from exc
    for mapping in mappings if isinstance(mappings, list) else []:
        if (isinstance(mapping, dict) and str(mapping.get("boot_index")) == "0"
                and mapping.get("source_type") == "snapshot" and mapping.get("snapshot_id")):
            return RootVolume(str(mapping["snapshot_id"]), from_image=False,
                              from_snapshot=True, size=int(mapping.get("volume_size") or 0),
                              delete_on_termination=bool(mapping.get("delete_on_termination")))
    return None


async def boot(rt: ComputeRuntime, context: RequestContext,
               req: BootRequest) -> list[CreatedInstance]:
    """Create the instances and cast their build to the scheduler; the first is the one
    the API answers with."""
    project_id = context.require_project()
    # Booting from an existing volume names no image to check.
    image = await rt.clients.images.get(context, req.image_id) if req.image_id else {}
    recorded = snapshot_root_volume(image) if req.root_volume is None else None
    if recorded is not None:  # an image recording volume snapshots (a volume-backed
        req = replace(req, root_volume=recorded)  # server's createImage): boot as it did
    if not req.config_drive and (rt.settings.compute.force_config_drive or str(
            image.get("img_config_drive", "")).lower() == "mandatory"):
        # Nova's ``force_config_drive`` and an image that cannot boot without one.
        req = replace(req, config_drive=True)
    if req.root_volume is not None or req.extra_disks:  # else nothing to check, and no
        await block_devices.check_sources(  # catalog to search for block storage
            rt.clients.volumes, rt.clients.images, context, _block_storage(context),
            BootDisks(req.image_id, req.root_volume, req.extra_disks), req.count)
    await _check_networks(rt, context, req.requested_networks)
    with span("compute.create_rows", step="5"):
        instances, flavor = await create_rows(rt, context, req, image)
    if len(instances) == 1:  # the request's later log lines name the new server
        set_instance(instances[0].uuid)
    build = BuildRequest(
        instance_uuids=[i.uuid for i in instances], project_id=project_id,
        flavor=flavor, availability_zone=req.availability_zone,
        group_uuid=req.group_uuid,
        image_properties=image_properties(image), admin_password=req.admin_pass)
    to_build = list(instances)
    if req.root_volume is not None:
        to_build = await _root_volumes(rt, context, instances, req.root_volume)
        build = build.model_copy(update={"instance_uuids": [i.uuid for i in to_build]})
    try:
        if to_build:
            await rt.clients.scheduler.schedule_and_build(context, build)
    except MessagingError as exc:
        BOOTS.labels("error").inc(len(to_build))
        async with rt.service() as svc:  # never leave a boot stuck in BUILD
            for instance in to_build:
                await svc.instances.set_error(instance.uuid, code=503,
                                              message=f"The scheduler is unreachable: {exc}")
    return instances


async def _check_networks(rt: ComputeRuntime, context: RequestContext,
                          requested: str | list[dict[str, Any]] | None) -> None:
    """Each network and port asked for exists for the caller (the network service answers
    with the caller's token: another project's are not found) and a port is free; refused
    here with a 400 (a 409 for a port in use), as Nova's API does, rather than accepted and
    left to fail on the host."""
    if not isinstance(requested, list) or not requested:
        return
    network = rt.clients.network
    base = await network.find_base(context)
    if base is None:
        return
    for item in requested:
        if item.get("port"):
            try:
                port = await network.show_port(context, base, str(item["port"]))
            except NotFound as exc:
                raise BadRequest(f"Port {item['port']} could not be found.") from exc
            if port.get("device_id"):
                raise Conflict(f"Port {item['port']} is still in use.")
        elif item.get("uuid"):
            try:
                await network.show_network(context, base, str(item["uuid"]))
            except NotFound as exc:
                raise BadRequest(f"Network {item['uuid']} could not be found.") from exc


def _block_storage(context: RequestContext) -> str | None:
    """The project's block storage URL, or None in a cloud without one."""
    try:
        return endpoint(context, "block-storage")
    except StratusError:
        return None


async def create_rows(rt: ComputeRuntime, context: RequestContext, req: BootRequest,
                      image: dict[str, Any]) -> tuple[list[CreatedInstance], FlavorInfo]:
    """The checks that need the database and the rows, committed (``image``: the image
    as the image service answered, ``{}`` for none)."""
    project_id = context.require_project()
    # One transaction holding the project's quota lock (core's ``Txn.lock``, taken by its
    # first statement: ``boot_facts``) from before the checks to the commit of the rows.
    # Shared when the project's last check here counted nothing (unlimited; no server
    # group, whose members are counted): one project's boots then run side by side, not
    # one at a time; a limit found under it runs the transaction again under the
    # exclusive lock.
    shared = req.group_uuid is None and quotas.TABLE.probably_unlimited(project_id)
    while True:
        try:
            async with rt.service() as svc:
                return await _create_rows(svc, context, project_id, req, image,
                                          shared=shared)
        except NeedsExclusiveLock:
            if not shared:
                raise
            shared = False


async def _create_rows(svc: ComputeService, context: RequestContext, project_id: str,
                       req: BootRequest, image: dict[str, Any], *,
                       shared: bool = False) -> tuple[list[CreatedInstance], FlavorInfo]:
    """The checks that need the database, and the rows; within the quota lock (``shared``:
    see ``stratus.core.quotas``)."""
    assert context.user_id is not None
    try:  # with the quota lock and the limits (see ``boot_facts``)
        facts = await boot_facts.read(svc.txn, svc.quotas, flavor_id=req.flavor_ref,
                                      project_id=project_id, admin=context.is_admin,
                                      shared=shared)
    except NotFound as exc:
        raise BadRequest(f"Flavor {req.flavor_ref} could not be found.") from exc
    flavor = facts.flavor
    if (image.get("min_ram") or 0) > flavor.ram:
        raise BadRequest("Flavor's memory is too small for requested image.")
    if (image.get("min_disk") or 0) > flavor.disk and flavor.disk:
        raise BadRequest("Flavor's disk is too small for requested image.")
    key_data = None
    if req.key_name is not None:
        try:
            key_data = (await svc.keypairs.get(context.user_id, req.key_name)).public_key
        except NotFound as exc:
            raise BadRequest("Invalid key_name provided.") from exc
    group = None
    if req.group_uuid is not None:
        try:
            group = await svc.server_groups.get(req.group_uuid, project_id=project_id)
        except NotFound as exc:
            raise BadRequest(f"Invalid server group {req.group_uuid}.") from exc
    if req.metadata:
        server_metadata.validate(req.metadata)
        await svc.server_metadata.check_quota(project_id, len(req.metadata),
                                              limits=facts.limits)
    disks = block_devices.devices(req.extra_disks, flavor)
    await svc.quotas.check_instances(project_id, req.count, flavor.vcpus, flavor.ram,
                                     shared=shared, limits=facts.limits, usage=facts.usage)
    instances = await svc.instances.create(context, NewInstance(
        name=req.name, image_ref="" if req.root_volume else req.image_id, flavor=flavor,
        key_name=req.key_name, key_data=key_data, user_data=_user_data(req.user_data),
        metadata=req.metadata, availability_zone=req.availability_zone,
        requested_networks=req.requested_networks, security_groups=req.security_groups,
        description=req.description, access_ip_v4=req.access_ip_v4,
        access_ip_v6=req.access_ip_v6, config_drive="True" if req.config_drive else "",
        tags=req.tags, block_devices=tuple(disks)), count=req.count)
    if group is not None:
        await svc.server_groups.add_members(group, [i.uuid for i in instances])
    return instances, flavor


async def _root_volumes(rt: ComputeRuntime, context: RequestContext,
                        instances: list[CreatedInstance],
                        root: RootVolume) -> list[CreatedInstance]:
    """Ask for each instance's root volume; the instances that got one (the others go to
    ERROR: without a root volume a server cannot be built)."""
    ready = []
    for instance in instances:
        try:
            await volume_attach.create_root_volume(rt.clients.volumes, context,
                                                   instance.uuid, root)
        except StratusError as exc:
            async with rt.service() as svc:
                await svc.instances.set_error(instance.uuid, code=exc.status,
                                              message=f"Root volume: {exc.message}")
        else:
            ready.append(instance)
    return ready
