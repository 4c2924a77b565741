"""Request bodies of the Network v2.0 API (pydantic), and the typed commands they become.

Neutron's answers are kept, as clients and tests match on them (all ``400 InvalidInput``):

* an attribute the resource lacks: ``Unrecognized attribute(s) 'a, b'`` (``extra="forbid"``);
* a wrong type: ``Invalid input for <name>. Reason: '<value>' is not a valid string`` (or
  boolean value, integer, list, dictionary); a string longer than 255 characters likewise;
  booleans may come as ``"true"``/``"false"`` and integers as strings of digits;
* ``tenant_id`` is the old name of ``project_id``; when both come they must agree;
* attributes accepted for compatibility but without effect (``qos_policy_id``, ...) are
  refused unless they carry their default, rather than silently ignored.

Which attributes a request *named* matters to the domain (policy rules, ``gateway_ip: null``
against no ``gateway_ip``): the commands say so (``UNSET``, ``binding``, ``provider``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Self, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from stratus.core.web import params
from stratus.network import address_pairs
from stratus.network.address_pairs import AddressPairRequest
from stratus.network.agent_registry import AgentUpdate
from stratus.network.common import UNSET
from stratus.network.errors import InvalidInput
from stratus.network.networks import NetworkUpdate, NewNetwork, ProviderSegment
from stratus.network.objects import HostRoute
from stratus.network.ports import FixedIpRequest, NewPort, PortUpdate
from stratus.network.security_groups import NewRule, NewSecurityGroup, SecurityGroupUpdate
from stratus.network.subnetpools import NewSubnetPool, SubnetPoolUpdate
from stratus.network.subnets import NewSubnet, SubnetUpdate

MAX_LENGTH = 255


def _neutron(message: str) -> PydanticCustomError:
    """An error whose message is Neutron's own (passed through as it is)."""
    return PydanticCustomError("neutron", "{message}", {"message": message})


#: Neutron's words for booleans and integers (core's tables), raising its ``InvalidInput``.
WORDS = params.NEUTRON.raising(InvalidInput)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in WORDS.true | WORDS.false:
        return WORDS.boolean("", value)
    raise PydanticCustomError("neutron_bool", "not a valid boolean value")


def _int(value: Any) -> int:
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise PydanticCustomError("neutron_int", "not an integer")
    return value


Bool = Annotated[bool, BeforeValidator(_bool)]
Int = Annotated[int, BeforeValidator(_int)]
Str = Annotated[StrictStr, Field(max_length=MAX_LENGTH)]
#: A protocol by name or number; Neutron takes the number as an integer too (``17``) and
#: keeps it as the string (``"17"``).
Protocol = Annotated[StrictStr, Field(max_length=MAX_LENGTH)] | StrictInt
StrList = Annotated[list[StrictStr], Field(strict=True)]
AnyList = Annotated[list[Any], Field(strict=True)]
AnyDict = Annotated[dict[str, Any], Field(strict=True)]

#: Why an entry inside a list attribute is refused (the entry's own error is not shown).
_ENTRY_ERRORS = {
    "fixed_ips": "Invalid input for fixed_ips: each entry has a subnet_id and/or an "
                 "ip_address.",
    "host_routes": "Invalid input for host_routes: each route is {'destination': cidr, "
                   "'nexthop': ip}.",
    "allocation_pools": "Invalid input for allocation_pools: each pool needs 'start' and "
                        "'end'.",
    "security_groups": "Invalid input for security_groups: it must be a list of ids.",
}
_REASONS = {"neutron_bool": "is not a valid boolean value", "string_type": "is not a valid "
            "string", "neutron_int": "is not an integer", "list_type": "is not a list",
            "dict_type": "is not a dictionary"}


def _message(error: ErrorDetails, resource: str) -> str:
    if error["type"] == "neutron":
        return str((error.get("ctx") or {})["message"])
    loc, value = error["loc"], error.get("input")
    if not loc:
        return f"Invalid input: the '{resource}' body must be an object."
    name = str(loc[0])
    if len(loc) > 1:
        return _ENTRY_ERRORS.get(name, f"Invalid input for {name}: '{value}' is not valid.")
    if error["type"] == "string_too_long":
        return (f"Invalid input for {name}. Reason: '{str(value)[:20]}...' exceeds maximum "
                f"length of {MAX_LENGTH}.")
    reason = _REASONS.get(error["type"])
    if reason is None:
        return f"Invalid input for {name}. Reason: {error['msg']}."
    return f"Invalid input for {name}. Reason: '{value}' {reason}."


