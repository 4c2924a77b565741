"""``/servers/{id}/ips``: a server's addresses per network, as Nova lists them (version and
address only; the ``OS-EXT-IPS`` attributes belong to the server's own view)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from stratus.compute.api.deps import CallerDep, Service
from stratus.compute.api.server_views import addresses_of
from stratus.compute.servers import target, visible
from stratus.core.exceptions import NotFound

router = APIRouter(prefix="/v2.1/servers/{server_id}/ips")


def _plain(shown: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    return {network: [{"version": a["version"], "addr": a["addr"]} for a in addresses]
            for network, addresses in shown.items()}


@router.get("")
async def index(server_id: str, svc: Service, caller: CallerDep) -> dict[str, Any]:
    instance = await visible(svc, caller, server_id)
    caller.authorize("os_compute_api:ips:index", target(instance))
    return {"addresses": _plain(addresses_of(instance))}


@router.get("/{network_label}")
async def show(server_id: str, network_label: str, svc: Service,
               caller: CallerDep) -> dict[str, Any]:
    instance = await visible(svc, caller, server_id)
    caller.authorize("os_compute_api:ips:show", target(instance))
    addresses = _plain(addresses_of(instance))
    if network_label not in addresses:
        raise NotFound("Instance is not a member of specified network")
    return {network_label: addresses[network_label]}
