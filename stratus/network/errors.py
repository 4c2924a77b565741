"""The network service's errors, named as Neutron names them.

The API answers ``{"NeutronError": {"type": <class name>, "message", "detail"}}``, so the
class names here are part of the API: clients and Tempest match on them. Most errors are
about one resource: their class gives the message with ``{}`` where its id (or name) goes.
"""

from __future__ import annotations

from typing import ClassVar

from stratus.core.exceptions import BadRequest, Conflict, Forbidden, NotFound


class InvalidInput(BadRequest):
    pass


class _Missing(NotFound):
    """A resource that does not exist or that the caller cannot see, by its id."""

    template: ClassVar[str]

    def __init__(self, resource_id: str) -> None:
        super().__init__(self.template.format(resource_id))


class NetworkNotFound(_Missing):
    template = "Network {} could not be found."


class SubnetNotFound(_Missing):
    template = "Subnet {} could not be found."


class PortNotFound(_Missing):
    template = "Port {} could not be found."


class SecurityGroupNotFound(_Missing):
    template = "Security group {} does not exist"


class SecurityGroupRuleNotFound(_Missing):
    template = "Security group rule {} does not exist"


class AgentNotFound(_Missing):
    template = "Agent {} could not be found."


class QuotaNotFound(NotFound):
    pass


class _ConflictOn(Conflict):
    """A request that conflicts with the state of one resource (named by id or name)."""

    template: ClassVar[str]

    def __init__(self, resource: str) -> None:
        super().__init__(self.template.format(resource))


class IpAddressGenerationFailure(_ConflictOn):
    template = "No more IP addresses available on network {}."


class IpAddressAlreadyAllocated(Conflict):
    def __init__(self, ip: str, subnet_id: str) -> None:
        super().__init__(f"IP address {ip} already allocated in subnet {subnet_id}")


class InvalidIpForSubnet(BadRequest):
    def __init__(self, ip: str) -> None:
        super().__init__(f"IP address {ip} is not a valid IP for the specified subnet.")


class MacAddressInUse(Conflict):
    def __init__(self, mac: str, network_id: str) -> None:
        super().__init__(f"Unable to complete operation for network {network_id}. "
                         f"The mac address {mac} is in use.")


class MacAddressGenerationFailure(_ConflictOn):
    template = "Unable to generate unique mac on network {}."


class NetworkInUse(_ConflictOn):
    template = ("Unable to complete operation on network {}. "
                "There are one or more ports still in use on the network.")


class SubnetInUse(_ConflictOn):
    template = ("Unable to complete operation on subnet {}: "
                "one or more ports have an IP allocation from this subnet.")


class SecurityGroupInUse(_ConflictOn):
    template = "Security Group {} in use."


class SecurityGroupCannotRemoveDefault(Conflict):
    def __init__(self) -> None:
        super().__init__("Insufficient rights for removing default security group.")


class SecurityGroupRuleExists(_ConflictOn):
    template = "Security group rule already exists. Rule id is {}."


class OverQuota(_ConflictOn):
    template = "Quota exceeded for resources: ['{}']."


class PolicyNotAuthorized(Forbidden):
    pass
