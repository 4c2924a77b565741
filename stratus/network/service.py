"""The network service's domain layer: the runtime and the facade that wires its parts.
Nothing here knows HTTP.

``NetworkRuntime`` lives as long as the process; ``NetworkService`` works inside one
transaction (``Txn``) and holds one part per resource, each constructed with the
transaction and its named collaborators (``networks``, ``subnetpools``, ``subnets``, ``ports``,
``security_groups``, ``agents``, ``agent_sync``, ``quotas``; the L3 service's ``routers``,
``floating_ips`` and ``l3_sync``). Changes that agents or compute
must hear of are queued on the transaction and run by the runtime after it committed, so
nobody is told of a change that then rolled back.

Concurrency is core's ``Txn``: where a count or a lookup-then-create must not race (quotas,
DHCP ports, VXLAN ids) the parts take ``txn.lock``; callers say whether they write
(``service(write=...)``), as on SQLite writing transactions are serialised.
"""

from __future__ import annotations

import logging
from contextlib import AbstractAsyncContextManager
from types import TracebackType

from sqlalchemy import select

from stratus.core.config import Settings
from stratus.core.context import RequestContext
from stratus.core.db import Database, Txn
from stratus.core.policy import Enforcer
from stratus.network.agent_registry import Agents
from stratus.network.agent_sync import AgentSync
from stratus.network.backends import NetworkBackend, NoopBackend
from stratus.network.caller import network_caller
from stratus.network.events import DiscardEvents, EventSink
from stratus.network.floating_ips import FloatingIPs
from stratus.network.ipam import IPAM
from stratus.network.l2pop import L2Population
from stratus.network.l3_agents import L3Agents
from stratus.network.l3_ports import L3Ports, refuse_direct_delete
from stratus.network.l3_sync import L3Sync
from stratus.network.migrations import HEAD, SCRIPT_LOCATION, VERSION_TABLE
from stratus.network.models import Network, Port
from stratus.network.networks import Networks, NewNetwork, ProviderSegment
from stratus.network.notify import Notifier
from stratus.network.objects import NetworkInfo
from stratus.network.policy import RULES
from stratus.network.ports import Ports
from stratus.network.quotas import Quotas, quota_table
from stratus.network.routers import Routers
from stratus.network.rpcapi import L3AgentAPI
from stratus.network.security_groups import SecurityGroups
from stratus.network.snapshots import Snapshots
from stratus.network.subnetpools import SubnetPools
from stratus.network.subnets import NewSubnet, Subnets

LOG = logging.getLogger(__name__)


class NetworkRuntime:
    """What network-api keeps for the life of the process."""

    def __init__(self, settings: Settings, db: Database | None = None,
                 backend: NetworkBackend | None = None, events: EventSink | None = None,
                 l3_agents: L3AgentAPI | None = None) -> None:
        self.settings = settings
        self.options = settings.network
        self.db = db or Database(settings.database_url_for("network",
                                                           settings.network.database_url))
        self.enforcer = Enforcer(RULES, settings.policy_file)
        self.backend: NetworkBackend = backend or NoopBackend()
        self.events: EventSink = events or DiscardEvents()
        #: How routers' l3-agents are told of changes (None: no bus, nobody is told).
        self.l3_agents = l3_agents
        self.quota_table = quota_table(self.options)

    async def start(self) -> None:
        await self.db.upgrade(SCRIPT_LOCATION, VERSION_TABLE, known_head=HEAD)

    async def stop(self) -> None:
        await self.db.dispose()

    def service(self, *, write: bool = True) -> ServiceTransaction:
        """One transaction (``Database.transaction``): committed on success, rolled back
        on error; then what the parts queued for after the commit runs (failures logged).
        ``write=False``: a reading transaction, which on SQLite does not wait for the
        writers' lock."""
        return ServiceTransaction(self, write=write)

    async def read_network(self, network_id: str) -> NetworkInfo | None:
        """A network's snapshot in a transaction of its own (read after a commit)."""
        async with self.service(write=False) as svc:
            return await svc.snapshots.network_info_by_id(network_id)


class ServiceTransaction:
    """``NetworkRuntime.service``: ``async with`` it for a ``NetworkService`` in a
    transaction of its own. A plain context manager, not a generator's: every API request
    enters one, and each generator layer costs ~10 Python calls to enter and leave."""

    __slots__ = ("_inner", "_runtime", "_svc", "_write")

    def __init__(self, runtime: NetworkRuntime, *, write: bool) -> None:
        self._runtime = runtime
        self._write = write
        self._inner: AbstractAsyncContextManager[Txn] | None = None
        self._svc: NetworkService | None = None

    async def __aenter__(self) -> NetworkService:
        self._inner = self._runtime.db.transaction(write=self._write)
        txn = await self._inner.__aenter__()
        try:
            self._svc = NetworkService(self._runtime, txn)
        except BaseException as exc:  # the transaction (and its writers' lock) let go
            await self._inner.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self._svc

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> bool | None:
        assert self._inner is not None and self._svc is not None
        self._svc.close()
        return await self._inner.__aexit__(exc_type, exc, tb)


