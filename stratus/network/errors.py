"""The network service's errors, named as Neutron names them.

The API answers ``{"NeutronError": {"type": <class name>, "message", "detail"}}``, so the
class names here are part of the API: clients and Tempest match on them. Most errors are
about one resource: their class gives the message with ``{}`` where its id (or name) goes.
"""

from __future__ import annotations

from typing import ClassVar

from stratus.core.exceptions import BadRequest, Conflict, Forbidden, NotFound, StratusError


class InvalidInput(BadRequest):
    pass


class _AboutOne(StratusError):
    """An error about one resource: the class's ``template`` with the resource's id (or
    name) in its ``{}``. Listed first among the bases; the other base gives the status."""

    template: ClassVar[str]

    def __init__(self, resource: str) -> None:
        super().__init__(self.template.format(resource))


class NetworkNotFound(_AboutOne, NotFound):
    template = "Network {} could not be found."


class SubnetNotFound(_AboutOne, NotFound):
    template = "Subnet {} could not be found."


class PortNotFound(_AboutOne, NotFound):
    template = "Port {} could not be found."


class SecurityGroupNotFound(_AboutOne, NotFound):
    template = "Security group {} does not exist"


class SecurityGroupRuleNotFound(_AboutOne, NotFound):
    template = "Security group rule {} does not exist"


class AgentNotFound(_AboutOne, NotFound):
    template = "Agent {} could not be found."


class QuotaNotFound(NotFound):
    pass


class IpAddressGenerationFailure(_AboutOne, Conflict):
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


class MacAddressGenerationFailure(_AboutOne, Conflict):
    template = "Unable to generate unique mac on network {}."


class NetworkInUse(_AboutOne, Conflict):
    template = ("Unable to complete operation on network {}. "
                "There are one or more ports still in use on the network.")


class SubnetInUse(_AboutOne, Conflict):
    template = ("Unable to complete operation on subnet {}: "
                "one or more ports have an IP allocation from this subnet.")


class SubnetPoolNotFound(_AboutOne, NotFound):
    template = "Subnet pool {} could not be found."


class SubnetPoolInUse(_AboutOne, Conflict):
    template = ("Unable to complete operation on subnet pool {}: "
                "one or more subnets were allocated from it.")


class SubnetAllocationError(_AboutOne, Conflict):
    template = "Failed to allocate subnet: {}"


class SecurityGroupInUse(_AboutOne, Conflict):
    template = "Security Group {} in use."


class SecurityGroupCannotRemoveDefault(Conflict):
    def __init__(self) -> None:
        super().__init__("Insufficient rights for removing default security group.")


class SecurityGroupRuleExists(_AboutOne, Conflict):
    template = "Security group rule already exists. Rule id is {}."


class OverQuota(_AboutOne, Conflict):
    template = "Quota exceeded for resources: ['{}']."


class PolicyNotAuthorized(Forbidden):
    pass


# Port security, allowed address pairs and security group rules (Neutron's names) ----------


class PortSecurityAndIPRequiredForSecurityGroups(InvalidInput):
    def __init__(self) -> None:
        super().__init__("Port security must be enabled and port must have an IP address in "
                         "order to use security groups.")


class PortSecurityPortHasSecurityGroup(Conflict):
    def __init__(self) -> None:
        super().__init__("Port has security group associated. Cannot disable port security "
                         "or IP address until security group is removed.")


class AllowedAddressPairsMissingIP(InvalidInput):
    def __init__(self) -> None:
        super().__init__("AllowedAddressPair must contain ip_address")


class AddressPairAndPortSecurityRequired(Conflict):
    def __init__(self) -> None:
        super().__init__("Port Security must be enabled in order to have allowed address "
                         "pairs on a port.")


class DuplicateAddressPairInRequest(InvalidInput):
    def __init__(self, mac: str, ip: str) -> None:
        super().__init__(f"Request contains duplicate address pair: mac_address {mac} "
                         f"ip_address {ip}.")


class AllowedAddressPairExhausted(BadRequest):
    def __init__(self, maximum: int) -> None:
        super().__init__(f"The number of allowed address pair exceeds the maximum {maximum}.")


class SecurityGroupDefaultAlreadyExists(Conflict):
    def __init__(self) -> None:
        super().__init__("Default security group already exists.")


class SecurityGroupCannotUpdateDefault(Conflict):
    def __init__(self) -> None:
        super().__init__("Updating default security group not allowed.")


class SecurityGroupRuleInvalidProtocol(InvalidInput):
    def __init__(self, protocol: str, known: list[str]) -> None:
        super().__init__(f"Security group rule protocol {protocol} not supported. Only "
                         f"protocol values {known} and integer representations [0 to 255] "
                         "are supported.")


class SecurityGroupInvalidPortRange(InvalidInput):
    def __init__(self) -> None:
        super().__init__("For TCP/UDP protocols, port_range_min must be <= port_range_max")


class SecurityGroupInvalidPortValue(InvalidInput):
    def __init__(self, port: object) -> None:
        super().__init__(f"Invalid value for port {port}")


class SecurityGroupInvalidIcmpValue(InvalidInput):
    def __init__(self, field: str, attribute: str, value: object) -> None:
        super().__init__(f"Invalid value for ICMP {field} ({attribute}) {value}. It must be "
                         "0 to 255.")


class SecurityGroupMissingIcmpType(InvalidInput):
    def __init__(self, value: object) -> None:
        super().__init__(f"ICMP code (port-range-max) {value} is provided but ICMP type "
                         "(port-range-min) is missing.")


class SecurityGroupProtocolRequiredWithPorts(InvalidInput):
    def __init__(self) -> None:
        super().__init__("Must also specify protocol if port range is given.")


class SecurityGroupInvalidProtocolForPortRange(InvalidInput):
    def __init__(self, protocol: str) -> None:
        super().__init__(f"Invalid protocol {protocol} for port range, only supported for "
                         "TCP, UDP, UDPLITE, SCTP and DCCP.")


class SecurityGroupRemoteGroupAndRemoteIpPrefix(InvalidInput):
    def __init__(self) -> None:
        super().__init__("Only remote_ip_prefix or remote_group_id may be provided.")


class SecurityGroupRuleParameterConflict(InvalidInput):
    def __init__(self, ethertype: str, cidr: str) -> None:
        super().__init__(f"Conflicting value ethertype {ethertype} for CIDR {cidr}")
