"""``rebuild``: the server's disk made again from an image, on the same host and ports.

compute-api checks the arguments for the microversion (``description`` from 2.19,
``key_name`` from 2.54, ``user_data`` from 2.57, ``trusted_image_certificates`` from 2.63,
``hostname`` from 2.90; ``personality`` only before 2.57), the server's state (ACTIVE,
STOPPED or ERROR with no task: else 409), the image (visible, active, fits the flavor) and
the key pair, then in one transaction records the new image, name, metadata, key, user data
and the ``rebuilding`` task, and casts to the host (``stratus.compute.agent.disk_flows``),
which walks ``rebuild_block_device_mapping`` → ``rebuild_spawning`` → None while vm_state
stays what it was. The answer is the server's view with its ``adminPass``.

A server booted from a volume keeps its volume: rebuilding it with another image than the
volume's is a 400, as Nova answered before 2.93 (no re-imaging of volumes here); with the
same image the guest is booted again from the volume as it is.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stratus.compute import server_metadata, states
from stratus.compute.action_steps import Reply, parse_args, refuse_if_locked, require, version
from stratus.compute.instances import hostname_of
from stratus.compute.servers import target, visible
from stratus.compute.service import ComputeRuntime
from stratus.core.bus import MessagingError
from stratus.core.clients.base import endpoint
from stratus.core.clients.volume import BOOT_FOR
from stratus.core.exceptions import BadRequest, Conflict, NotFound
from stratus.core.formats import AccessIPv4, AccessIPv6
from stratus.core.policy import Caller

#: The vm_states a server may be rebuilt in (with no task in flight).
REBUILD_STATES = (states.ACTIVE, states.STOPPED, states.ERROR)

#: Arguments that only exist from a microversion on.
_GATED = (("description", "2.19"), ("key_name", "2.54"), ("user_data", "2.57"),
          ("trusted_image_certificates", "2.63"), ("hostname", "2.90"))


class RebuildArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    image_ref: str = Field(alias="imageRef", min_length=1)
    name: str | None = Field(default=None, min_length=1, max_length=255)
    metadata: dict[str, Any] | None = None
    admin_pass: str | None = Field(default=None, alias="adminPass")
    access_ip_v4: AccessIPv4 | None = Field(default=None, alias="accessIPv4")
    access_ip_v6: AccessIPv6 | None = Field(default=None, alias="accessIPv6")
    disk_config: str | None = Field(default=None, alias="OS-DCF:diskConfig",
                                    pattern="^(AUTO|MANUAL)$")
    preserve_ephemeral: bool = False
    personality: list[Any] | None = None
    key_name: str | None = Field(default=None, max_length=255)
    user_data: str | None = Field(default=None, max_length=65535)
    description: str | None = Field(default=None, max_length=255)
    trusted_image_certificates: list[str] | None = None
    hostname: str | None = Field(default=None, max_length=255)


def _check_microversion(requested: RebuildArgs) -> None:
    asked = version()
    for field, minimum in _GATED:
        if field in requested.model_fields_set and not asked.at_least(minimum):
            raise BadRequest(f"Invalid input for field '{field}': it needs microversion "
                             f"{minimum} or later.")
    if requested.personality is not None and asked.at_least("2.57"):
        raise BadRequest("Invalid input for field 'personality': it was removed in "
                         "microversion 2.57.")


def _user_data(value: str | None) -> str | None:
    if value is not None:
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BadRequest("User data needs to be valid base 64.") from exc
    return value


async def rebuild(rt: ComputeRuntime, caller: Caller, server_id: str, args: Any) -> Reply:
    requested = parse_args(RebuildArgs, args, "rebuild")
    _check_microversion(requested)
    metadata = (server_metadata.validate(requested.metadata)
                if requested.metadata is not None else None)
    context = caller.context
    async with rt.service() as svc:
        instance = await visible(svc, caller, server_id)
        caller.authorize("os_compute_api:servers:rebuild", target(instance))
        refuse_if_locked(instance, caller)
        require(instance, REBUILD_STATES, "rebuild")
        volume_backed = not instance.image_ref
        uuid = instance.uuid
    image = await rt.clients.images.get(context, requested.image_ref)
    if volume_backed:
        await _same_image_as_volume(rt, caller, uuid, requested.image_ref)
    set_fields = requested.model_fields_set
    async with rt.service() as svc:
        instance = await visible(svc, caller, server_id)
        require(instance, REBUILD_STATES, "rebuild")
        if instance.host is None:
            raise Conflict(f"Instance {uuid} has no host.")
        flavor = instance.flavor or {}
        if (image.get("min_ram") or 0) > int(flavor.get("ram") or 0):
            raise BadRequest("Flavor's memory is too small for requested image.")
        if (image.get("min_disk") or 0) > int(flavor.get("disk") or 0) and flavor.get("disk"):
            raise BadRequest("Flavor's disk is too small for requested image.")
        if "key_name" in set_fields:
            instance.key_name = instance.key_data = None
            if requested.key_name is not None:
                assert context.user_id is not None
                try:
                    key = await svc.keypairs.get(instance.user_id, requested.key_name)
                except NotFound as exc:
                    raise BadRequest("Invalid key_name provided.") from exc
                instance.key_name, instance.key_data = key.name, key.public_key
        if "user_data" in set_fields:
            instance.user_data = _user_data(requested.user_data)
        if metadata is not None:
            await svc.server_metadata.replace(instance, metadata, merge=False)
        if requested.name is not None:
            instance.display_name = requested.name
        if "description" in set_fields:
            instance.display_description = requested.description
        if requested.hostname is not None:
            instance.hostname = hostname_of(requested.hostname)
        if "access_ip_v4" in set_fields:
            instance.access_ip_v4 = requested.access_ip_v4
        if "access_ip_v6" in set_fields:
            instance.access_ip_v6 = requested.access_ip_v6
        if not volume_backed:
            instance.image_ref = requested.image_ref
        instance.task_state = states.REBUILDING
        await svc.instances.start_action(context, uuid, "rebuild")
        host = instance.host
    # The password answered is the one a config drive made afresh carries.
    admin_pass = requested.admin_pass or secrets.token_urlsafe(9)
    try:
        await rt.clients.agents.rebuild_instance(context, host, uuid,
                                                 requested.preserve_ephemeral, admin_pass)
    except MessagingError as exc:
        async with rt.service() as svc:
            await svc.instances.set_error(uuid, code=503, host=host,
                                          message=f"Rebuild could not reach {host}: {exc}")
            await svc.instances.finish_action(uuid, context.request_id, "Error")
        raise Conflict(f"The server's host {host} could not be reached.") from exc
    if not rt.settings.compute.enable_instance_password:
        return Reply(202, show_server=uuid)
    return Reply(202, show_server=uuid, extra={"adminPass": admin_pass})


async def _same_image_as_volume(rt: ComputeRuntime, caller: Caller, uuid: str,
                                image_ref: str) -> None:
    """400 unless ``image_ref`` is the image the server's root volume was made from."""
    context = caller.context
    roots = await rt.clients.volumes.volumes_with_metadata(
        context, endpoint(context, "block-storage"), BOOT_FOR, uuid)
    sources = {(v.get("volume_image_metadata") or {}).get("image_id") for v in roots}
    if image_ref not in sources:
        raise BadRequest("Unable to rebuild with a different image for a volume-backed "
                         "server.")
