"""The network service's domain layer: the runtime and the facade that wires its parts.
Nothing here knows HTTP.

``NetworkRuntime`` lives as long as the process; ``NetworkService`` works inside one
transaction (``Txn``) and holds one part per resource, each constructed with the
transaction and its named collaborators (``networks``, ``subnets``, ``ports``,
``security_groups``, ``agents``, ``agent_sync``, ``quotas``). Changes that agents or compute
must hear of are queued on the transaction and run by the runtime after it committed, so
nobody is told of a change that then rolled back.

Concurrency: on PostgreSQL writers take transaction-scoped advisory locks where a count or a
lookup-then-create must not race (quotas, DHCP ports); on SQLite, whose database belongs to
this one process, write transactions are serialised by one asyncio lock (SQLite has a
single writer anyway, and a deferred transaction that reads before it writes would
otherwise fail with "database is locked"). Callers say which they open (``write``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import select

from stratus.core.config import Settings
from stratus.core.context import RequestContext
from stratus.core.db import Database
from stratus.core.policy import Enforcer
from stratus.network.agent_registry import Agents
from stratus.network.agent_sync import AgentSync
from stratus.network.backends import NetworkBackend, NoopBackend
from stratus.network.caller import Caller
from stratus.network.events import DiscardEvents, EventSink
from stratus.network.ipam import IPAM
from stratus.network.migrations import HEAD, SCRIPT_LOCATION, VERSION_TABLE
from stratus.network.models import Network
from stratus.network.networks import Networks, NewNetwork
from stratus.network.notify import Notifier
from stratus.network.objects import NetworkInfo
from stratus.network.policy import RULES
from stratus.network.ports import Ports
from stratus.network.quotas import Quotas
from stratus.network.security_groups import SecurityGroups
from stratus.network.snapshots import Snapshots
from stratus.network.subnets import NewSubnet, Subnets
from stratus.network.txn import Txn

LOG = logging.getLogger(__name__)


class NetworkRuntime:
    """What network-api keeps for the life of the process."""

    def __init__(self, settings: Settings, db: Database | None = None,
                 backend: NetworkBackend | None = None, events: EventSink | None = None) -> None:
        self.settings = settings
        self.options = settings.network
        self.db = db or Database(settings.database_url_for("network",
                                                           settings.network.database_url))
        self.enforcer = Enforcer(RULES, settings.policy_file)
        self.backend: NetworkBackend = backend or NoopBackend()
        self.events: EventSink = events or DiscardEvents()
        self._write_lock = asyncio.Lock() if self.db.backend == "sqlite" else None

    async def start(self) -> None:
        await self.db.upgrade(SCRIPT_LOCATION, VERSION_TABLE, known_head=HEAD)

    async def stop(self) -> None:
        await self.db.dispose()

    def caller(self, context: RequestContext) -> Caller:
        return Caller(context, self.enforcer)

    @asynccontextmanager
    async def service(self, *, write: bool = True) -> AsyncIterator[NetworkService]:
        """One transaction: committed on success, rolled back on error; then what the
        service queued for after the commit runs (its failures are logged)."""
        if write and self._write_lock is not None:
            async with self._write_lock, self.db.session() as session:
                txn = Txn(session, self.db.backend)
                yield NetworkService(self, txn)
        else:
            async with self.db.session() as session:
                txn = Txn(session, self.db.backend)
                yield NetworkService(self, txn)
        for action in txn.pending:
            try:
                await action()
            except Exception:
                LOG.exception("notifying a network change failed")

    async def read_network(self, network_id: str) -> NetworkInfo | None:
        """A network's snapshot in a transaction of its own (read after a commit)."""
        async with self.service(write=False) as svc:
            return await svc.snapshots.network_info_by_id(network_id)


class NetworkService:
    """The network service within one transaction: its parts, wired in order."""

    def __init__(self, runtime: NetworkRuntime, txn: Txn) -> None:
        self.txn = txn
        self.enforcer = runtime.enforcer
        self.backend = runtime.backend
        ipam = IPAM(txn.session, txn.dialect)
        self.quotas = Quotas(txn, runtime.options)
        self.agents = Agents(txn, runtime.options)
        self.snapshots = Snapshots(txn)
        notifier = Notifier(txn, self.snapshots, runtime.backend, runtime.events,
                            runtime.read_network)
        self.security_groups = SecurityGroups(txn, self.quotas)
        self.networks = Networks(txn, self.quotas, notifier, runtime.options)
        self.subnets = Subnets(txn, self.networks, self.quotas, notifier)
        self.ports = Ports(txn, ipam, self.networks, self.security_groups, self.quotas,
                           notifier, self.snapshots)
        self.agent_sync = AgentSync(txn, ipam, self.ports, self.snapshots, notifier)

    async def ensure_default_network(self, project_id: str, name: str, cidr: str) -> Network:
        """The project's network ``name`` with one subnet on ``cidr``: made once."""
        existing = await self.txn.session.scalar(select(Network).where(
            Network.project_id == project_id, Network.name == name))
        if existing is not None:
            return existing
        caller = Caller(RequestContext(roles=["admin"], project_id=project_id), self.enforcer)
        net = await self.networks.create_network(caller, NewNetwork(name=name))
        await self.subnets.create_subnet(caller, NewSubnet(network_id=net.id, cidr=cidr,
                                                           name=f"{name}-subnet"))
        return net
