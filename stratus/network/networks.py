"""Networks: create (with provider segments and VXLAN ids), show, list, update, delete."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from sqlalchemy import Select, bindparam, or_, outerjoin, select
from sqlalchemy.orm import class_mapper, joinedload

from stratus.core.config import NetworkSettings
from stratus.core.db import as_loaded, utcnow
from stratus.core.db.paging import Page
from stratus.core.db.txn import LOCK_COLUMNS
from stratus.core.policy import Caller
from stratus.network import filters as flt
from stratus.network.caller import network_target
from stratus.network.common import UNSET, Unset, given, new_id, touch
from stratus.network.errors import InvalidInput, NetworkInUse, NetworkNotFound
from stratus.network.models import Network, Port, Quota, Subnet
from stratus.network.notify import Notifier
from stratus.network.objects import DHCP_DEVICE_OWNER
from stratus.network.part import Part
from stratus.network.quotas import Quotas

#: Network types an admin may give (``provider:network_type``): what the l2-agent wires.
NETWORK_TYPES = ("flat", "vxlan")


_PROVIDER_RULE = "get_network:provider"

#: How networks filter and sort (``filters``).
ATTRIBUTES = flt.Attributes(
    filters={
        "id": flt.text(Network.id), "name": flt.text(Network.name),
        "status": flt.text(Network.status),
        "admin_state_up": flt.boolean(Network.admin_state_up),
        "subnets": flt.member(Network.id, lambda ids: select(Subnet.network_id).where(
            Subnet.id.in_(ids))),
        "shared": flt.boolean(Network.shared), "mtu": flt.integer(Network.mtu),
        "router:external": flt.boolean(Network.router_external),
        "port_security_enabled": flt.boolean(Network.port_security_enabled),
        "availability_zone_hints": flt.json_list(Network.availability_zone_hints),
        "availability_zones": flt.constant("nova"), "ipv4_address_scope": flt.constant(None),
        "ipv6_address_scope": flt.constant(None), "l2_adjacency": flt.constant(True),
        "is_default": flt.constant(False), **flt.standard(Network),
        "provider:network_type": flt.text(Network.network_type),
        "provider:physical_network": flt.text(Network.physical_network),
        "provider:segmentation_id": flt.integer(Network.segmentation_id)},
    sort={"id": Network.id, "name": Network.name, "status": Network.status,
          "admin_state_up": Network.admin_state_up, "shared": Network.shared,
          "mtu": Network.mtu, "router:external": Network.router_external,
          "port_security_enabled": Network.port_security_enabled, **flt.standard_sort(Network),
          "provider:network_type": Network.network_type,
          "provider:physical_network": Network.physical_network,
          "provider:segmentation_id": Network.segmentation_id},
    default_sort=flt.BY_CREATION, id_column=Network.id, tags=Network.tags,
    rules={key: _PROVIDER_RULE for key in (
        "provider:network_type", "provider:physical_network", "provider:segmentation_id")})


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


def _visible(query: Select[Network], project_id: Any) -> Select[Network]:
    """``query`` narrowed to the networks a non-admin of ``project_id`` sees: external
    networks are everyone's to route to and float from."""
    return query.where(or_(Network.project_id == project_id, Network.shared.is_(True),
                           Network.router_external.is_(True)))


_GET_ANY = select(Network).where(Network.id == bindparam("network_id")).options(
    joinedload(Network.subnets))
_GET_VISIBLE = _visible(_GET_ANY, bindparam("project_id"))

#: Each model's attributes and their columns, in one order (a Core row read by position).
_NETWORK_COLUMNS = [(prop.key, prop.columns[0]) for prop in class_mapper(Network).column_attrs]
_SUBNET_COLUMNS = [(prop.key, prop.columns[0]) for prop in class_mapper(Subnet).column_attrs]
#: Where a row's subnet part starts, and its id (None: a network without subnets).
_SUBNET_AT = len(_NETWORK_COLUMNS)
_SUBNET_ID_AT = _SUBNET_AT + [key for key, _ in _SUBNET_COLUMNS].index("id")
_NETWORK_KEYS = tuple(key for key, _ in _NETWORK_COLUMNS)
_SUBNET_KEYS = tuple(key for key, _ in _SUBNET_COLUMNS)
#: Project ``quota_project``'s own limit on resource ``quota_resource`` (NULL: none, the
#: default applies), as a column of ``read_network``'s statement.
_QUOTA_OVERRIDE = select(Quota.hard_limit).where(
    Quota.project_id == bindparam("quota_project"),
    Quota.resource == bindparam("quota_resource")).scalar_subquery().label("quota_limit")


@functools.cache
def _read_statement(visible: bool, quota: bool, lock: bool) -> Select[Any]:
    """``read_network``'s statement: the network and its subnets (in creation order, as the
    relationship orders them), one row per subnet, by Core (no ORM load); ``visible``: only
    if a non-admin of ``project_id`` sees it. ``quota``: each row also carries a project's
    override of one quota limit (``_QUOTA_OVERRIDE``) after the subnet's columns; ``lock``:
    then the (exclusive) quota lock's column (``LOCK_COLUMNS``, its key ``lock_key``).
    Built and compiled once per variant."""
    columns: list[Any] = [*(c for _, c in _NETWORK_COLUMNS), *(c for _, c in _SUBNET_COLUMNS)]
    if quota:
        columns.append(_QUOTA_OVERRIDE)
    if lock:
        columns.append(LOCK_COLUMNS[False])
    query = (select(*columns)
             .select_from(outerjoin(Network, Subnet, Subnet.network_id == Network.id))
             .where(Network.id == bindparam("network_id"))
             .order_by(Subnet.created_at))
    return _visible(query, bindparam("project_id")) if visible else query


