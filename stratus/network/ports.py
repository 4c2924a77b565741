"""Ports: MAC addresses (drawn again on a clash), fixed IPs (through ``ipam``), security
groups and host bindings; the backend hears of each change after the commit (``notify``)."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    Table,
    bindparam,
    delete,
    false,
    func,
    insert,
    or_,
    select,
)
from sqlalchemy.orm import (
    joinedload,
    lazyload,
    make_transient_to_detached,
    selectinload,
    with_expression,
)
from sqlalchemy.orm.attributes import set_committed_value

from stratus.core.db import Txn, as_loaded, utcnow
from stratus.core.db.paging import Page
from stratus.core.policy import Caller
from stratus.network import address_pairs, ipam
from stratus.network import filters as flt
from stratus.network.address_pairs import AddressPairRequest
from stratus.network.caller import network_target
from stratus.network.common import (
    UNSET,
    Unset,
    given,
    new_id,
    random_mac,
    touch,
)
from stratus.network.errors import (
    AddressPairAndPortSecurityRequired,
    InvalidInput,
    IpAddressGenerationFailure,
    MacAddressGenerationFailure,
    MacAddressInUse,
    PortNotFound,
    PortSecurityAndIPRequiredForSecurityGroups,
    PortSecurityPortHasSecurityGroup,
    SecurityGroupNotFound,
)
from stratus.network.ipam import IPAM
from stratus.network.models import (
    DefaultSecurityGroup,
    IPAllocation,
    Network,
    Port,
    PortSecurityGroup,
    Router,
    SecurityGroup,
    Subnet,
)
from stratus.network.networks import Networks
from stratus.network.notify import Notifier
from stratus.network.objects import (
    DHCP_DEVICE_OWNER,
    ROUTER_GATEWAY_OWNER,
    ROUTER_INTERFACE_OWNER,
)
from stratus.network.part import Part
from stratus.network.quotas import Quotas
from stratus.network.security_groups import SecurityGroups
from stratus.network.snapshots import Snapshots

MAC_TRIES = 16

#: One query for a port with its addresses and groups (instead of one per relationship).
_PORT_JOINED = (joinedload(Port.fixed_ips), joinedload(Port.security_groups))
#: ``Ports.load``'s statements, built once: building a select with its loader options and
#: its cache key on each call cost more Python than executing it (the id is a bound
#: parameter).
_LOAD = (select(Port).where(Port.id == bindparam("port_id")).options(*_PORT_JOINED)
         .execution_options(populate_existing=True))
#: A port just inserted has no address pairs: not asked (``load`` sets them empty).
_LOAD_NEW = _LOAD.options(lazyload(Port.allowed_address_pairs))
#: A new port's security group links, written without the unit of work (a Core insert of
#: the rows; nothing in the session holds them).
_INSERT_GROUPS = insert(cast(Table, PortSecurityGroup.__table__))
#: A new port's link to its project's default group, the group read by the insert itself.
_DEFAULT_GROUPS = cast(Table, DefaultSecurityGroup.__table__)
_LINK_DEFAULT_GROUP = insert(cast(Table, PortSecurityGroup.__table__)).from_select(
    ["port_id", "security_group_id"],
    select(bindparam("port_id", type_=String), _DEFAULT_GROUPS.c.security_group_id).where(
        _DEFAULT_GROUPS.c.project_id == bindparam("project_id"))).returning(
    PortSecurityGroup.security_group_id)
#: A listed port's security group ids, read with its page's row: a subquery of each row
#: the page returns (an index lookup by the port's id), never a read of every port's links,
#: which PostgreSQL chose for a select-in of the page's ids (``port_id IN (...)``) while its
#: table was not much bigger than the page's share of the primary key's index.
_LISTED_GROUP_IDS = with_expression(Port.listed_group_ids, select(
    func.aggregate_strings(PortSecurityGroup.security_group_id, ",")).where(
    PortSecurityGroup.port_id == Port.id).correlate(Port).scalar_subquery())
#: A port's related rows by the attribute of its view that shows them.
_PORT_RELATIONS = {"fixed_ips": Port.fixed_ips, "security_groups": Port.security_groups,
                   "allowed_address_pairs": Port.allowed_address_pairs}


def _fixed_ips(values: list[str], dialect: str) -> ColumnElement[bool]:
    """``ip_address=X`` / ``subnet_id=Y``: ports holding such an address."""
    clauses = []
    for value in values:
        name, _, expected = value.partition("=")
        if name in ("ip_address", "subnet_id"):
            clauses.append(Port.id.in_(select(IPAllocation.port_id).where(
                getattr(IPAllocation, name) == expected)))
    return or_(*clauses) if clauses else false()


def _vif_type(bound_vif_type: str) -> flt.Filter:
    def where(values: list[str], dialect: str) -> ColumnElement[bool]:
        clauses = []
        if "unbound" in values:
            clauses.append(Port.binding_host_id == "")
        if bound_vif_type in values:
            clauses.append(Port.binding_host_id != "")
        return or_(*clauses) if clauses else false()
    return where


def port_attributes(bound_vif_type: str) -> flt.Attributes:
    """How ports filter and sort (``filters``); ``binding:vif_type`` shows the backend's
    type on a bound port."""
    return flt.Attributes(
        filters={
            "id": flt.text(Port.id), "name": flt.text(Port.name),
            "network_id": flt.text(Port.network_id), "mac_address": flt.text(Port.mac_address),
            "admin_state_up": flt.boolean(Port.admin_state_up), "status": flt.text(Port.status),
            "device_id": flt.text(Port.device_id), "device_owner": flt.text(Port.device_owner),
            "fixed_ips": _fixed_ips, "allowed_address_pairs": flt.nothing,
            "extra_dhcp_opts": flt.nothing,
            "security_groups": flt.member(Port.id, lambda ids: select(
                PortSecurityGroup.port_id).where(PortSecurityGroup.security_group_id.in_(ids))),
            "port_security_enabled": flt.boolean(Port.port_security_enabled),
            "dns_name": flt.text(Port.dns_name), "ip_allocation": flt.constant("immediate"),
            **flt.standard(Port),
            "binding:host_id": flt.text(Port.binding_host_id),
            "binding:vnic_type": flt.text(Port.binding_vnic_type), "binding:profile": flt.nothing,
            "binding:vif_type": _vif_type(bound_vif_type), "binding:vif_details": flt.nothing},
        sort={"id": Port.id, "name": Port.name, "network_id": Port.network_id,
              "mac_address": Port.mac_address, "admin_state_up": Port.admin_state_up,
              "status": Port.status, "device_id": Port.device_id,
              "device_owner": Port.device_owner,
              "port_security_enabled": Port.port_security_enabled, "dns_name": Port.dns_name,
              **flt.standard_sort(Port), "binding:host_id": Port.binding_host_id,
              "binding:vnic_type": Port.binding_vnic_type},
        default_sort=flt.BY_CREATION, id_column=Port.id, tags=Port.tags,
        rules={key: "get_port:binding" for key in (
            "binding:host_id", "binding:vnic_type", "binding:profile", "binding:vif_type",
            "binding:vif_details")})


@dataclass(frozen=True)
class FixedIpRequest:
    """One entry of ``fixed_ips``: a subnet, an address, or both (never neither)."""

    subnet_id: str | None = None
    ip_address: str | None = None


@dataclass(frozen=True)
class NewPort:
    """A port to create. ``fixed_ips`` / ``security_groups`` ``None``: chosen here (one
    address, the default group); ``port_security_enabled`` ``None``: the network's;
    ``binding``: the request named a ``binding:*`` attribute (its own policy rule)."""

    network_id: str = ""
    project_id: str | None = None
    name: str = ""
    description: str = ""
    admin_state_up: bool = True
    mac_address: str | None = None
    fixed_ips: tuple[FixedIpRequest, ...] | None = None
    device_id: str = ""
    device_owner: str = ""
    security_groups: tuple[str, ...] | None = None
    port_security_enabled: bool | None = None
    dns_name: str = ""
    binding_host_id: str = ""
    binding_vnic_type: str = "normal"
    binding_profile: Mapping[str, Any] = field(default_factory=dict)
    binding: bool = False
    allowed_address_pairs: tuple[AddressPairRequest, ...] = ()


@dataclass(frozen=True)
class PortUpdate:
    """Changes to a port (``UNSET``: not asked for)."""

    COLUMNS: ClassVar[tuple[str, ...]] = ("name", "description", "admin_state_up",
                                          "device_id", "device_owner", "dns_name",
                                          "binding_host_id", "binding_profile")

    name: str | Unset = UNSET
    description: str | Unset = UNSET
    admin_state_up: bool | Unset = UNSET
    device_id: str | Unset = UNSET
    device_owner: str | Unset = UNSET
    dns_name: str | Unset = UNSET
    binding_host_id: str | Unset = UNSET
    binding_profile: Mapping[str, Any] | Unset = UNSET
    binding_vnic_type: str | Unset = UNSET
    mac_address: str | Unset = UNSET
    port_security_enabled: bool | Unset = UNSET
    security_groups: tuple[str, ...] | Unset = UNSET
    fixed_ips: tuple[FixedIpRequest, ...] | Unset = UNSET
    binding: bool = False
    allowed_address_pairs: tuple[AddressPairRequest, ...] | Unset = UNSET


@dataclass
class Ports(Part):
    """The ports of one transaction."""

    ipam: IPAM
    networks: Networks
    groups: SecurityGroups
    quotas: Quotas
    notifier: Notifier
    snapshots: Snapshots
    #: Run before a port is deleted through the API; may refuse (the L3 service's ports)
    #: or let go of what uses the port (its floating IPs).
    before_delete: list[Callable[[Port], Awaitable[None]]] = field(default_factory=list)

    def _visible_ports(self, caller: Caller) -> Select[Port]:
        query = select(Port)
        if not caller.is_admin:
            owned = select(Network.id).where(Network.project_id == caller.project_id)
            query = query.where(or_(Port.project_id == caller.project_id,
                                    Port.network_id.in_(owned)))
        return query

    async def get_port(self, caller: Caller, port_id: str) -> Port:
        return await self._one(self._visible_ports(caller).where(Port.id == port_id).options(
            *_PORT_JOINED), PortNotFound(port_id))

    async def list_ports(self, caller: Caller, query: flt.ListQuery) -> Page:
        attrs = port_attributes(self.notifier.backend.bound_vif_type)
        visible = self._visible_ports(caller)
        # A list asking a few fields (compute's ``device_id,security_groups`` for a page of
        # servers) loads none of the related rows it does not show (for 200 ports, two of
        # the three relations' rows and objects): each is loaded as empty, by a select-in
        # that matches nothing, so the view reads an empty list it then leaves out.
        unseen = [relation for name, relation in _PORT_RELATIONS.items()
                  if query.leaves_out(name)]
        if unseen:
            visible = visible.options(*(selectinload(relation.and_(false()))
                                        for relation in unseen))
        shows_groups = not query.leaves_out("security_groups")
        if shows_groups:
            visible = visible.options(lazyload(Port.security_groups), _LISTED_GROUP_IDS)
        page = await self._list_page(caller, attrs, visible, query)
        if shows_groups:
            for port in page.rows:
                set_committed_value(port, "security_groups", [
                    PortSecurityGroup(port_id=port.id, security_group_id=group_id)
                    for group_id in (port.listed_group_ids or "").split(",") if group_id])
        return page

    async def create_port(self, caller: Caller, new: NewPort) -> Port:
        if not new.network_id:
            raise InvalidInput("Invalid input for operation: network_id is required.")
        # A counted port's network and its project's port limit (with the quota lock, on
        # PostgreSQL) in one statement; the check itself stays where it was, after the
        # request's other refusals.
        counted = new.device_owner != DHCP_DEVICE_OWNER
        limits: dict[str, int] | None = None
        known_project = new.project_id or caller.project_id
        if counted and known_project:
            net, limits = await self.networks.read_network_and_limit(
                caller, new.network_id, known_project, "port")
        else:
            net = await self.networks.read_network(caller, new.network_id)
        project_id = new.project_id or caller.require_project()
        if project_id != caller.project_id:
            caller.authorize("admin_only")
        if net.router_external and not net.shared and net.project_id != project_id:
            caller.authorize("admin_only")  # seen by all, but ports there are the L3 service's
        target = {**network_target(net), "project_id": project_id,
                  "network_owner": net.project_id}
        caller.authorize("create_port", target)
        if new.mac_address is not None:
            caller.authorize("create_port:mac_address", target)
        if any(f.ip_address is not None for f in new.fixed_ips or ()) and not net.shared:
            caller.authorize("create_port:fixed_ips:ip_address", target)
        if new.binding:
            caller.authorize("create_port:binding", target)
        vnic = new.binding_vnic_type
        if vnic != "normal":
            raise InvalidInput(f"Invalid input for binding:vnic_type: '{vnic}' is not "
                               "supported (only 'normal').")
        device_owner = new.device_owner
        await self._check_router_claim(caller, device_owner, new.device_id)
        if counted:
            await self.quotas.check(project_id, "port", limits=limits)
        port_security = (net.port_security_enabled if new.port_security_enabled is None
                         else new.port_security_enabled)
        #: The project's default group, linked by the insert that looks it up (below).
        default_group = (new.security_groups is None and port_security
                         and not device_owner.startswith("network:"))
        groups: list[str] = []
        if new.security_groups is not None:
            groups = await self._check_groups(caller, project_id, new.security_groups)
            if groups and not port_security:
                raise PortSecurityAndIPRequiredForSecurityGroups()
        if new.allowed_address_pairs and not port_security:
            raise AddressPairAndPortSecurityRequired()
        port_id = new_id()
        now = utcnow()
        row = {
            "id": port_id, "network_id": net.id, "project_id": project_id,
            "name": new.name, "description": new.description,
            "admin_state_up": new.admin_state_up, "status": "DOWN",
            "device_id": new.device_id, "device_owner": device_owner,
            "binding_host_id": new.binding_host_id, "binding_vnic_type": "normal",
            "binding_profile": dict(new.binding_profile), "dns_name": new.dns_name,
            "port_security_enabled": port_security, "tags": [],
            "revision_number": 1, "created_at": now, "updated_at": now,
        }
        row["mac_address"] = await self.insert_row(row, new.mac_address)
        linked: list[dict[str, str]] = []
        if default_group:
            group_id = await self._link_default_group(port_id, project_id)
            if group_id is None:
                # The project has none yet: made now (with its rules), then linked.
                groups = [await self.groups.default_security_group(project_id)]
            else:
                linked = [{"port_id": port_id, "security_group_id": group_id}]
        links = [{"port_id": port_id, "security_group_id": g} for g in groups]
        if links:
            connection = await self.txn.connection()
            await connection.execute(_INSERT_GROUPS, links[0] if len(links) == 1 else links)
        await self._allocate(net, port_id, new.fixed_ips)
        port = self._created_port(row, [a for a in self.ipam.inserted if a["port_id"] == port_id],
                               linked + links)
        if new.security_groups:
            await self._check_ip_for_groups(port, explicit=True)
        if new.allowed_address_pairs:
            await address_pairs.replace(self.session, port.id, address_pairs.resolve(
                new.allowed_address_pairs, port.mac_address, self._mac))
            await self.session.flush()
            port = await self.load(port_id)
        await self.notifier.port_changed(port, None)
        return port

    async def _link_default_group(self, port_id: str, project_id: str) -> str | None:
        """Put the new port in its project's default group by one insert that reads which
        group that is (instead of a lookup, then the link): that group's id, or None when the
        project has no default group yet (nothing written)."""
        connection = await self.txn.connection()
        result = await connection.execute(_LINK_DEFAULT_GROUP,
                                          {"port_id": port_id, "project_id": project_id})
        return cast(str | None, result.scalar_one_or_none())

    async def insert_row(self, row: dict[str, Any], mac: str | None) -> str:
        """Insert the port with its MAC, which it returns; a generated MAC that another
        port of the network holds (the unique key says so) is drawn again."""
        connection = await self.txn.connection()
        if mac is not None:
            mac = self._mac(mac)
            result = await connection.execute(self.txn.insert_ignore(Port.__table__),
                                              {**row, "mac_address": mac})
            if Txn.rowcount(result) != 1:
                raise MacAddressInUse(mac, row["network_id"])
            return mac
        for _ in range(MAC_TRIES):
            drawn = random_mac()
            result = await connection.execute(self.txn.insert_ignore(Port.__table__),
                                              {**row, "mac_address": drawn})
            if Txn.rowcount(result) == 1:
                return drawn
        raise MacAddressGenerationFailure(row["network_id"])

    def _created_port(self, row: dict[str, Any], addresses: list[dict[str, Any]],
                   links: list[dict[str, str]]) -> Port:
        """The port just inserted as loading it would give it, from the rows this
        transaction wrote (every column of the port is in ``row``, nothing is filled in by
        the database), without reading it back (a joined load was a third of a create's
        CPU). Addresses in their ``position`` order, as a load orders them; groups as the
        request named them (a load gives no order); a new port has no address pairs.

        An unbound port is only shown and told of after this: it stays out of the session
        (making it persistent, its rows detached and its collections instrumented was ~240
        Python calls of a create's ~4,300, and the session itself more). A port bound at
        once is made persistent in the session, nothing pending: the notifier may set it
        ACTIVE and flush."""
        port = as_loaded(Port, row)
        fixed_ips = [as_loaded(IPAllocation, a)
                     for a in sorted(addresses, key=lambda a: a["position"])]
        groups = [as_loaded(PortSecurityGroup, link) for link in links]
        if not port.binding_host_id:
            port.__dict__.update(fixed_ips=fixed_ips, security_groups=groups,
                                 allowed_address_pairs=[])
            return port
        for child in (*fixed_ips, *groups):
            make_transient_to_detached(child)
        # Set as loaded values (no history, no events: assigning a collection first
        # initialises the old one through its loader, most of this method's cost).
        set_committed_value(port, "fixed_ips", fixed_ips)
        set_committed_value(port, "security_groups", groups)
        set_committed_value(port, "allowed_address_pairs", [])
        make_transient_to_detached(port)  # its columns as if loaded
        self.session.add(port)  # persistent (it has an identity): no INSERT at a flush
        return port

    @staticmethod
    def _mac(value: Any) -> str:
        parts = str(value).lower().replace("-", ":").split(":")
        if len(parts) != 6 or not all(len(p) == 2 for p in parts):
            raise InvalidInput(f"Invalid input for mac_address: '{value}' is not a valid MAC "
                               "address.")
        try:
            first = int(parts[0], 16)
            for part in parts[1:]:
                int(part, 16)
        except ValueError as exc:
            raise InvalidInput(f"Invalid input for mac_address: '{value}' is not a valid MAC "
                               "address.") from exc
        if first & 1 or all(p == "00" for p in parts):
            raise InvalidInput(f"Invalid input for mac_address: '{value}' is not a valid "
                               "unicast MAC address.")
        return ":".join(parts)

    async def load(self, port_id: str, *, new: bool = False) -> Port:
        """The port as the database now has it, addresses and groups in the same query.
        ``new``: a port just inserted, without address pairs yet, whose (empty) pairs are
        not asked of the database (one statement less per create)."""
        port = (await self.session.scalars(_LOAD_NEW if new else _LOAD,
                                           {"port_id": port_id})).unique().one_or_none()
        assert port is not None
        if new:  # loaded as empty, not lazily (no I/O on first read)
            set_committed_value(port, "allowed_address_pairs", [])
        return port

    async def _allocate(self, net: Network, port_id: str,
                        fixed_ips: Sequence[FixedIpRequest] | None, position: int = 0) -> None:
        """Addresses for a new port: as ``fixed_ips`` asks, or one from the first IPv4
        subnet of the network that has a free one."""
        subnets = list(net.subnets)  # loaded with the network, in creation order
        if fixed_ips is None:
            for subnet in subnets:
                try:
                    await self.ipam.allocate(subnet, port_id, position)
                    return
                except IpAddressGenerationFailure:
                    continue
            if subnets:
                raise IpAddressGenerationFailure(net.id)
            return
        for index, wanted in enumerate(fixed_ips):
            subnet = self._subnet_for(subnets, net.id, wanted)
            await self.ipam.allocate(subnet, port_id, position + index, wanted.ip_address)

    @staticmethod
    def _subnet_for(subnets: list[Subnet], network_id: str,
                    wanted: FixedIpRequest) -> Subnet:
        if wanted.subnet_id is not None:
            for subnet in subnets:
                if subnet.id == wanted.subnet_id:
                    return subnet
            raise InvalidInput(f"Invalid input for operation: Failed to create port on "
                               f"network {network_id}, because fixed_ips included invalid "
                               f"subnet {wanted.subnet_id}.")
        assert wanted.ip_address is not None  # a request names one or the other
        ip = ipam.parse_ip(wanted.ip_address)
        for subnet in subnets:
            if ip in ipaddress.ip_network(subnet.cidr):
                return subnet
        raise ipam.InvalidIpForSubnet(wanted.ip_address)

    async def _check_groups(self, caller: Caller, project_id: str,
                            groups: Iterable[str]) -> list[str]:
        result = []
        for group_id in dict.fromkeys(groups):
            group = await self.session.get(SecurityGroup, group_id)
            if group is None or (not caller.is_admin and group.project_id != project_id):
                raise SecurityGroupNotFound(group_id)
            result.append(group_id)
        return result

    async def update_port(self, caller: Caller, port_id: str, change: PortUpdate) -> Port:
        port = await self.get_port(caller, port_id)
        net = await self.session.get(Network, port.network_id)
        assert net is not None
        target = {**network_target(net), "project_id": port.project_id,
                  "network_owner": net.project_id}
        caller.authorize("update_port", target)
        if change.binding:
            caller.authorize("update_port:binding", target)
        if change.mac_address is not UNSET:
            caller.authorize("update_port:mac_address", target)
        if change.binding_vnic_type not in (UNSET, "normal"):
            raise InvalidInput("Invalid input for binding:vnic_type: only 'normal' is "
                               "supported.")
        if change.device_owner is not UNSET or change.device_id is not UNSET:
            await self._check_router_claim(
                caller, port.device_owner if change.device_owner is UNSET
                else str(change.device_owner),
                port.device_id if change.device_id is UNSET else str(change.device_id))
        old_host = port.binding_host_id
        old_info = await self.snapshots.port_info(port)
        for column, value in given(change, *PortUpdate.COLUMNS).items():
            setattr(port, column, value)
        if change.mac_address is not UNSET:
            port.mac_address = self._mac(change.mac_address)
            clash = await self.session.scalar(select(Port.id).where(
                Port.network_id == port.network_id, Port.mac_address == port.mac_address,
                Port.id != port.id))
            if clash is not None:
                raise MacAddressInUse(port.mac_address, port.network_id)
        await self._update_security(caller, port, change)
        if change.fixed_ips is not UNSET:
            await self._readdress(net, port, change.fixed_ips)
        if port.binding_host_id != old_host:
            port.status = "DOWN"
        touch(port)
        await self.session.flush()
        port = await self.load(port.id)
        if change.fixed_ips is not UNSET:
            await self._check_ip_for_groups(port, explicit=False)
        await self.notifier.port_changed(port, old_info)
        return port

    async def _check_router_claim(self, caller: Caller, device_owner: str,
                                  device_id: str) -> None:
        """A port that says it is a router's interface or gateway is plugged into that router
        by the L3 service: only the router's project (or an admin) may say so, or another
        project could put its network behind someone else's router."""
        if device_owner not in (ROUTER_INTERFACE_OWNER, ROUTER_GATEWAY_OWNER) \
                or not device_id:
            return
        router = await self.session.get(Router, device_id)
        if router is None or router.project_id != caller.project_id:
            caller.authorize("admin_only")

    # Port security, security groups and allowed address pairs ------------------------------

    async def _update_security(self, caller: Caller, port: Port, change: PortUpdate) -> None:
        """Apply a change's ``port_security_enabled``, ``security_groups`` and
        ``allowed_address_pairs`` together, with Neutron's refusals: groups need port
        security (400), port security cannot go while groups or pairs remain (409)."""
        enabled = (port.port_security_enabled if change.port_security_enabled is UNSET
                   else bool(change.port_security_enabled))
        if change.security_groups is not UNSET:
            groups = await self._check_groups(caller, port.project_id, change.security_groups)
            if groups and not enabled:
                raise PortSecurityAndIPRequiredForSecurityGroups()
            await self.session.execute(delete(PortSecurityGroup).where(
                PortSecurityGroup.port_id == port.id))
            for group_id in groups:
                self.session.add(PortSecurityGroup(port_id=port.id, security_group_id=group_id))
        elif not enabled and port.security_groups:
            raise PortSecurityPortHasSecurityGroup()
        if change.allowed_address_pairs is not UNSET:
            if change.allowed_address_pairs and not enabled:
                raise AddressPairAndPortSecurityRequired()
            mac = (port.mac_address if change.mac_address is UNSET
                   else self._mac(change.mac_address))
            await address_pairs.replace(self.session, port.id, address_pairs.resolve(
                change.allowed_address_pairs, mac, self._mac))
        elif not enabled and port.allowed_address_pairs:
            raise AddressPairAndPortSecurityRequired()
        port.port_security_enabled = enabled

    async def _check_ip_for_groups(self, port: Port, explicit: bool) -> None:
        """A port in security groups must have an address (Neutron's 400 when groups were
        asked for, its 409 when an update takes the last address away)."""
        if port.security_groups and not port.fixed_ips:
            if explicit:
                raise PortSecurityAndIPRequiredForSecurityGroups()
            if port.network_id and (await self.snapshots.subnets_of(port.network_id)):
                raise PortSecurityPortHasSecurityGroup()

    async def _readdress(self, net: Network, port: Port,
                         wanted: Sequence[FixedIpRequest]) -> None:
        """New ``fixed_ips``: addresses kept stay, the others are freed, new ones taken."""
        subnets = await self.snapshots.subnets_of(net.id)
        current = {(a.subnet_id, a.ip_address) for a in port.fixed_ips}
        keep: set[tuple[str, str]] = set()
        new: list[tuple[Subnet, str | None]] = []
        for item in wanted:
            subnet = self._subnet_for(subnets, net.id, item)
            if item.ip_address is not None:
                address = str(ipam.parse_ip(item.ip_address))
                if (subnet.id, address) in current:
                    keep.add((subnet.id, address))
                    continue
            elif any(s == subnet.id for s, _ in current - keep):
                keep.add(next(p for p in sorted(current - keep) if p[0] == subnet.id))
                continue
            new.append((subnet, item.ip_address))
        await self.ipam.release(port.id, keep)
        position = len(keep)
        for subnet, requested in new:
            await self.ipam.allocate(subnet, port.id, position, requested)
            position += 1

    async def delete_port(self, caller: Caller, port_id: str) -> None:
        port = await self.get_port(caller, port_id)
        net = await self.session.get(Network, port.network_id)
        assert net is not None
        caller.authorize("delete_port", {**network_target(net), "project_id": port.project_id})
        for hook in self.before_delete:
            await hook(port)
        await self.remove(port)

    async def remove(self, port: Port) -> None:
        """Delete the row (its addresses and group links go with it); the backend is told
        after the commit."""
        await self.notifier.port_deleted(port)
        await self.session.delete(port)
        await self.session.flush()
