"""Snapshots of networks and ports as the agents and the backends see them
(``stratus.network.objects``), read inside one transaction."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, select

from stratus.network.models import (
    IPAllocation,
    Network,
    Port,
    PortAllowedAddressPair,
    PortSecurityGroup,
    SecurityGroup,
    Subnet,
)
from stratus.network.objects import (
    DHCP_DEVICE_OWNER,
    AddressPair,
    AllocationPool,
    DeviceDetails,
    FixedIP,
    HostRoute,
    NetworkInfo,
    PortInfo,
    SecurityGroupInfo,
    SecurityGroupRuleInfo,
    SecurityGroupsSnapshot,
    SubnetInfo,
)
from stratus.network.part import Part

#: ``Snapshots.members_among``'s statements, built once with expanding parameters: built
#: per question, coercing the lists and walking the statement for its cache key cost more
#: Python than running it (the l2-agents ask after every burst of creates in a group).
_FIXED_AMONG = (select(PortSecurityGroup.security_group_id, IPAllocation.ip_address)
                .join(IPAllocation, IPAllocation.port_id == PortSecurityGroup.port_id)
                .where(PortSecurityGroup.security_group_id.in_(
                           bindparam("groups", expanding=True)),
                       IPAllocation.ip_address.in_(bindparam("addresses", expanding=True))))
#: Address pairs are asked in two steps, from the pairs holding the addresses (few, by the
#: ``ip_address`` index) to those ports' links to the groups: joined in one statement,
#: SQLite walked every member link of the group first.
_PAIRS_HOLDING = (select(PortAllowedAddressPair.port_id, PortAllowedAddressPair.ip_address)
                  .where(PortAllowedAddressPair.ip_address.in_(
                      bindparam("addresses", expanding=True))))
_LINKS_OF = (select(PortSecurityGroup.port_id, PortSecurityGroup.security_group_id)
             .where(PortSecurityGroup.port_id.in_(bindparam("ports", expanding=True)),
                    PortSecurityGroup.security_group_id.in_(
                        bindparam("groups", expanding=True))))


@dataclass
class Snapshots(Part):
    """Read-only views of one transaction for agents and backends."""


    async def subnets_of(self, network_id: str) -> list[Subnet]:
        return list(await self.session.scalars(select(Subnet).where(
            Subnet.network_id == network_id).order_by(Subnet.created_at)))


    @staticmethod
    def subnet_info(subnet: Subnet) -> SubnetInfo:
        return SubnetInfo(
            id=subnet.id, network_id=subnet.network_id, name=subnet.name, cidr=subnet.cidr,
            ip_version=subnet.ip_version, gateway_ip=subnet.gateway_ip,
            enable_dhcp=subnet.enable_dhcp, dns_nameservers=list(subnet.dns_nameservers),
            host_routes=[HostRoute(**r) for r in subnet.host_routes],
            allocation_pools=[AllocationPool(**p) for p in subnet.allocation_pools])

    async def port_info(self, port: Port) -> PortInfo:
        return PortInfo(
            id=port.id, network_id=port.network_id, project_id=port.project_id,
            mac_address=port.mac_address,
            fixed_ips=[FixedIP(subnet_id=a.subnet_id, ip_address=a.ip_address)
                       for a in port.fixed_ips],
            device_id=port.device_id, device_owner=port.device_owner,
            admin_state_up=port.admin_state_up, binding_host_id=port.binding_host_id,
            hostname=port.dns_name or (
                f"host-{port.fixed_ips[0].ip_address.replace('.', '-')}"
                if port.fixed_ips else ""),
            status=port.status, port_security_enabled=port.port_security_enabled,
            security_group_ids=sorted(g.security_group_id for g in port.security_groups),
            allowed_address_pairs=[AddressPair(ip_address=p.ip_address,
                                               mac_address=p.mac_address)
                                   for p in port.allowed_address_pairs])

    async def network_info(self, net: Network, with_ports: bool = True) -> NetworkInfo:
        subnets = await self.subnets_of(net.id)
        ports: list[PortInfo] = []
        if with_ports:
            for port in await self.session.scalars(select(Port).where(
                    Port.network_id == net.id).order_by(Port.created_at)):
                ports.append(await self.port_info(port))
        return NetworkInfo(
            id=net.id, project_id=net.project_id, name=net.name,
            admin_state_up=net.admin_state_up, mtu=net.mtu, network_type=net.network_type,
            segmentation_id=net.segmentation_id, physical_network=net.physical_network,
            subnets=[self.subnet_info(s) for s in subnets], ports=ports)

    async def network_info_by_id(self, network_id: str,
                                 with_ports: bool = True) -> NetworkInfo | None:
        net = await self.session.get(Network, network_id)
        return None if net is None else await self.network_info(net, with_ports)

    async def active_networks(self) -> list[NetworkInfo]:
        dhcp = select(Subnet.network_id).where(Subnet.enable_dhcp.is_(True))
        nets = await self.session.scalars(select(Network).where(
            Network.admin_state_up.is_(True), Network.id.in_(dhcp)).order_by(
            Network.created_at))
        return [await self.network_info(n) for n in nets]

    async def device_details(self, port: Port) -> DeviceDetails:
        info = await self.network_info_by_id(port.network_id, with_ports=False)
        assert info is not None
        return await self._with_security(DeviceDetails(port=await self.port_info(port),
                                                       network=info))

    async def bound_ports(self, host: str) -> list[DeviceDetails]:
        """Every server port bound to ``host``, with its network's segment (DHCP ports are
        the dhcp-agent's own business)."""
        ports = (await self.session.scalars(select(Port).where(
            Port.binding_host_id == host, Port.device_owner != DHCP_DEVICE_OWNER).order_by(
            Port.created_at, Port.id))).all()
        networks: dict[str, NetworkInfo] = {}
        result = []
        for port in ports:
            if port.network_id not in networks:
                info = await self.network_info_by_id(port.network_id, with_ports=False)
                assert info is not None
                networks[port.network_id] = info
            result.append(await self._with_security(DeviceDetails(
                port=await self.port_info(port), network=networks[port.network_id])))
        return result

    # Security groups for the l2-agent's firewall --------------------------------------------

    async def _with_security(self, details: DeviceDetails) -> DeviceDetails:
        """``details`` with the port's groups (rules as written) and the members of every
        group their rules name as remote group."""
        ids = details.port.security_group_ids
        if not ids:
            return details
        groups = await self.security_groups(ids)
        return details.model_copy(update={
            "security_groups": groups.security_groups,
            "remote_group_members": groups.remote_group_members})

    async def security_groups(self, group_ids: list[str]) -> SecurityGroupsSnapshot:
        """The groups (rules as written; the ones that exist, by id) and the members of
        every group their rules name as remote group."""
        groups = (await self.session.scalars(select(SecurityGroup).where(
            SecurityGroup.id.in_(group_ids)).order_by(SecurityGroup.id))).all()
        infos = [SecurityGroupInfo(id=g.id, stateful=g.stateful, rules=[
            SecurityGroupRuleInfo(
                id=r.id, direction=r.direction, ethertype=r.ethertype, protocol=r.protocol,
                port_range_min=r.port_range_min, port_range_max=r.port_range_max,
                remote_ip_prefix=r.remote_ip_prefix, remote_group_id=r.remote_group_id)
            for r in g.rules]) for g in groups]
        remote = sorted({r.remote_group_id for g in infos for r in g.rules
                         if r.remote_group_id})
        return SecurityGroupsSnapshot(security_groups=infos,
                                      remote_group_members=await self.group_members(remote))

    async def members_among(self, touched: dict[str, list[str]]) -> dict[str, list[str]]:
        """Of each group's ``touched`` addresses (or CIDRs, as written), those that are its
        members now: what the l2-agents ask when only members changed. Reads only the rows
        of those addresses, however many members the groups have."""
        groups = sorted(g for g, a in touched.items() if a)
        found: dict[str, set[str]] = {g: set() for g in touched}
        if not groups:
            return {g: [] for g in touched}
        addresses = sorted({a for g in groups for a in touched[g]})
        wanted = {"groups": groups, "addresses": addresses}
        members: list[tuple[str, str]] = [
            (group_id, address) for group_id, address in
            await self.session.execute(_FIXED_AMONG, wanted)]
        holders: dict[str, set[str]] = {}
        for port_id, address in await self.session.execute(_PAIRS_HOLDING,
                                                             {"addresses": addresses}):
            holders.setdefault(port_id, set()).add(address)
        if holders:
            links = await self.session.execute(_LINKS_OF, {"ports": sorted(holders),
                                                           "groups": groups})
            members.extend((g, a) for port_id, g in links for a in holders[port_id])
        for group_id, address in members:
            if address in touched[group_id]:
                found[group_id].add(address)
        return {g: sorted(a) for g, a in found.items()}

    async def group_members(self, group_ids: list[str]) -> dict[str, list[str]]:
        """Each group's members as addresses: the fixed IPs and allowed address pairs of
        the ports in it (ports with port security off are members all the same, as in
        Neutron)."""
        members: dict[str, set[str]] = {g: set() for g in group_ids}
        if not group_ids:
            return {}
        link = PortSecurityGroup
        fixed = await self.session.execute(select(link.security_group_id,
                                                  IPAllocation.ip_address).join(
            IPAllocation, IPAllocation.port_id == link.port_id).where(
            link.security_group_id.in_(group_ids)))
        pairs = await self.session.execute(select(link.security_group_id,
                                                  PortAllowedAddressPair.ip_address).join(
            PortAllowedAddressPair, PortAllowedAddressPair.port_id == link.port_id).where(
            link.security_group_id.in_(group_ids)))
        for group_id, address in [*fixed.all(), *pairs.all()]:
            members[group_id].add(address)
        return {g: sorted(a) for g, a in members.items()}
