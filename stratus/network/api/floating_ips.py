"""``/v2.0/floatingips``: the standard routes (``resources.add_routes``); association is an
update (``{"port_id": ..., "fixed_ip_address": ...}``, ``{"port_id": null}`` to
disassociate). Bodies and views are here; the rules in ``stratus.network.floating_ips``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from stratus.core.policy import Caller
from stratus.network.api.resources import Collection, add_routes
from stratus.network.api.schemas import Body, Owned, Str
from stratus.network.api.views import stamp
from stratus.network.floating_ips import FloatingIPUpdate, NewFloatingIP
from stratus.network.service import NetworkService

router = APIRouter(prefix="/v2.0")


# Bodies ------------------------------------------------------------------------------------


class FloatingIPBody(Owned):
    UNSUPPORTED = {"dns_name": "", "dns_domain": "", "qos_policy_id": None}

    floating_network_id: Str = ""
    floating_ip_address: Str | None = None
    subnet_id: Str | None = None
    port_id: Str | None = None
    fixed_ip_address: Str | None = None
    description: Str = ""
    dns_name: Str = ""
    dns_domain: Str = ""
    qos_policy_id: Str | None = None

    def command(self) -> NewFloatingIP:
        return NewFloatingIP(
            floating_network_id=self.floating_network_id, project_id=self.owner,
            description=self.description, floating_ip_address=self.floating_ip_address,
            subnet_id=self.subnet_id, port_id=self.port_id,
            fixed_ip_address=self.fixed_ip_address)


class FloatingIPUpdateBody(Body):
    UNSUPPORTED = {"qos_policy_id": None}

    port_id: Str | None = None
    fixed_ip_address: Str | None = None
    description: Str = ""
    qos_policy_id: Str | None = None

    def command(self) -> FloatingIPUpdate:
        return FloatingIPUpdate(description=self.given("description"),
                                port_id=self.given("port_id"),
                                fixed_ip_address=self.given("fixed_ip_address"))


# Views -------------------------------------------------------------------------------------


def _port_details(port: Any) -> dict[str, Any] | None:
    """``port_details`` (``fip-port-details``): the associated port, in brief."""
    if port is None:
        return None
    return {"name": port.name, "network_id": port.network_id,
            "mac_address": port.mac_address, "admin_state_up": port.admin_state_up,
            "status": port.status, "device_id": port.device_id,
            "device_owner": port.device_owner}


def floatingip_view(f: Any, port: Any) -> dict[str, Any]:
    return {
        "id": f.id, "floating_ip_address": f.floating_ip_address,
        "floating_network_id": f.floating_network_id, "router_id": f.router_id,
        "port_id": f.fixed_port_id, "fixed_ip_address": f.fixed_ip_address,
        "status": f.status, "port_details": _port_details(port),
        "tenant_id": f.project_id, "project_id": f.project_id, "description": f.description,
        "tags": list(f.tags or []), "created_at": stamp(f.created_at),
        "updated_at": stamp(f.updated_at), "revision_number": f.revision_number,
    }


async def floatingip_views(svc: NetworkService, caller: Caller,
                           fips: list[Any]) -> list[dict[str, Any]]:
    ports = await svc.floating_ips.associated_ports(fips)
    return [floatingip_view(f, ports.get(f.fixed_port_id or "")) for f in fips]


COLLECTION = Collection("floatingip", "floatingips", lambda svc: svc.floating_ips,
                        floatingip_views, create=FloatingIPBody, update=FloatingIPUpdateBody)
add_routes(router, COLLECTION)