def invalid_input(exc: ValidationError, resource: str) -> InvalidInput:
    """Neutron's 400 for a body pydantic refused: unknown attributes first (all named),
    else the first error."""
    errors = exc.errors()
    unknown = sorted({str(e["loc"][0]) for e in errors
                      if e["type"] == "extra_forbidden" and len(e["loc"]) == 1})
    if unknown:
        return InvalidInput(f"Unrecognized attribute(s) '{', '.join(unknown)}'")
    return InvalidInput(_message(errors[0], resource))


Model = TypeVar("Model", bound="Body")


def parse(model: type[Model], value: Any, resource: str) -> Model:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise invalid_input(exc, resource) from exc


# Bodies -----------------------------------------------------------------------------------


class Body(BaseModel):
    """One resource's attributes in a request. ``UNSUPPORTED``: field → the only value
    accepted (its default); anything else is refused."""

    model_config = ConfigDict(extra="forbid")

    UNSUPPORTED: ClassVar[Mapping[str, Any]] = {}

    def named(self, *fields: str) -> bool:
        """Whether the request gave any of ``fields`` (even as null)."""
        return any(f in self.model_fields_set for f in fields)

    def given(self, name: str) -> Any:
        """The field's value, or ``UNSET`` when the request did not give it."""
        return getattr(self, name) if name in self.model_fields_set else UNSET

    def command(self) -> Any:
        """The domain command this body asks for (each resource's body says which)."""
        raise NotImplementedError

    @model_validator(mode="after")
    def _refuse_unsupported(self) -> Self:
        for name, default in self.UNSUPPORTED.items():
            if getattr(self, name) not in (default, None, [], ""):
                alias = type(self).model_fields[name].alias or name
                raise _neutron(f"Invalid input: '{alias}' is not supported by this cloud.")
        return self


class Owned(Body):
    """A resource created for a project: ``project_id`` or, the older name, ``tenant_id``."""

    project_id: Str = ""
    tenant_id: Str = ""

    @model_validator(mode="after")
    def _merge_tenant(self) -> Self:
        if "tenant_id" in self.model_fields_set:
            if self.named("project_id") and self.project_id != self.tenant_id:
                raise _neutron("'project_id' and 'tenant_id' do not match")
            self.project_id = self.tenant_id
        return self

    @property
    def owner(self) -> str | None:
        return self.project_id or None


_PROVIDER = ("provider_network_type", "provider_physical_network", "provider_segmentation_id")
_NETWORK_UNSUPPORTED = {"dns_domain": "", "qos_policy_id": None, "is_default": False}


class _NetworkAttrs(Body):
    UNSUPPORTED = _NETWORK_UNSUPPORTED

    name: Str = ""
    description: Str = ""
    admin_state_up: Bool = True
    shared: Bool = False
    mtu: Int = 0
    router_external: Bool = Field(False, alias="router:external")
    port_security_enabled: Bool = True
    provider_network_type: Str = Field("", alias="provider:network_type")
    provider_physical_network: Str | None = Field(None, alias="provider:physical_network")
    provider_segmentation_id: Int | None = Field(None, alias="provider:segmentation_id")
    dns_domain: Str = ""
    qos_policy_id: Str | None = None
    is_default: Bool = False


class NetworkBody(_NetworkAttrs, Owned):
    availability_zone_hints: StrList = []

    def command(self) -> NewNetwork:
        provider = None
        if self.named(*_PROVIDER):
            provider = ProviderSegment(network_type=self.provider_network_type or None,
                                       physical_network=self.provider_physical_network,
                                       segmentation_id=self.provider_segmentation_id)
        return NewNetwork(
            name=self.name, description=self.description, project_id=self.owner,
            admin_state_up=self.admin_state_up, shared=self.shared,
            router_external=self.router_external,
            port_security_enabled=self.port_security_enabled, mtu=self.mtu or None,
            availability_zone_hints=tuple(self.availability_zone_hints), provider=provider)


class NetworkUpdateBody(_NetworkAttrs):
    def command(self) -> NetworkUpdate:
        return NetworkUpdate(
            **{f: self.given(f) for f in NetworkUpdate.COLUMNS},
            provider=self.named(*_PROVIDER))


class RouteBody(Body):
    destination: StrictStr
    nexthop: StrictStr


class _SubnetAttrs(Body):
    name: Str = ""
    description: Str = ""
    gateway_ip: Str | None = None
    allocation_pools: Annotated[list[AnyDict], Field(strict=True)] = []
    dns_nameservers: StrList = []
    host_routes: Annotated[list[RouteBody], Field(strict=True)] = []
    enable_dhcp: Bool = True
    service_types: AnyList = []

    def routes(self) -> tuple[HostRoute, ...]:
        return tuple(HostRoute(destination=r.destination, nexthop=r.nexthop)
                     for r in self.host_routes)


