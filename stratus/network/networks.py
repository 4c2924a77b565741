"""Networks: create (with provider segments and VXLAN ids), show, list, update, delete."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from sqlalchemy import Select, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from stratus.core.config import NetworkSettings
from stratus.core.db import utcnow
from stratus.network.caller import Caller, network_target
from stratus.network.common import UNSET, Unset, apply_filters, given, new_id, touch
from stratus.network.errors import InvalidInput, NetworkInUse, NetworkNotFound
from stratus.network.models import Network, Port
from stratus.network.notify import Notifier
from stratus.network.objects import DHCP_DEVICE_OWNER
from stratus.network.quotas import Quotas
from stratus.network.txn import Txn

#: Network types an admin may give (``provider:network_type``): what the l2-agent wires.
NETWORK_TYPES = ("flat", "vxlan")


@dataclass(frozen=True)
class ProviderSegment:
    """``provider:*`` attributes as a create gave them (admins only)."""

    network_type: str | None = None
    physical_network: str | None = None
    segmentation_id: int | None = None


@dataclass(frozen=True)
class NewNetwork:
    """A network to create. ``provider``: given when the request named any ``provider:*``
    attribute (even as null), which needs its own policy rule."""

    name: str = ""
    description: str = ""
    project_id: str | None = None
    admin_state_up: bool = True
    shared: bool = False
    router_external: bool = False
    port_security_enabled: bool = True
    mtu: int | None = None
    availability_zone_hints: tuple[str, ...] = ()
    provider: ProviderSegment | None = None


@dataclass(frozen=True)
class NetworkUpdate:
    """Changes to a network (``UNSET``: not asked for). ``provider``: the request named a
    ``provider:*`` attribute, which cannot be changed."""

    COLUMNS: ClassVar[tuple[str, ...]] = ("name", "description", "admin_state_up", "shared",
                                          "router_external", "mtu", "port_security_enabled")

    name: str | Unset = UNSET
    description: str | Unset = UNSET
    admin_state_up: bool | Unset = UNSET
    shared: bool | Unset = UNSET
    router_external: bool | Unset = UNSET
    mtu: int | Unset = UNSET
    port_security_enabled: bool | Unset = UNSET
    provider: bool = False


@dataclass
class Networks:
    """The networks of one transaction."""

    txn: Txn
    quotas: Quotas
    notifier: Notifier
    options: NetworkSettings

    @property
    def session(self) -> AsyncSession:
        return self.txn.session

    def _visible_networks(self, caller: Caller) -> Select[Network]:
        query = select(Network)
        if not caller.is_admin:
            query = query.where(or_(Network.project_id == caller.project_id,
                                    Network.shared.is_(True)))
        return query

    async def get_network(self, caller: Caller, network_id: str) -> Network:
        net = (await self.session.scalars(
            self._visible_networks(caller).where(Network.id == network_id).options(
                joinedload(Network.subnets)))).unique().one_or_none()
        if net is None:
            raise NetworkNotFound(network_id)
        return net

    async def list_networks(self, caller: Caller,
                            where: Mapping[str, list[Any]] | None = None) -> list[Network]:
        query = apply_filters(self._visible_networks(caller), Network, where)
        return list(await self.session.scalars(query.order_by(Network.created_at,
                                                              Network.id)))

    async def create_network(self, caller: Caller, new: NewNetwork) -> Network:
        project_id = new.project_id or caller.project_id
        target = {"project_id": project_id}
        caller.authorize("create_network", target)
        if new.shared:
            caller.authorize("create_network:shared", target)
        if new.router_external:
            caller.authorize("create_network:router:external", target)
        if new.provider is not None:
            caller.authorize("create_network:provider", target)
        provider = new.provider or ProviderSegment()
        await self.quotas.check(project_id, "network")
        network_type = provider.network_type or "flat"
        if network_type not in NETWORK_TYPES:
            raise InvalidInput(f"Invalid input for operation: network_type value "
                               f"'{network_type}' not supported.")
        segmentation_id = provider.segmentation_id
        if network_type == "vxlan" and segmentation_id is None:
            segmentation_id = await self._free_vni()
        now = utcnow()
        net = Network(
            id=new_id(), project_id=project_id, name=new.name, description=new.description,
            admin_state_up=new.admin_state_up, shared=new.shared,
            router_external=new.router_external,
            port_security_enabled=new.port_security_enabled,
            mtu=new.mtu or self.options.default_mtu, network_type=network_type,
            physical_network=provider.physical_network, segmentation_id=segmentation_id,
            availability_zone_hints=list(new.availability_zone_hints),
            tags=[], status="ACTIVE" if new.admin_state_up else "DOWN",
            revision_number=1, created_at=now, updated_at=now)
        net.subnets = []
        self.session.add(net)
        await self.session.flush()
        self.notifier.network_changed(net.id)
        return net

    async def _free_vni(self) -> int:
        """The lowest free VNI; the lock keeps two concurrent creates from taking the same."""
        await self.txn.lock("vxlan-vni")
        used = set(await self.session.scalars(select(Network.segmentation_id).where(
            Network.network_type == "vxlan")))
        for vni in range(self.options.vxlan_vni_min, self.options.vxlan_vni_max + 1):
            if vni not in used:
                return vni
        raise InvalidInput("No VXLAN segmentation id is free.")

    async def update_network(self, caller: Caller, network_id: str,
                             change: NetworkUpdate) -> Network:
        net = await self.get_network(caller, network_id)
        target = network_target(net)
        caller.authorize("update_network", target)
        if change.shared is not UNSET and change.shared != net.shared:
            caller.authorize("update_network:shared", target)
        if change.router_external is not UNSET:
            caller.authorize("update_network:router:external", target)
        if change.provider:
            caller.authorize("update_network:provider", target)
            raise InvalidInput("Invalid input for operation: Plugin does not support "
                               "updating provider attributes.")
        for column, value in given(change, *NetworkUpdate.COLUMNS).items():
            setattr(net, column, value)
        if change.admin_state_up is not UNSET:
            net.status = "ACTIVE" if net.admin_state_up else "DOWN"
        touch(net)
        await self.session.flush()
        self.notifier.network_changed(net.id)
        return net

    async def delete_network(self, caller: Caller, network_id: str) -> None:
        net = await self.get_network(caller, network_id)
        caller.authorize("delete_network", network_target(net))
        busy = await self.session.scalar(select(Port.id).where(
            Port.network_id == net.id, Port.device_owner != DHCP_DEVICE_OWNER).limit(1))
        if busy is not None:
            raise NetworkInUse(net.id)
        for port in await self.session.scalars(select(Port).where(Port.network_id == net.id)):
            self.notifier.port_deleted(port)  # DHCP ports: their agents are told
            await self.session.delete(port)  # its addresses and group links go with it
        await self.session.flush()
        await self.session.delete(net)
        await self.session.flush()
        self.notifier.network_deleted(network_id)
