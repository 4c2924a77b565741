"""The client of compute-api, as the network service uses it: external events.

``server_external_events`` posts ``network-vif-plugged`` / ``-unplugged`` events to
``{compute endpoint}/os-server-external-events`` as the calling service itself: its own
token is ``X-Auth-Token`` (no user is involved), refreshed once on a 401.
"""

from __future__ import annotations

from typing import Any

from stratus.core.clients.base import KeystoneAuth, ServiceClient
from stratus.core.web.errors import ErrorStyle


class ComputeClient(ServiceClient):
    service_type = "compute"
    style = ErrorStyle.COMPUTE
    service_name = "compute service"

    async def server_external_events(self, events: list[dict[str, Any]]) -> int:
        """Post ``events``; the answer's status (200, or 207 when some servers were not
        found). ``NotFound`` when none was (nothing waits for them)."""
        url = f"{await self.endpoint()}/os-server-external-events"
        auth = KeystoneAuth(service=self.service_auth, service_header=False)
        response = await self.request("POST", url, json={"events": events}, auth=auth)
        return response.status_code