class SubnetBody(_SubnetAttrs, Owned):
    UNSUPPORTED = {"ipv6_ra_mode": None, "ipv6_address_mode": None, "segment_id": None,
                   "service_types": []}

    network_id: Str = ""
    cidr: Str = ""
    ip_version: Int = 4
    subnetpool_id: Str | None = None
    ipv6_ra_mode: Str | None = None
    ipv6_address_mode: Str | None = None
    prefixlen: Int | None = None
    segment_id: Str | None = None
    use_default_subnetpool: Bool = False

    def command(self) -> NewSubnet:
        return NewSubnet(
            network_id=self.network_id, cidr=self.cidr, ip_version=self.ip_version,
            name=self.name, description=self.description, project_id=self.owner,
            gateway_ip=self.given("gateway_ip"),
            allocation_pools=tuple(self.allocation_pools),
            dns_nameservers=tuple(self.dns_nameservers), host_routes=self.routes(),
            enable_dhcp=self.enable_dhcp, subnetpool_id=self.subnetpool_id,
            prefixlen=self.prefixlen, use_default_subnetpool=self.use_default_subnetpool)


class SubnetUpdateBody(_SubnetAttrs):
    UNSUPPORTED = {"service_types": []}

    def command(self) -> SubnetUpdate:
        named = self.model_fields_set
        return SubnetUpdate(
            name=self.given("name"), description=self.given("description"),
            enable_dhcp=self.given("enable_dhcp"), gateway_ip=self.given("gateway_ip"),
            allocation_pools=(tuple(self.allocation_pools) if "allocation_pools" in named
                              else UNSET),
            dns_nameservers=(tuple(self.dns_nameservers) if "dns_nameservers" in named
                             else UNSET),
            host_routes=self.routes() if "host_routes" in named else UNSET)


class _SubnetPoolAttrs(Body):
    UNSUPPORTED = {"address_scope_id": None}

    name: Str = ""
    description: Str = ""
    prefixes: StrList = []
    min_prefixlen: Int | None = None
    max_prefixlen: Int | None = None
    default_prefixlen: Int | None = None
    is_default: Bool = False
    default_quota: Int | None = None
    address_scope_id: Str | None = None


class SubnetPoolBody(_SubnetPoolAttrs, Owned):
    shared: Bool = False

    def command(self) -> NewSubnetPool:
        return NewSubnetPool(
            name=self.name, description=self.description, project_id=self.owner,
            prefixes=tuple(self.prefixes), min_prefixlen=self.min_prefixlen,
            max_prefixlen=self.max_prefixlen, default_prefixlen=self.default_prefixlen,
            shared=self.shared, is_default=self.is_default, default_quota=self.default_quota)


class SubnetPoolUpdateBody(_SubnetPoolAttrs):
    def command(self) -> SubnetPoolUpdate:
        named = self.model_fields_set
        return SubnetPoolUpdate(
            name=self.given("name"), description=self.given("description"),
            prefixes=tuple(self.prefixes) if "prefixes" in named else UNSET,
            min_prefixlen=self.given("min_prefixlen"),
            max_prefixlen=self.given("max_prefixlen"),
            default_prefixlen=self.given("default_prefixlen"),
            is_default=self.given("is_default"), default_quota=self.given("default_quota"))


class FixedIpBody(Body):
    subnet_id: StrictStr = ""
    ip_address: StrictStr = ""

    @model_validator(mode="after")
    def _one_at_least(self) -> Self:
        if not self.model_fields_set:
            raise _neutron(_ENTRY_ERRORS["fixed_ips"])
        return self

    def request(self) -> FixedIpRequest:
        named = self.model_fields_set
        return FixedIpRequest(subnet_id=self.subnet_id if "subnet_id" in named else None,
                              ip_address=self.ip_address if "ip_address" in named else None)


_BINDING = ("binding_host_id", "binding_vnic_type", "binding_profile")


class _PortAttrs(Body):
    UNSUPPORTED = {"extra_dhcp_opts": [], "qos_policy_id": None}

    name: Str = ""
    description: Str = ""
    admin_state_up: Bool = True
    mac_address: Str = ""
    fixed_ips: Annotated[list[FixedIpBody], Field(strict=True)] = []
    device_id: Str = ""
    device_owner: Str = ""
    security_groups: StrList | None = None
    port_security_enabled: Bool = True
    dns_name: Str = ""
    binding_host_id: Str | None = Field(None, alias="binding:host_id")
    binding_vnic_type: Str = Field("normal", alias="binding:vnic_type")
    binding_profile: AnyDict | None = Field(None, alias="binding:profile")
    allowed_address_pairs: Any = []
    extra_dhcp_opts: AnyList = []
    qos_policy_id: Str | None = None

    def fixed(self) -> tuple[FixedIpRequest, ...]:
        return tuple(f.request() for f in self.fixed_ips)

    def pairs(self) -> tuple[AddressPairRequest, ...]:
        """``allowed_address_pairs`` checked (Neutron's messages); null means none."""
        value = self.allowed_address_pairs
        return () if value is None else address_pairs.parse(value)