class NetworkService:
    """The network service within one transaction: its parts, wired in order."""

    def __init__(self, runtime: NetworkRuntime, txn: Txn) -> None:
        self.txn = txn
        self.enforcer = runtime.enforcer
        self.backend = runtime.backend
        ipam = IPAM(txn)
        self.quotas = Quotas(txn, runtime.quota_table)
        self.l2pop = L2Population(txn, runtime.backend)
        self.agents = Agents(txn, runtime.options, self.l2pop)
        self.snapshots = Snapshots(txn)
        notifier = Notifier(txn, self.snapshots, runtime.backend, runtime.events, self.l2pop,
                            runtime.read_network)
        self.security_groups = SecurityGroups(txn, self.quotas, notifier)
        self.networks = Networks(txn, self.quotas, notifier, runtime.options)
        self.subnetpools = SubnetPools(txn)
        self.subnets = Subnets(txn, self.networks, self.quotas, notifier, self.subnetpools)
        self.ports = Ports(txn, ipam, self.networks, self.security_groups, self.quotas,
                           notifier, self.snapshots)
        self.agent_sync = AgentSync(txn, ipam, self.ports, self.snapshots, notifier)
        self._wire_l3(runtime, ipam, notifier)

    def close(self) -> None:
        """Unwire the parts once the transaction is done. The delete hooks tie ports and
        floating IPs in a reference cycle (each holds the other): left in place, every
        request's service, session and rows would wait for the cyclic garbage collector,
        whose passes then cost more CPU than the request (port creates: ~2.5x the
        collections of a cloud without the cycle)."""
        self.ports.before_delete.clear()

    def _wire_l3(self, runtime: NetworkRuntime, ipam: IPAM, notifier: Notifier) -> None:
        """Routers and floating IPs (the L3 service), and what they ask of ports."""
        l3_agents = L3Agents(self.txn, runtime.options, runtime.backend, runtime.l3_agents)
        l3_ports = L3Ports(self.txn, ipam, self.ports, notifier)
        self.routers = Routers(self.txn, self.networks, self.subnets, self.ports, l3_ports,
                               l3_agents, self.quotas)
        self.floating_ips = FloatingIPs(self.txn, self.ports, l3_ports, l3_agents,
                                        self.quotas, notifier)
        self.l3_sync = L3Sync(self.txn, l3_agents, self.floating_ips, self.snapshots)

        async def refuse_l3_port(port: Port) -> None:
            refuse_direct_delete(port)

        self.ports.before_delete += [refuse_l3_port, self.floating_ips.port_deleted]

    async def ensure_default_network(self, project_id: str, name: str, cidr: str) -> Network:
        """The project's network ``name`` with one subnet on ``cidr``: made once."""
        existing = await self.txn.session.scalar(select(Network).where(
            Network.project_id == project_id, Network.name == name))
        if existing is not None:
            return existing
        caller = network_caller(RequestContext(roles=["admin"], project_id=project_id),
                                self.enforcer)
        net = await self.networks.create_network(caller, NewNetwork(name=name))
        await self.subnets.create_subnet(caller, NewSubnet(network_id=net.id, cidr=cidr,
                                                           name=f"{name}-subnet"))
        return net

    # The external network of ``stratus up`` ---------------------------------------------------

    async def ensure_external_network(self, project_id: str, name: str,
                                      physical_network: str,
                                      cidr: str) -> tuple[Network, str | None, bool]:
        """The external network ``name`` (``router:external``, flat on
        ``physical_network``) with one DHCP-less subnet on ``cidr``, owned by
        ``project_id``: made once. Its subnet's gateway address, and whether it was made
        now."""
        existing = await self.txn.session.scalar(select(Network).where(
            Network.router_external.is_(True), Network.name == name))
        if existing is not None:
            subnets = await self.snapshots.subnets_of(existing.id)
            return existing, next((s.gateway_ip for s in subnets if s.gateway_ip), None), False
        caller = network_caller(RequestContext(roles=["admin"], project_id=project_id),
                                self.enforcer)
        net = await self.networks.create_network(caller, NewNetwork(
            name=name, router_external=True,
            provider=ProviderSegment(network_type="flat", physical_network=physical_network)))
        subnet = await self.subnets.create_subnet(caller, NewSubnet(
            network_id=net.id, cidr=cidr, name=f"{name}-subnet", enable_dhcp=False))
        return net, subnet.gateway_ip, True
