"""Compute's domain layer: the process-wide runtime and the per-transaction service.

The runtime holds what lives as long as the process: the database, the policy enforcer and,
in compute-api, the clients of other services (``ComputeClients``). The flows that span
transactions and services (``boot``, ``lifecycle``, ``volume_attach``) take the runtime.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from stratus.compute.aggregates import Aggregates
from stratus.compute.console_tokens import ConsoleTokens
from stratus.compute.flavors import Flavors
from stratus.compute.hosts import Hosts
from stratus.compute.instances import Instances
from stratus.compute.keypairs import KeyPairs
from stratus.compute.migrations import HEAD, SCRIPT_LOCATION, VERSION_TABLE
from stratus.compute.placement import Placement
from stratus.compute.placement_reads import PlacementReads
from stratus.compute.policy import RULES
from stratus.compute.quotas import Quotas
from stratus.compute.request_traces import RequestTraces
from stratus.compute.rpcapi import ComputeAgentAPI, SchedulerAPI
from stratus.compute.server_groups import ServerGroups
from stratus.compute.server_metadata import ServerMetadata
from stratus.compute.server_migrations import Migrations
from stratus.core.clients.image import ImageClient
from stratus.core.clients.network import NetworkClient
from stratus.core.clients.volume import VolumeClient
from stratus.core.config import Settings
from stratus.core.db import Database, Txn
from stratus.core.policy import Enforcer


@dataclass(frozen=True)
class ComputeClients:
    """compute-api's clients of the bus (scheduler, compute hosts) and of other services."""

    scheduler: SchedulerAPI
    agents: ComputeAgentAPI
    images: ImageClient
    volumes: VolumeClient
    #: The caller's view of the network service (``os-interface``).
    network: NetworkClient


class ComputeRuntime:
    """What compute keeps for the life of the process."""

    def __init__(self, settings: Settings, db: Database | None = None) -> None:
        self.settings = settings
        self.db = db or Database(settings.database_url_for("compute",
                                                           settings.compute.database_url))
        self.enforcer = Enforcer(RULES, settings.policy_file)
        #: The spans of this host's span store, as the seeds' step table (operators).
        self.traces = RequestTraces(settings.data_dir, settings.tracing, self.db)
        self._clients: ComputeClients | None = None

    def connect(self, clients: ComputeClients) -> None:
        """Give the runtime its clients (compute-api does; the scheduler, conductor and
        metadata units share the runtime without them)."""
        self._clients = clients

    @property
    def clients(self) -> ComputeClients:
        if self._clients is None:
            raise RuntimeError("This compute runtime has no clients: it serves no API.")
        return self._clients

    async def start(self) -> None:
        """Bring the schema to head and seed the default flavors on a new database."""
        await self.db.upgrade(SCRIPT_LOCATION, VERSION_TABLE, known_head=HEAD)
        async with self.service() as svc:
            await svc.flavors.seed_defaults()

    async def stop(self) -> None:
        await self.db.dispose()

    @asynccontextmanager
    async def service(self, *, write: bool = True,
                      one_statement: bool = False) -> AsyncIterator[ComputeService]:
        """One transaction (a core ``Txn``: committed on success, rolled back on error).

        ``write=False``: on SQLite, not one of the file's serialised write transactions
        (see ``stratus.core.db.txn``): one that only reads, or the conductor's, whose every
        change is guarded by the task state it expects and which must not queue behind a
        burst of compute-api's writes (``conductor.manager`` retries it in the queue when
        SQLite's lock stayed busy). ``one_statement``: see ``stratus.core.db.txn``."""
        async with self.db.transaction(write=write, one_statement=one_statement) as txn:
            yield ComputeService(self, txn)


class ComputeService:
    """Compute's operations within one database transaction: the parts, wired in order
    (each gets the transaction and the parts it uses, never this facade). Each part is made
    when first used, and the transaction's ORM session only when a part asks for it: a boot's
    hops use one or two parts and prebuilt statements, and making every part and a session
    per transaction cost more than their SQL."""

    def __init__(self, runtime: ComputeRuntime, txn: Txn) -> None:
        self.runtime = runtime
        self.txn = txn

    @property
    def session(self) -> AsyncSession:
        return self.txn.session

    @functools.cached_property
    def quotas(self) -> Quotas:
        return Quotas(self.txn)

    @functools.cached_property
    def flavors(self) -> Flavors:
        return Flavors(self.txn)

    @functools.cached_property
    def keypairs(self) -> KeyPairs:
        return KeyPairs(self.txn)

    @functools.cached_property
    def instances(self) -> Instances:
        return Instances(self.txn)

    @functools.cached_property
    def server_groups(self) -> ServerGroups:
        return ServerGroups(self.txn, self.quotas)

    @functools.cached_property
    def server_metadata(self) -> ServerMetadata:
        return ServerMetadata(self.txn, self.quotas)

    @functools.cached_property
    def placement(self) -> Placement:
        return Placement(self.txn)

    @functools.cached_property
    def placement_reads(self) -> PlacementReads:
        return PlacementReads(self.session)

    @functools.cached_property
    def console_tokens(self) -> ConsoleTokens:
        return ConsoleTokens(self.txn)

    @functools.cached_property
    def hosts(self) -> Hosts:
        return Hosts(self.session, self.runtime.settings.compute.service_down_time)

    @functools.cached_property
    def aggregates(self) -> Aggregates:
        return Aggregates(self.session)

    @functools.cached_property
    def migrations(self) -> Migrations:
        return Migrations(self.txn)
