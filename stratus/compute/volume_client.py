"""Compute's client of the block storage service's attachments API (3.44), over REST.

compute-api reserves and releases attachments; compute hosts connect and complete them.
Each call carries the user's token (nobody attaches a volume they cannot see) and, where
the caller has one, the service token. ``base`` is the project's block storage URL
(``http://h/volume/v3/<project>``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import quote

import httpx

from stratus.core.context import RequestContext
from stratus.core.exceptions import BadRequest, Conflict, NotFound, ServiceUnavailable

VERSION = "volume 3.44"
#: Volume metadata naming the instance a root volume was made for, and whether it goes
#: with the instance (boot from volume; see ``stratus.compute.api.boot_volumes``).
BOOT_FOR = "stratus:boot_for"
DELETE_ON_TERMINATION = "stratus:delete_on_termination"


class VolumeClient:
    def __init__(self, client: httpx.AsyncClient, *, service_token: str | None = None) -> None:
        self.client = client
        self.service_token = service_token

    async def _call(self, ctx: RequestContext, base: str, method: str, path: str,
                    body: dict[str, Any] | None = None, *,
                    service_token: str | None = None) -> Any:
        headers = {"X-Auth-Token": ctx.auth_token or service_token or "",
                   "OpenStack-API-Version": VERSION}
        token = service_token or ctx.service_token
        if token:
            headers["X-Service-Token"] = token
        try:
            response = await self.client.request(method, f"{base}{path}", json=body,
                                                  headers=headers)
        except httpx.HTTPError as exc:
            raise ServiceUnavailable("The block storage service is unreachable.") from exc
        if response.status_code >= 400:
            message = _message(response)
            if response.status_code == 404:
                raise NotFound(message)
            if response.status_code == 409:
                raise Conflict(message)
            if response.status_code < 500:
                raise BadRequest(message)
            raise ServiceUnavailable(f"The block storage service answered "
                                     f"{response.status_code}.")
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
                               settle_within: float = 600.0) -> None:
        """Give back what ``instance_uuid`` held: its attachments are deleted (its volumes
        are ``available`` again), then the root volumes made to go with it
        (``DELETE_ON_TERMINATION``) are deleted, once one still being made has settled.
        Raises on the first failure; what was released stays released."""
        for attachment in await self.attachments_of(ctx, base, instance_uuid,
                                                    service_token=service_token):
            await self.delete_attachment(ctx, base, attachment["id"],
                                         service_token=service_token)
        deadline = time.monotonic() + settle_within
        for volume in await self.volumes_with_metadata(ctx, base, BOOT_FOR, instance_uuid,
                                                       service_token=service_token):
            if (volume.get("metadata") or {}).get(DELETE_ON_TERMINATION) != "true":
                continue
            while volume["status"] not in _SETTLED:
                if time.monotonic() > deadline:
                    raise Conflict(f"Volume {volume['id']} stayed {volume['status']}; it "
                                   "was not deleted.")
                await asyncio.sleep(0.2)
                try:
                    volume = await self.get_volume(ctx, base, volume["id"],
                                                   service_token=service_token)
                except NotFound:
                    break  # deleted meanwhile: nothing left to do
            else:  # settled: delete it
                await self.delete_volume(ctx, base, volume["id"],
                                         service_token=service_token)


#: Volume states a delete is accepted in (and that nothing else will move it out of).
_SETTLED = ("available", "error", "error_restoring", "error_extending", "error_managing")


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
        (inner,) = body.values()
        return str(inner["message"])
    except (ValueError, TypeError, KeyError, AttributeError):
        return f"The block storage service answered {response.status_code}."