_SUBNET_END = _SUBNET_AT + len(_SUBNET_COLUMNS)


@dataclass
class Networks(Part):
    """The networks of one transaction."""

    quotas: Quotas
    notifier: Notifier
    options: NetworkSettings

    def _visible_networks(self, caller: Caller) -> Select[Network]:
        query = select(Network)
        return query if caller.is_admin else _visible(query, caller.project_id)

    async def external_ids(self, network_ids: Iterable[str]) -> set[str]:
        """Which of ``network_ids`` are external networks (a subnet's ``router:external``)."""
        wanted = set(network_ids)
        if not wanted:
            return set()
        rows = await self.session.scalars(select(Network.id).where(
            Network.id.in_(wanted), Network.router_external.is_(True)))
        return set(rows)

    async def get_network(self, caller: Caller, network_id: str) -> Network:
        # Built once per kind of caller (a port create asks this first): a select with its
        # loader option and cache key cost more Python to build than to run.
        if not caller.is_admin and caller.project_id is None:  # `IS NULL`, not `= NULL`
            return await self._one(self._visible_networks(caller).where(
                Network.id == network_id).options(joinedload(Network.subnets)),
                NetworkNotFound(network_id))
        query = _GET_ANY if caller.is_admin else _GET_VISIBLE
        return await self._one(query, NetworkNotFound(network_id),
                               {"network_id": network_id, "project_id": caller.project_id})

    async def read_network(self, caller: Caller, network_id: str) -> Network:
        """``get_network``'s network (the same visibility, the same 404) with its subnets,
        read by one Core statement and not put in the session: for reading only (a port
        create reads a network's policy attributes and its subnets' pools; the ORM's joined
        load and identity map were a sixth of that create's Python calls). Its ``subnets``
        are plain instances too, in creation order."""
        if not caller.is_admin and caller.project_id is None:
            return await self.get_network(caller, network_id)
        return (await self._read(caller, network_id, None, None))[0]

    async def read_network_and_limit(self, caller: Caller, network_id: str, project_id: str,
                                     resource: str) -> tuple[Network, dict[str, int] | None]:
        """``read_network``'s network, and by the same statement project ``project_id``'s
        quota limit on ``resource`` (``Quotas.check``'s ``limits``; None: left to ``check``
        to read, for a caller whose networks the ORM reads), with the project's
        quota lock taken on PostgreSQL (``Quotas.lock_by_statement``): a port create's
        first two statements (three on PostgreSQL) made one.

        Why the lock may be taken by this statement, whose snapshot predates its wait for
        it: what it reads of the lock's other holders' writes (a subnet another request of
        the project adds meanwhile) it read before without the lock too, and a read taken
        before another's commit is what a request ordered before it would see; the usage
        the lock guards is counted after it, by ``check``. The quota lock is the only lock
        a port create takes (the SQLite write transaction is exclusive already)."""
        if not caller.is_admin and caller.project_id is None:
            return await self.get_network(caller, network_id), None
        lock_key = self.quotas.lock_by_statement(project_id)
        net, override = await self._read(caller, network_id, (project_id, resource), lock_key)
        return net, {resource: self.quotas.limit_of(resource, override)}

    async def _read(self, caller: Caller, network_id: str, quota: tuple[str, str] | None,
                    lock_key: int | None) -> tuple[Network, int | None]:
        """The network as ``read_network`` gives it; with ``quota`` (project, resource) also
        that project's override of that limit (None: none), and ``lock_key`` the quota lock
        to take by the statement (``_read_statement``)."""
        params: dict[str, Any] = {"network_id": network_id, "project_id": caller.project_id}
        if quota is not None:
            params["quota_project"], params["quota_resource"] = quota
        if lock_key is not None:
            params["lock_key"] = lock_key
        connection = await self.txn.connection()
        rows = (await connection.execute(_read_statement(
            not caller.is_admin, quota is not None, lock_key is not None), params)).all()
        if not rows:
            raise NetworkNotFound(network_id)
        net = as_loaded(Network, dict(zip(_NETWORK_KEYS, rows[0][:_SUBNET_AT], strict=True)))
        subnets = []
        for row in rows:
            if row[_SUBNET_ID_AT] is None:  # the outer join's row of a network without any
                continue
            subnets.append(as_loaded(Subnet, dict(zip(_SUBNET_KEYS, row[_SUBNET_AT:_SUBNET_END],
                                                      strict=True))))
        net.__dict__["subnets"] = subnets
        return net, (rows[0][_SUBNET_END] if quota is not None else None)

    async def list_networks(self, caller: Caller, query: flt.ListQuery) -> Page:
        return await self._list_page(caller, ATTRIBUTES, self._visible_networks(caller), query)

    async def create_network(self, caller: Caller, new: NewNetwork) -> Network:
        project_id = new.project_id or caller.require_project()
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
            await self.notifier.port_deleted(port)  # DHCP ports: their agents are told
            await self.session.delete(port)  # its addresses and group links go with it
        await self.session.flush()
        await self.session.delete(net)
        await self.session.flush()
        self.notifier.network_deleted(network_id)