class PortBody(_PortAttrs, Owned):
    network_id: Str = ""

    def command(self) -> NewPort:
        named = self.model_fields_set
        return NewPort(
            network_id=self.network_id, project_id=self.owner, name=self.name,
            description=self.description, admin_state_up=self.admin_state_up,
            mac_address=self.mac_address if "mac_address" in named else None,
            fixed_ips=self.fixed() if "fixed_ips" in named else None,
            device_id=self.device_id, device_owner=self.device_owner,
            security_groups=(None if self.security_groups is None
                             else tuple(self.security_groups)),
            port_security_enabled=(self.port_security_enabled
                                   if "port_security_enabled" in named else None),
            dns_name=self.dns_name, binding_host_id=self.binding_host_id or "",
            binding_vnic_type=self.binding_vnic_type,
            binding_profile=self.binding_profile or {}, binding=self.named(*_BINDING),
            allowed_address_pairs=self.pairs())


class PortUpdateBody(_PortAttrs):
    def command(self) -> PortUpdate:
        named = self.model_fields_set
        return PortUpdate(
            name=self.given("name"), description=self.given("description"),
            admin_state_up=self.given("admin_state_up"), device_id=self.given("device_id"),
            device_owner=self.given("device_owner"), dns_name=self.given("dns_name"),
            binding_host_id=(self.binding_host_id or "") if "binding_host_id" in named
            else UNSET,
            binding_profile=(self.binding_profile or {}) if "binding_profile" in named
            else UNSET,
            binding_vnic_type=self.given("binding_vnic_type"),
            mac_address=self.given("mac_address"),
            port_security_enabled=self.given("port_security_enabled"),
            security_groups=tuple(self.security_groups or ()) if "security_groups" in named
            else UNSET,
            fixed_ips=self.fixed() if "fixed_ips" in named else UNSET,
            binding=self.named(*_BINDING),
            allowed_address_pairs=(self.pairs() if "allowed_address_pairs" in named
                                   else UNSET))


class SecurityGroupBody(Owned):
    name: Str = ""
    description: Str = ""
    stateful: Bool = True

    def command(self) -> NewSecurityGroup:
        return NewSecurityGroup(name=self.name, description=self.description,
                                project_id=self.owner, stateful=self.stateful)


class SecurityGroupUpdateBody(Body):
    name: Str = ""
    description: Str = ""
    stateful: Bool = True

    def command(self) -> SecurityGroupUpdate:
        return SecurityGroupUpdate(name=self.given("name"),
                                   description=self.given("description"),
                                   stateful=self.given("stateful"))


class RuleBody(Owned):
    """A rule; its project is always its group's (a given ``project_id`` is ignored)."""

    security_group_id: Str = ""
    direction: Str = ""
    ethertype: Str = ""
    protocol: Protocol | None = None
    port_range_min: Int | None = None
    port_range_max: Int | None = None
    remote_ip_prefix: Str | None = None
    remote_group_id: Str | None = None
    description: Str = ""
    remote_address_group_id: Str | None = None

    @model_validator(mode="after")
    def _no_address_groups(self) -> Self:
        if self.remote_address_group_id is not None:
            raise _neutron("Invalid input: remote address groups are not supported.")
        return self

    def command(self) -> NewRule:
        return NewRule(
            security_group_id=self.security_group_id,
            direction=self.direction if self.named("direction") else None,
            ethertype=self.ethertype or None,
            protocol=None if self.protocol is None else str(self.protocol),
            port_range_min=self.port_range_min, port_range_max=self.port_range_max,
            remote_ip_prefix=self.remote_ip_prefix, remote_group_id=self.remote_group_id,
            description=self.description)


class AgentUpdateBody(Body):
    admin_state_up: Bool = True
    description: Str = ""

    def command(self) -> AgentUpdate:
        return AgentUpdate(admin_state_up=self.given("admin_state_up"),
                           description=self.given("description"))


def quota_changes(body: Any) -> dict[str, int]:
    """``{"quota": {resource: limit}}``: the limits as integers (the resources are checked
    by the domain)."""
    if not isinstance(body, dict) or set(body) != {"quota"} or not isinstance(
            body["quota"], dict):
        raise InvalidInput("Unable to find 'quota' in request body")
    changes: dict[str, int] = {}
    for resource, value in body["quota"].items():
        if isinstance(value, int) and not isinstance(value, bool):
            changes[resource] = value
        else:
            changes[resource] = WORDS.integer(resource, str(value), minimum=None)
    return changes
