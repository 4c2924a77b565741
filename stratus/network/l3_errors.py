"""The L3 service's errors (routers and floating IPs), named as Neutron names them: the
class name is the ``type`` of the API's ``NeutronError`` body."""

from __future__ import annotations

from stratus.core.exceptions import Conflict, NotFound
from stratus.network.errors import InvalidInput, _AboutOne


class BadRequest(InvalidInput):
    """Neutron's generic 400, whose type is ``BadRequest``: ``Bad <resource> request:
    <why>.``"""

    def __init__(self, resource: str, why: str) -> None:
        super().__init__(f"Bad {resource} request: {why}.")


class RouterNotFound(_AboutOne, NotFound):
    template = "Router {} could not be found"


class RouterInUse(Conflict):
    def __init__(self, router_id: str, reason: str = "still has ports") -> None:
        super().__init__(f"Router {router_id} {reason}")


class RouterInterfaceNotFound(NotFound):
    def __init__(self, router_id: str, port_id: str) -> None:
        super().__init__(f"Router {router_id} does not have an interface with id {port_id}")


class RouterInterfaceNotFoundForSubnet(NotFound):
    def __init__(self, router_id: str, subnet_id: str) -> None:
        super().__init__(f"Router {router_id} has no interface on subnet {subnet_id}")


class RouterInterfaceInUseByFloatingIP(Conflict):
    def __init__(self, router_id: str, subnet_id: str) -> None:
        super().__init__(f"Router interface for subnet {subnet_id} on router {router_id} "
                         "cannot be deleted, as it is required by one or more floating IPs.")


class RouterInterfaceInUseByRoute(Conflict):
    def __init__(self, router_id: str, subnet_id: str) -> None:
        super().__init__(f"Router interface for subnet {subnet_id} on router {router_id} "
                         "cannot be deleted, as it is required by one or more routes.")


class RouterExternalGatewayInUseByFloatingIp(Conflict):
    def __init__(self, router_id: str, network_id: str) -> None:
        super().__init__(f"Gateway cannot be updated for router {router_id}, since a "
                         f"gateway to external network {network_id} is required by one or "
                         "more floating IPs.")


class InvalidRoutes(InvalidInput):
    def __init__(self, routes: str, reason: str) -> None:
        super().__init__(f"Invalid format for routes: {routes}, {reason}")


class FloatingIPNotFound(_AboutOne, NotFound):
    template = "Floating IP {} could not be found"


class ExternalGatewayForFloatingIPNotFound(NotFound):
    def __init__(self, network_id: str, subnet_id: str, port_id: str) -> None:
        super().__init__(f"External network {network_id} is not reachable from subnet "
                         f"{subnet_id}.  Therefore, cannot associate Port {port_id} with a "
                         "Floating IP.")


class FloatingIPPortAlreadyAssociated(Conflict):
    def __init__(self, address: str, fip_id: str, port_id: str, fixed_ip: str,
                 network_id: str) -> None:
        super().__init__(f"Cannot associate floating IP {address} ({fip_id}) with port "
                         f"{port_id} using fixed IP {fixed_ip}, as that fixed IP already has "
                         f"a floating IP on external network {network_id}.")


class PortInUse(Conflict):
    def __init__(self, network_id: str, port_id: str, device_id: str) -> None:
        super().__init__(f"Unable to complete operation on port {port_id} for network "
                         f"{network_id}. Port already has an attached device {device_id}.")


class ServicePortInUse(Conflict):
    def __init__(self, port_id: str, reason: str) -> None:
        super().__init__(f"Port {port_id} cannot be deleted directly via the port API: "
                         f"{reason}.")
