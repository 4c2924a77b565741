"""The network service's errors, named as Neutron names them.

The API answers ``{"NeutronError": {"type": <class name>, "message", "detail"}}``, so the
class names here are part of the API: clients and Tempest match on them.
"""

from __future__ import annotations

from stratus.core.exceptions import BadRequest, Conflict, Forbidden, NotFound


class InvalidInput(BadRequest):
    pass


class NetworkNotFound(NotFound):
    def __init__(self, network_id: str) -> None:
        super().__init__(f"Network {network_id} could not be found.")


class SubnetNotFound(NotFound):
    def __init__(self, subnet_id: str) -> None:
        super().__init__(f"Subnet {subnet_id} could not be found.")


class PortNotFound(NotFound):
    def __init__(self, port_id: str) -> None:
        super().__init__(f"Port {port_id} could not be found.")


class SecurityGroupNotFound(NotFound):
    def __init__(self, group_id: str) -> None:
        super().__init__(f"Security group {group_id} does not exist")


class SecurityGroupRuleNotFound(NotFound):
    def __init__(self, rule_id: str) -> None:
        super().__init__(f"Security group rule {rule_id} does not exist")


class AgentNotFound(NotFound):
    def __init__(self, agent_id: str) -> None:
        super().__init__(f"Agent {agent_id} could not be found.")


class QuotaNotFound(NotFound):
    pass


class IpAddressGenerationFailure(Conflict):
    def __init__(self, network_id: str) -> None:
        super().__init__(f"No more IP addresses available on network {network_id}.")


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


class MacAddressGenerationFailure(Conflict):
    def __init__(self, network_id: str) -> None:
        super().__init__(f"Unable to generate unique mac on network {network_id}.")


class NetworkInUse(Conflict):
    def __init__(self, network_id: str) -> None:
        super().__init__(f"Unable to complete operation on network {network_id}. "
                         "There are one or more ports still in use on the network.")


class SubnetInUse(Conflict):
    def __init__(self, subnet_id: str) -> None:
        super().__init__(f"Unable to complete operation on subnet {subnet_id}: "
                         "one or more ports have an IP allocation from this subnet.")


class SecurityGroupInUse(Conflict):
    def __init__(self, group_id: str) -> None:
        super().__init__(f"Security Group {group_id} in use.")


class SecurityGroupCannotRemoveDefault(Conflict):
    def __init__(self) -> None:
        super().__init__("Insufficient rights for removing default security group.")


class SecurityGroupRuleExists(Conflict):
    def __init__(self, rule_id: str) -> None:
        super().__init__(f"Security group rule already exists. Rule id is {rule_id}.")


class OverQuota(Conflict):
    def __init__(self, resource: str) -> None:
        super().__init__(f"Quota exceeded for resources: ['{resource}'].")


class PolicyNotAuthorized(Forbidden):
    pass
