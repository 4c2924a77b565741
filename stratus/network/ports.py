"""Ports: MAC addresses (drawn again on a clash), fixed IPs (through ``ipam``), security
groups and host bindings; the backend hears of each change after the commit (``notify``)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Select, delete, or_, select
from sqlalchemy.orm import joinedload

from stratus.core.db import utcnow
from stratus.network import ipam
from stratus.network.caller import Caller, network_target
from stratus.network.common import apply_filters, new_id, random_mac, rowcount, touch
from stratus.network.errors import (
    InvalidInput,
    IpAddressGenerationFailure,
    MacAddressGenerationFailure,
    MacAddressInUse,
    PortNotFound,
    SecurityGroupNotFound,
)
from stratus.network.models import Network, Port, PortSecurityGroup, SecurityGroup, Subnet
from stratus.network.networks import Networks
from stratus.network.notify import Notifier
from stratus.network.objects import DHCP_DEVICE_OWNER
from stratus.network.quotas import Quotas
from stratus.network.security_groups import SecurityGroups
from stratus.network.snapshots import Snapshots
from stratus.network.txn import Txn

MAC_TRIES = 16

#: One query for a port with its addresses and groups (instead of one per relationship).
_PORT_JOINED = (joinedload(Port.fixed_ips), joinedload(Port.security_groups))


class Ports:
    """The ports of one transaction."""

    def __init__(self, txn: Txn, ipam: ipam.IPAM, networks: Networks,
                 groups: SecurityGroups, quotas: Quotas, notifier: Notifier,
                 snapshots: Snapshots) -> None:
        self.txn = txn
        self.session = txn.session
        self.ipam = ipam
        self.networks = networks
        self.groups = groups
        self.quotas = quotas
        self.notifier = notifier
        self.snapshots = snapshots

    def _visible_ports(self, caller: Caller) -> Select[Port]:
        query = select(Port)
        if not caller.is_admin:
            owned = select(Network.id).where(Network.project_id == caller.project_id)
            query = query.where(or_(Port.project_id == caller.project_id,
                                    Port.network_id.in_(owned)))
        return query

    async def get_port(self, caller: Caller, port_id: str) -> Port:
        port = (await self.session.scalars(self._visible_ports(caller).where(
            Port.id == port_id).options(*_PORT_JOINED))).unique().one_or_none()
        if port is None:
            raise PortNotFound(port_id)
        return port

    async def list_ports(self, caller: Caller,
                         where: Mapping[str, list[Any]] | None = None) -> list[Port]:
        query = apply_filters(self._visible_ports(caller), Port, where)
        return list(await self.session.scalars(query.order_by(Port.created_at, Port.id)))

    async def create_port(self, caller: Caller, attrs: dict[str, Any]) -> Port:
        network_id = attrs.get("network_id")
        if not network_id:
            raise InvalidInput("Invalid input for operation: network_id is required.")
        net = await self.networks.get_network(caller, str(network_id))
        project_id = attrs.get("project_id") or caller.project_id
        if project_id != caller.project_id:
            caller.authorize("admin_only")
        target = {**network_target(net), "project_id": project_id,
                  "network_owner": net.project_id}
        caller.authorize("create_port", target)
        if "mac_address" in attrs:
            caller.authorize("create_port:mac_address", target)
        if any("ip_address" in f for f in attrs.get("fixed_ips") or [] if isinstance(f, dict)) \
                and not net.shared:
            caller.authorize("create_port:fixed_ips:ip_address", target)
        if any(k.startswith("binding:") for k in attrs):
            caller.authorize("create_port:binding", target)
        vnic = attrs.get("binding:vnic_type", "normal")
        if vnic != "normal":
            raise InvalidInput(f"Invalid input for binding:vnic_type: '{vnic}' is not "
                               "supported (only 'normal').")
        device_owner = attrs.get("device_owner") or ""
        if device_owner != DHCP_DEVICE_OWNER:
            await self.quotas.check(project_id, "port")
        port_security = attrs.get("port_security_enabled", net.port_security_enabled)
        groups = attrs.get("security_groups")
        if groups is None:
            groups = ([] if device_owner.startswith("network:") or not port_security
                      else [await self.groups.default_security_group(project_id)])
        else:
            groups = await self._check_groups(caller, project_id, groups)
            if groups and not port_security:
                raise InvalidInput("Port has security group associated. Cannot disable port "
                                   "security or ip address until security group is removed")
        port_id = new_id()
        now = utcnow()
        row = {
            "id": port_id, "network_id": net.id, "project_id": project_id,
            "name": attrs.get("name") or "", "description": attrs.get("description") or "",
            "admin_state_up": attrs.get("admin_state_up", True), "status": "DOWN",
            "device_id": attrs.get("device_id") or "", "device_owner": device_owner,
            "binding_host_id": attrs.get("binding:host_id") or "",
            "binding_vnic_type": "normal",
            "binding_profile": attrs.get("binding:profile") or {},
            "dns_name": attrs.get("dns_name") or "",
            "port_security_enabled": port_security, "tags": [],
            "revision_number": 1, "created_at": now, "updated_at": now,
        }
        await self.insert_row(row, attrs.get("mac_address"))
        for group_id in groups:
            self.session.add(PortSecurityGroup(port_id=port_id, security_group_id=group_id))
        await self._allocate(net, port_id, attrs.get("fixed_ips"))
        await self.session.flush()
        port = await self.load(port_id)
        await self.notifier.port_changed(port, None)
        return port

    async def insert_row(self, row: dict[str, Any], mac: str | None) -> None:
        """Insert the port with its MAC; a generated MAC that another port of the network
        holds (the unique key says so) is drawn again."""
        if mac is not None:
            mac = self._mac(mac)
            result = await self.session.execute(self.txn.insert_ignore(Port.__table__).values(
                **row, mac_address=mac))
            if rowcount(result) != 1:
                raise MacAddressInUse(mac, row["network_id"])
            return
        for _ in range(MAC_TRIES):
            result = await self.session.execute(self.txn.insert_ignore(Port.__table__).values(
                **row, mac_address=random_mac()))
            if rowcount(result) == 1:
                return
        raise MacAddressGenerationFailure(row["network_id"])

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

    async def load(self, port_id: str) -> Port:
        """The port as the database now has it, addresses and groups in the same query."""
        port = (await self.session.scalars(
            select(Port).where(Port.id == port_id).options(*_PORT_JOINED)
            .execution_options(populate_existing=True))).unique().one_or_none()
        assert port is not None
        return port

    async def _subnets_of(self, network_id: str) -> list[Subnet]:
        return list(await self.session.scalars(select(Subnet).where(
            Subnet.network_id == network_id).order_by(Subnet.created_at)))

    async def _allocate(self, net: Network, port_id: str, fixed_ips: Any,
                        position: int = 0) -> None:
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
        for index, wanted in enumerate(self._fixed_ips(fixed_ips)):
            subnet = self._subnet_for(subnets, net.id, wanted)
            await self.ipam.allocate(subnet, port_id, position + index,
                                     wanted.get("ip_address"))

    @staticmethod
    def _fixed_ips(value: Any) -> list[dict[str, str]]:
        if not isinstance(value, list):
            raise InvalidInput("Invalid input for fixed_ips: it must be a list.")
        result = []
        for item in value:
            if not isinstance(item, dict) or not item or set(item) - {"subnet_id",
                                                                      "ip_address"}:
                raise InvalidInput("Invalid input for fixed_ips: each entry has a subnet_id "
                                   "and/or an ip_address.")
            result.append({k: str(v) for k, v in item.items()})
        return result

    @staticmethod
    def _subnet_for(subnets: list[Subnet], network_id: str,
                    wanted: Mapping[str, str]) -> Subnet:
        if "subnet_id" in wanted:
            for subnet in subnets:
                if subnet.id == wanted["subnet_id"]:
                    return subnet
            raise InvalidInput(f"Invalid input for operation: Failed to create port on "
                               f"network {network_id}, because fixed_ips included invalid "
                               f"subnet {wanted['subnet_id']}.")
        ip = ipam.parse_ip(wanted["ip_address"])
        for subnet in subnets:
            if ip in ipaddress.ip_network(subnet.cidr):
                return subnet
        raise ipam.InvalidIpForSubnet(wanted["ip_address"])

    async def _check_groups(self, caller: Caller, project_id: str,
                            groups: Any) -> list[str]:
        if not isinstance(groups, list):
            raise InvalidInput("Invalid input for security_groups: it must be a list of ids.")
        result = []
        for group_id in dict.fromkeys(str(g) for g in groups):
            group = await self.session.get(SecurityGroup, group_id)
            if group is None or (not caller.is_admin and group.project_id != project_id):
                raise SecurityGroupNotFound(group_id)
            result.append(group_id)
        return result

    async def update_port(self, caller: Caller, port_id: str, attrs: dict[str, Any]) -> Port:
        port = await self.get_port(caller, port_id)
        net = await self.session.get(Network, port.network_id)
        assert net is not None
        target = {**network_target(net), "project_id": port.project_id,
                  "network_owner": net.project_id}
        caller.authorize("update_port", target)
        if any(k.startswith("binding:") for k in attrs):
            caller.authorize("update_port:binding", target)
        if "mac_address" in attrs:
            caller.authorize("update_port:mac_address", target)
        for fixed in ("network_id", "project_id", "tenant_id"):
            if fixed in attrs and attrs[fixed] != getattr(port, "project_id" if fixed in (
                    "project_id", "tenant_id") else fixed):
                raise InvalidInput(f"Cannot update read-only attribute {fixed}")
        if attrs.get("binding:vnic_type", "normal") != "normal":
            raise InvalidInput("Invalid input for binding:vnic_type: only 'normal' is "
                               "supported.")
        old_host = port.binding_host_id
        old_info = await self.snapshots.port_info(port)
        for key, column in (("name", "name"), ("description", "description"),
                            ("admin_state_up", "admin_state_up"), ("device_id", "device_id"),
                            ("device_owner", "device_owner"), ("dns_name", "dns_name"),
                            ("binding:host_id", "binding_host_id"),
                            ("binding:profile", "binding_profile")):
            if key in attrs:
                value = attrs[key]
                setattr(port, column, ({} if column == "binding_profile" else "")
                        if value is None else value)
        if "mac_address" in attrs:
            port.mac_address = self._mac(attrs["mac_address"])
            clash = await self.session.scalar(select(Port.id).where(
                Port.network_id == port.network_id, Port.mac_address == port.mac_address,
                Port.id != port.id))
            if clash is not None:
                raise MacAddressInUse(port.mac_address, port.network_id)
        if "port_security_enabled" in attrs:
            port.port_security_enabled = bool(attrs["port_security_enabled"])
        if "security_groups" in attrs:
            groups = await self._check_groups(caller, port.project_id,
                                              attrs["security_groups"] or [])
            await self.session.execute(delete(PortSecurityGroup).where(
                PortSecurityGroup.port_id == port.id))
            for group_id in groups:
                self.session.add(PortSecurityGroup(port_id=port.id, security_group_id=group_id))
        elif "port_security_enabled" in attrs and not port.port_security_enabled \
                and port.security_groups:
            raise InvalidInput("Port has security group associated. Cannot disable port "
                               "security or ip address until security group is removed")
        if "fixed_ips" in attrs:
            await self._readdress(net, port, attrs["fixed_ips"])
        if port.binding_host_id != old_host:
            port.status = "DOWN"
        touch(port)
        await self.session.flush()
        port = await self.load(port.id)
        await self.notifier.port_changed(port, old_info)
        return port

    async def _readdress(self, net: Network, port: Port, fixed_ips: Any) -> None:
        """New ``fixed_ips``: addresses kept stay, the others are freed, new ones taken."""
        wanted = self._fixed_ips(fixed_ips or [])
        subnets = await self.snapshots.subnets_of(net.id)
        current = {(a.subnet_id, a.ip_address) for a in port.fixed_ips}
        keep: set[tuple[str, str]] = set()
        new: list[dict[str, str]] = []
        for item in wanted:
            subnet = self._subnet_for(subnets, net.id, item)
            if "ip_address" in item:
                address = str(ipam.parse_ip(item["ip_address"]))
                if (subnet.id, address) in current:
                    keep.add((subnet.id, address))
                    continue
            elif any(s == subnet.id for s, _ in current - keep):
                keep.add(next(p for p in sorted(current - keep) if p[0] == subnet.id))
                continue
            new.append({**item, "subnet_id": subnet.id})
        await self.ipam.release(port.id, keep)
        position = len(keep)
        for item in new:
            subnet = next(s for s in subnets if s.id == item["subnet_id"])
            await self.ipam.allocate(subnet, port.id, position, item.get("ip_address"))
            position += 1

    async def delete_port(self, caller: Caller, port_id: str) -> None:
        port = await self.get_port(caller, port_id)
        net = await self.session.get(Network, port.network_id)
        assert net is not None
        caller.authorize("delete_port", {**network_target(net), "project_id": port.project_id})
        await self.remove(port)

    async def remove(self, port: Port) -> None:
        """Delete the row (its addresses and group links go with it); the backend is told
        after the commit."""
        self.notifier.port_deleted(port)
        await self.session.delete(port)
        await self.session.flush()
