"""The client of the block storage service's volumes and attachments API (3.44).

compute-api reserves and releases attachments and makes root volumes; compute hosts connect
and complete attachments. Each call carries the user's token (nobody attaches a volume they
cannot see) and, where the caller has one, the service token. ``base`` is the project's
block storage URL (``http://h/volume/v3/<project>``).

Errors: ``NotFound`` and ``Conflict`` keep their type; any other refusal of the caller's
request is ``BadRequest`` and a failure of the service ``ServiceUnavailable``, so that
compute-api answers its own caller with a 400 or 503, never with block storage's 401 or 403.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlencode

from stratus.core.clients.base import ServiceClient
from stratus.core.context import RequestContext
from stratus.core.exceptions import (
    BadRequest,
    Conflict,
    NotFound,
    ServiceUnavailable,
    StratusError,
)
from stratus.core.web.errors import ErrorStyle

VERSION = "volume 3.44"
#: Volume metadata naming the instance a root volume was made for, and whether it goes
#: with the instance (boot from volume, which compute-api sets up).
BOOT_FOR = "stratus:boot_for"
DELETE_ON_TERMINATION = "stratus:delete_on_termination"
#: Volume metadata naming the instance a data volume (not its root) goes with when the
#: instance is deleted (``delete_on_termination`` of a boot request's mapping).
DATA_FOR = "stratus:data_for"
#: Volume metadata naming the instance whose build made the volume (blank, or from an image
#: or snapshot): a build that fails, even one cut short by a restart, deletes it again.
MADE_FOR = "stratus:made_for"


class VolumeClient(ServiceClient):
    service_type = "block-storage"
    style = ErrorStyle.COMPUTE
    service_name = "block storage service"

    async def _call(self, ctx: RequestContext, base: str, method: str, path: str,
                    body: dict[str, Any] | None = None, *,
                    service_token: str | None = None) -> Any:
        auth = self.auth(ctx, service_token=service_token)
        try:
            response = await self.request(method, f"{base}{path}", json=body, auth=auth,
                                          headers={"OpenStack-API-Version": VERSION})
        except (NotFound, Conflict, ServiceUnavailable):
            raise
        except StratusError as exc:
            if exc.status < 500:
                raise BadRequest(exc.message) from exc
            raise ServiceUnavailable(f"The block storage service answered "
                                     f"{exc.status}.") from exc
        return response.json() if response.content else None

    async def get_volume(self, ctx: RequestContext, base: str, volume_id: str, *,
                         service_token: str | None = None) -> dict[str, Any]:
        try:
            body = await self._call(ctx, base, "GET", f"/volumes/{volume_id}",
                                    service_token=service_token)
        except NotFound as exc:
            raise NotFound(f"Volume {volume_id} could not be found.") from exc
        volume: dict[str, Any] = body["volume"]
        return volume

    async def get_snapshot(self, ctx: RequestContext, base: str, snapshot_id: str, *,
                           service_token: str | None = None) -> dict[str, Any]:
        try:
            body = await self._call(ctx, base, "GET", f"/snapshots/{snapshot_id}",
                                    service_token=service_token)
        except NotFound as exc:
            raise NotFound(f"Snapshot {snapshot_id} could not be found.") from exc
        snapshot: dict[str, Any] = body["snapshot"]
        return snapshot

    async def create_volume(self, ctx: RequestContext, base: str, *, size: int | None,
                            name: str | None = None, image_id: str | None = None,
                            snapshot_id: str | None = None, volume_type: str | None = None,
                            metadata: dict[str, str] | None = None,
                            service_token: str | None = None) -> dict[str, Any]:
        """Ask for a volume (blank, or from an image or a snapshot); it is made
        asynchronously: ``creating`` until ``available`` (or ``error``)."""
        spec: dict[str, Any] = {"size": size, "name": name, "metadata": metadata or {}}
        if image_id is not None:
            spec["imageRef"] = image_id
        if snapshot_id is not None:
            spec["snapshot_id"] = snapshot_id
        if volume_type is not None:
            spec["volume_type"] = volume_type
        body = await self._call(ctx, base, "POST", "/volumes", {"volume": spec},
                                service_token=service_token)
        volume: dict[str, Any] = body["volume"]
        return volume

    async def add_metadata(self, ctx: RequestContext, base: str, volume_id: str,
                           metadata: dict[str, str], *,
                           service_token: str | None = None) -> None:
        await self._call(ctx, base, "POST", f"/volumes/{volume_id}/metadata",
                         {"metadata": metadata}, service_token=service_token)

    async def list_attachments(self, ctx: RequestContext, base: str,
                               instance_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The attachments (summary form) the caller may see of any of ``instance_ids``."""
        query = urlencode([("instance_id", uuid) for uuid in instance_ids])
        body = await self._call(ctx, base, "GET", f"/attachments?{query}")
        return list(body.get("attachments") or [])

    async def create_attachment(self, ctx: RequestContext, base: str, volume_id: str,
                                instance_uuid: str, *,
                                service_token: str | None = None) -> dict[str, Any]:
        body = await self._call(ctx, base, "POST", "/attachments", {"attachment": {
            "volume_uuid": volume_id, "instance_uuid": instance_uuid, "connector": None}},
            service_token=service_token)
        attachment: dict[str, Any] = body["attachment"]
        return attachment

    async def attachments_of(self, ctx: RequestContext, base: str, instance_uuid: str, *,
                             service_token: str | None = None) -> list[dict[str, Any]]:
        body = await self._call(ctx, base, "GET",
                                f"/attachments/detail?instance_id={instance_uuid}",
                                service_token=service_token)
        return list(body["attachments"])

    async def update_attachment(self, ctx: RequestContext, base: str, attachment_id: str,
                                connector: dict[str, Any], *,
                                service_token: str | None = None) -> dict[str, Any]:
        body = await self._call(ctx, base, "PUT", f"/attachments/{attachment_id}",
                                {"attachment": {"connector": connector}},
                                service_token=service_token)
        attachment: dict[str, Any] = body["attachment"]
        return attachment

    async def get_attachment(self, ctx: RequestContext, base: str, attachment_id: str, *,
                             service_token: str | None = None) -> dict[str, Any]:
        body = await self._call(ctx, base, "GET", f"/attachments/{attachment_id}",
                                service_token=service_token)
        attachment: dict[str, Any] = body["attachment"]
        return attachment

    async def complete_attachment(self, ctx: RequestContext, base: str, attachment_id: str,
                                  *, service_token: str | None = None) -> None:
        await self._call(ctx, base, "POST", f"/attachments/{attachment_id}/action",
                         {"os-complete": None}, service_token=service_token)

    async def volumes_with_metadata(self, ctx: RequestContext, base: str, key: str,
                                    value: str, *, service_token: str | None = None
                                    ) -> list[dict[str, Any]]:
        query = quote(repr({key: value}))
        body = await self._call(ctx, base, "GET", f"/volumes/detail?metadata={query}",
                                service_token=service_token)
        return list(body["volumes"])

    async def create_snapshot(self, ctx: RequestContext, base: str, volume_id: str, *,
                              name: str, force: bool = False) -> dict[str, Any]:
        """``POST /snapshots`` (``force``: of a volume in use, as compute snapshots the
        volumes of a running server)."""
        body = await self._call(ctx, base, "POST", "/snapshots", {"snapshot": {
            "volume_id": volume_id, "name": name, "force": force}})
        snapshot: dict[str, Any] = body["snapshot"]
        return snapshot

    async def delete_volume(self, ctx: RequestContext, base: str, volume_id: str, *,
                            service_token: str | None = None) -> None:
        try:
            await self._call(ctx, base, "DELETE", f"/volumes/{volume_id}",
                             service_token=service_token)
        except NotFound:
            pass

    async def delete_attachment(self, ctx: RequestContext, base: str, attachment_id: str,
                                *, service_token: str | None = None) -> None:
        try:
            await self._call(ctx, base, "DELETE", f"/attachments/{attachment_id}",
                             service_token=service_token)
        except NotFound:
            pass  # already gone: what we wanted

    async def release_instance(self, ctx: RequestContext, base: str, instance_uuid: str, *,
                               service_token: str | None = None,
                               settle_within: float = 600.0,
                               owned_volumes: bool = True) -> None:
        """Give back what ``instance_uuid`` held: its attachments are deleted (its volumes
        are ``available`` again), then the root and data volumes made to go with it
        (``BOOT_FOR``/``DATA_FOR`` with ``DELETE_ON_TERMINATION``) are deleted, once one
        still being made has settled. ``owned_volumes=False``: the instance's boot request
        made or tagged none (booted from an image with no volume in its block device
        mappings), so they are not looked for. Raises on the first failure; what was
        released stays released."""
        for attachment in await self.attachments_of(ctx, base, instance_uuid,
                                                    service_token=service_token):
            await self.delete_attachment(ctx, base, attachment["id"],
                                         service_token=service_token)
        if not owned_volumes:
            return
        deadline = time.monotonic() + settle_within
        owned = [*await self.volumes_with_metadata(ctx, base, BOOT_FOR, instance_uuid,
                                                   service_token=service_token),
                 *await self.volumes_with_metadata(ctx, base, DATA_FOR, instance_uuid,
                                                   service_token=service_token)]
        for volume in owned:
            if (volume.get("metadata") or {}).get(DELETE_ON_TERMINATION) != "true":
                continue
            await self.delete_when_settled(ctx, base, volume, deadline=deadline,
                                           service_token=service_token)

    async def delete_when_settled(self, ctx: RequestContext, base: str,
                                  volume: dict[str, Any], *, deadline: float,
                                  service_token: str | None = None) -> None:
        """Delete ``volume`` once it has settled (a volume still being made cannot be
        deleted yet); ``Conflict`` if it has not by ``deadline`` (``time.monotonic``)."""
        while volume["status"] not in _SETTLED:
            if time.monotonic() > deadline:
                raise Conflict(f"Volume {volume['id']} stayed {volume['status']}; it "
                               "was not deleted.")
            await asyncio.sleep(0.2)
            try:
                volume = await self.get_volume(ctx, base, volume["id"],
                                               service_token=service_token)
            except NotFound:
                return  # deleted meanwhile: nothing left to do
        await self.delete_volume(ctx, base, volume["id"], service_token=service_token)


#: Volume states a delete is accepted in (and that nothing else will move it out of).
_SETTLED = ("available", "error", "error_restoring", "error_extending", "error_managing")

