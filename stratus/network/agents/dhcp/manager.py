"""The dhcp-agent: a DHCP namespace, a dnsmasq and a metadata proxy per served network.

For each admin-up network with a DHCP-enabled IPv4 subnet the agent keeps:

* the network's bridge (``brq...``; made here when the l2-agent has not);
* namespace ``qdhcp-<network id>`` holding the DHCP port: a veth whose outer end
  (``tap<port id[:11]>``) is in the bridge and whose inner end (``ns-<port id[:11]>``) has
  the port's MAC, its addresses and 169.254.169.254/32;
* ``<dhcp_state_dir>/<network id>/`` with dnsmasq's files, and a dnsmasq in the namespace;
* a metadata proxy on 169.254.169.254:80 in the namespace.

The guest's DHCP exchange and metadata requests are recorded as spans in the trace of the
request that placed its port (``port_traces``): dnsmasq reports each lease it gives or
renews through its lease script, read every ``LEASE_POLL`` seconds (the span keeps the
time of the reply, not of the read).

Bus events (``DhcpAgentAPI``) update that; ``resync`` makes it match the server's
``get_active_networks`` (on start and every ``resync_interval``), removing networks that are
gone, including ones left behind by an earlier run (their state directory names them). A
clean ``stop`` removes everything this agent made; after a crash the next start's resync
adopts the namespaces and replaces the left-over dnsmasq processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from stratus.core import tracing
from stratus.core.bus import MessagingError
from stratus.core.context import RequestContext
from stratus.core.periodic import Periodic
from stratus.network.agents import linux
from stratus.network.agents.dhcp import dnsmasq
from stratus.network.agents.dhcp.port_traces import PortTraces
from stratus.network.metadata_proxy import MetadataProxy, ProxyApp
from stratus.network.objects import (
    AgentState,
    NetworkInfo,
    PortInfo,
    bridge_name,
    dhcp_namespace,
    network_bridge,
    tap_name,
)
from stratus.network.rpcapi import DHCP_AGENT_TOPIC, NetworkServerAPI

LOG = logging.getLogger(__name__)

AGENT_TYPE = "DHCP agent"
BINARY = "stratus-dhcp-agent"
METADATA_AGENT_TYPE = "Metadata agent"
METADATA_BINARY = "stratus-metadata-proxy"
#: Seconds between reads of the networks' lease events.
LEASE_POLL = 1.0
#: A batch of port changes naming at most this many ports writes their host files on the
#: event loop; a larger one (a resync, a burst of deletes) in a thread.
INLINE_HOST_FILES = 4


def inner_device(port_id: str) -> str:
    """The DHCP port's device inside the namespace."""
    return f"ns-{port_id[:11]}"


@dataclass(frozen=True)
class DhcpAgentOptions:
    state_dir: Path
    dnsmasq: dnsmasq.DnsmasqOptions = field(default_factory=dnsmasq.DnsmasqOptions)
    report_interval: float = 10.0
    #: Seconds between full resyncs with the server.
    resync_interval: float = 60.0
    #: metadata-api's URL and the proxies' signing key; no URL means no metadata proxies.
    metadata_url: str | None = None
    metadata_secret: str = ""
    #: Where the proxies listen inside each namespace (tests may move the port).
    metadata_port: int = 80
    #: Shown by ``network agent list`` (Neutron's DHCP agents report one; ``nova``).
    availability_zone: str = "nova"
    #: ``network.physical_bridges``: mapped flat networks are served on these host bridges.
    physical_bridges: Mapping[str, str] = field(default_factory=dict)


@dataclass
class ServedNetwork:
    network: NetworkInfo
    dhcp_port: PortInfo
    process: dnsmasq.Dnsmasq
    hosts: dnsmasq.HostsDir
    proxy: MetadataProxy | None = None
    #: Source address → port, for the proxy (the DHCP port left out).
    by_address: dict[str, PortInfo] = field(default_factory=dict)
    #: ``network.ports`` by id, in their order.
    ports: dict[str, PortInfo] = field(default_factory=dict)

    def index(self) -> None:
        self.ports = {p.id: p for p in self.network.ports}
        self.by_address = {f.ip_address: p for p in self.network.ports
                           if p.id != self.dhcp_port.id for f in p.fixed_ips}

    def changed(self, changes: list[tuple[str, PortInfo | None]]
                ) -> tuple[NetworkInfo, PortDelta]:
        """The served network with ``changes`` (port id → its new port, None: gone) made,
        in their order, and what differs. ``ports`` is updated; ``network`` and
        ``by_address`` stay until ``_refresh`` takes the result (``reindex``)."""
        gone: list[PortInfo] = []
        new: list[PortInfo] = []
        for port_id, port in changes:
            old = self.ports.pop(port_id, None)
            if old is not None:
                gone.append(old)
            if port is not None:
                self.ports[port_id] = port  # last, as a port updated moves to the end
                new.append(port)
        # A port changed twice in the batch: only its last object is new; the first is
        # gone (its addresses unindexed, its file rewritten).
        delta = PortDelta(new=[p for p in new if self.ports.get(p.id) is p],
                          gone=[p for p in gone if self.ports.get(p.id) is not p])
        return self.network.model_copy(update={"ports": list(self.ports.values())}), delta

    def reindex(self, gone: list[PortInfo], new: list[PortInfo]) -> None:
        """``by_address`` after ``gone`` ports were replaced by ``new`` ones (the others
        kept; ``ports`` already updated)."""
        for port in gone:
            for fixed in port.fixed_ips:
                if self.by_address.get(fixed.ip_address) is port:
                    del self.by_address[fixed.ip_address]
        for port in new:
            if port.id != self.dhcp_port.id:
                for fixed in port.fixed_ips:
                    self.by_address[fixed.ip_address] = port


@dataclass(frozen=True)
class PortDelta:
    """How a network's new snapshot differs from the one served: the ports whose files and
    leases may have to change. Port events name theirs (``ServedNetwork.changed``: a batch
    costs its own ports' work, not every port's); a snapshot from the server is compared
    object by object (``between``: every port, as none is kept)."""

    #: Ports of the new snapshot that the served one does not hold as the same object.
    new: list[PortInfo]
    #: Ports of the served snapshot that the new one does not hold as the same object.
    gone: list[PortInfo]

    @classmethod
    def between(cls, network: NetworkInfo, before: NetworkInfo) -> PortDelta:
        """By object identity: O(ports); for whole snapshots (a resync, a network event)."""
        kept = {id(p) for p in network.ports}
        held = {id(p) for p in before.ports}
        return cls(new=[p for p in network.ports if id(p) not in held],
                   gone=[p for p in before.ports if id(p) not in kept])


class DhcpAgentManager:
    """Serves ``DhcpAgentAPI`` (fanout topic ``dhcp_agent``) for ``host``."""

    METHODS = ("network_updated", "network_deleted", "port_updated", "port_deleted")

    def __init__(self, host: str, server: NetworkServerAPI, options: DhcpAgentOptions,
                 *, http_client: Callable[[], httpx.AsyncClient] | None = None) -> None:
        self.host = host
        self.server = server
        self.options = options
        self.networks: dict[str, ServedNetwork] = {}
        #: One per network ever seen, never dropped: a lock dropped while a task waits on
        #: it would let a second holder in beside that task.
        self._locks: dict[str, asyncio.Lock] = {}
        #: Network id → the port changes waiting for its lock (``_change``).
        self._queued: dict[str, list[tuple[str, PortInfo | None, asyncio.Future[None]]]] = {}
        #: A resync succeeded since the start.
        self._synced = False
        #: Network id → loop time of the last bus event about it.
        self._touched: dict[str, float] = {}
        self._periodic = Periodic(f"dhcp-agent {self.host}: heartbeat and resync",
                                  min(self.options.report_interval,
                                      self.options.resync_interval), self._heartbeat)
        #: Loop time when the next periodic resync is due.
        self._next_resync = 0.0
        self._client_factory = http_client or (lambda: httpx.AsyncClient(timeout=30.0))
        self._client: httpx.AsyncClient | None = None
        self.port_traces = PortTraces()
        #: Network id → how far its ``lease-events`` file has been read.
        self._lease_offsets: dict[str, int] = {}
        self._lease_reader = Periodic(f"dhcp-agent {self.host}: lease events", LEASE_POLL,
                                      self.read_leases)

    @staticmethod
    def _context() -> RequestContext:
        return RequestContext.for_service("dhcp-agent")

    def _lock(self, network_id: str) -> asyncio.Lock:
        return self._locks.setdefault(network_id, asyncio.Lock())

    def _directory(self, network_id: str) -> Path:
        return self.options.state_dir / network_id

    # Life cycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Report in, resync with the server, then heartbeat and resync periodically."""
        self.options.state_dir.mkdir(parents=True, exist_ok=True)
        await self.report(start=True)
        synced = True
        try:
            await self.resync()
        except MessagingError as exc:  # the server may not be up yet: the periodic resync
            LOG.warning("dhcp-agent %s: first resync failed (%s); will retry", self.host, exc)
            synced = False
        self._synced = synced
        self._next_resync = asyncio.get_running_loop().time() + self.options.resync_interval
        self._periodic.start()
        self._lease_reader.start()

    async def stop(self) -> None:
        """Stop the periodic work and remove every network's namespace, process and files."""
        await self._periodic.stop()
        await self._lease_reader.stop()
        try:
            await self.read_leases()  # the replies since the last read, before the files go
        except Exception:
            LOG.exception("dhcp-agent %s: lease events not read", self.host)

        async def remove(network_id: str) -> None:
            async with self._lock(network_id):
                await self._teardown(network_id)

        # All at once: a supervisor that stops this process gives it only so long.
        ids = list(self.networks)
        results = await asyncio.gather(*(remove(n) for n in ids), return_exceptions=True)
        for network_id, result in zip(ids, results, strict=True):
            if isinstance(result, BaseException):
                LOG.error("dhcp-agent %s: network %s not fully removed: %r", self.host,
                          network_id, result)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def report(self, *, start: bool = False) -> None:
        """Heartbeats: the DHCP agent's, and the metadata proxies' as Neutron's "Metadata
        agent" when they run (they live in this agent)."""
        ports = sum(len(s.network.ports) for s in self.networks.values())
        states = [AgentState(host=self.host, binary=BINARY, agent_type=AGENT_TYPE,
                             topic=DHCP_AGENT_TOPIC, start_flag=start,
                             availability_zone=self.options.availability_zone,
                             configurations={"networks": len(self.networks), "ports": ports,
                                             "dhcp_driver": "dnsmasq"})]
        if self.options.metadata_url:
            proxies = sum(1 for s in self.networks.values() if s.proxy is not None)
            states.append(AgentState(host=self.host, binary=METADATA_BINARY,
                                     agent_type=METADATA_AGENT_TYPE, topic="N/A",
                                     start_flag=start,
                                     configurations={"proxies": proxies,
                                                     "metadata_url": self.options.metadata_url}))
        for state in states:
            try:
                await self.server.report_state(self._context(), state)
            except MessagingError as exc:
                LOG.warning("dhcp-agent %s: heartbeat failed: %s", self.host, exc)

    async def _heartbeat(self) -> None:
        await self.report()
        # Until one resync succeeded (the server was not up yet), one per heartbeat.
        now = asyncio.get_running_loop().time()
        if now >= self._next_resync or not self._synced:
            self._next_resync = now + self.options.resync_interval
            await self.resync()
            self._synced = True

    async def resync(self) -> None:
        """Serve exactly the server's active networks; remove the rest, including networks
        an earlier run of this agent left state for.

        A network a bus event touched after the snapshot was asked for is left as the
        event made it: the event is newer than the snapshot."""
        began = self._clock()
        active = await self.server.get_active_networks(self._context(), self.host)
        wanted = {n.id for n in active}
        for network in active:
            if self._touched.get(network.id, -1.0) >= began:
                continue
            try:
                await self._apply(network)
            except Exception:  # one broken network must not keep the others unserved
                LOG.exception("dhcp-agent %s: network %s could not be served; the next "
                              "resync tries again", self.host, network.id)
        leftover = set(self.networks)
        if self.options.state_dir.is_dir():
            leftover |= {p.name for p in self.options.state_dir.iterdir() if p.is_dir()}
        for network_id in leftover - wanted:
            if self._touched.get(network_id, -1.0) >= began:
                continue
            LOG.info("dhcp-agent %s: network %s is no longer served", self.host, network_id)
            await self._remove(network_id, release=network_id in self.networks)
        horizon = began - 2 * self.options.resync_interval
        self._touched = {n: t for n, t in self._touched.items() if t >= horizon}

    def _touch(self, network_id: str) -> None:
        """Note that a bus event changed the network now (see ``resync``)."""
        self._touched[network_id] = self._clock()

    @staticmethod
    def _clock() -> float:
        return asyncio.get_running_loop().time()

    # Bus methods ------------------------------------------------------------------------------

    async def network_updated(self, ctx: RequestContext, network: NetworkInfo) -> None:
        self._touch(network.id)
        served = self.networks.get(network.id)
        if not network.ports and served is not None and served.network.ports:
            # A snapshot without ports would empty the hosts file: ask for the full one.
            fresh = await self.server.get_network(ctx, network.id)
            if fresh is None:
                await self._remove(network.id, release=True)
                return
            network = fresh
        await self._apply(network)

    async def network_deleted(self, ctx: RequestContext, network_id: str) -> None:
        self._touch(network_id)
        await self._remove(network_id, release=True)

    async def port_updated(self, ctx: RequestContext, port: PortInfo) -> None:
        self._touch(port.network_id)
        self.port_traces.port_changed(port)
        if port.network_id not in self.networks:
            network = await self.server.get_network(ctx, port.network_id)
            if network is not None:
                await self._apply(network)
            return
        await self._change(port.network_id, port.id, port)

    async def port_deleted(self, ctx: RequestContext, network_id: str, port_id: str) -> None:
        self._touch(network_id)
        self.port_traces.forget(port_id)
        await self._change(network_id, port_id, None)

    # Work -------------------------------------------------------------------------------------

    def lookup(self, network_id: str, address: str) -> PortInfo | None:
        served = self.networks.get(network_id)
        return served.by_address.get(address) if served is not None else None

    async def _apply(self, network: NetworkInfo) -> None:
        if not network.admin_state_up or not dnsmasq.dhcp_subnets(network):
            await self._remove(network.id, release=network.id in self.networks)
            return
        async with self._lock(network.id):
            served = self.networks.get(network.id)
            if served is None:
                await self._enable(network)
            else:
                await self._refresh(served, network)

    async def _change(self, network_id: str, port_id: str, port: PortInfo | None) -> None:
        """Make ``port`` the served network's port ``port_id`` (None: it has none), under
        the network's lock (concurrent port events each see the others' results), if the
        network is still served. The changes that queued while the lock was held are
        applied together, in their order, with one refresh (one write of the files, at most
        one reload of dnsmasq). A batch costs the work of its own ports: the other ports'
        objects are kept, and the network's port list is rebuilt from ``ServedNetwork.ports``
        without looking at them."""
        queued = self._queued.setdefault(network_id, [])
        applied = asyncio.get_running_loop().create_future()
        queued.append((port_id, port, applied))
        async with self._lock(network_id):
            if applied.done():  # an earlier holder applied it with its own
                return applied.result()
            batch = self._queued.pop(network_id)
            try:
                served = self.networks.get(network_id)
                if served is not None:
                    network, delta = served.changed([(i, p) for i, p, _ in batch])
                    try:
                        await self._refresh(served, network, delta=delta)
                    except BaseException:
                        served.index()  # ``ports`` back in step with ``network``
                        raise
            except BaseException as exc:
                for _, _, waiter in batch:
                    if waiter is not applied and not waiter.done():
                        waiter.set_exception(exc)
                raise
            for _, _, waiter in batch:
                if not waiter.done():
                    waiter.set_result(None)

    async def _enable(self, network: NetworkInfo) -> ServedNetwork:
        ctx = self._context()
        directory = self._directory(network.id)
        directory.mkdir(parents=True, exist_ok=True)
        dhcp_port = await self.server.ensure_dhcp_port(ctx, network.id, self.host)
        served = ServedNetwork(network=network, dhcp_port=dhcp_port,
                               process=dnsmasq.Dnsmasq(dhcp_namespace(network.id), directory),
                               hosts=dnsmasq.HostsDir(directory / dnsmasq.HOSTS_DIR))
        self.networks[network.id] = served
        # Names the veth's outer end for a clean-up after a crash (see _teardown_served).
        (directory / "dhcp_port").write_text(dhcp_port.id + "\n")
        # Replies an earlier run of this agent saw (a network adopted) were recorded then.
        self._lease_offsets[network.id] = await asyncio.to_thread(
            _size, directory / dnsmasq.LEASE_EVENTS)
        try:
            await self._refresh(served, network, fresh=True)
        except BaseException:
            # A half-made network leaves nothing behind; the next resync tries again.
            self.networks.pop(network.id, None)
            await self._teardown_served(served, network.id)
            raise
        LOG.info("dhcp-agent %s: serving network %s", self.host, network.id)
        return served

    async def _refresh(self, served: ServedNetwork, network: NetworkInfo, *,
                       fresh: bool = False, delta: PortDelta | None = None) -> None:
        """Make the kernel, files and processes match ``network``; ``delta``, when given,
        says which of its ports differ from the served ones (``ServedNetwork.changed``),
        else it is found by comparing them."""
        dhcp_port = served.dhcp_port
        subnets_before = {s.id for s in dnsmasq.dhcp_subnets(served.network)}
        subnets_now = {s.id for s in dnsmasq.dhcp_subnets(network)}
        covered = {f.subnet_id for f in dhcp_port.fixed_ips}
        if not fresh and not subnets_now <= covered:
            # A new DHCP subnet: the server gives the DHCP port an address on it.
            dhcp_port = await self.server.ensure_dhcp_port(self._context(), network.id,
                                                           self.host)
        rewire = (fresh or dhcp_port != served.dhcp_port or subnets_before != subnets_now
                  or network.mtu != served.network.mtu)
        given = delta is not None
        if delta is None and not fresh:
            delta = PortDelta.between(network, served.network)
        # Every port's lines are rendered again only when they may all have changed (the
        # served subnets or the DHCP port did); otherwise only the ports that changed.
        whole = fresh or dhcp_port != served.dhcp_port or subnets_before != subnets_now
        served.network, served.dhcp_port = network, dhcp_port
        if given and not whole:
            assert delta is not None
            served.reindex(delta.gone, delta.new)
        else:
            served.index()
        # The (MAC, address) pairs of ports gone or changed that no port holds now.
        released = set() if fresh or delta is None else dnsmasq.released_leases(
            delta.gone, served.by_address)
        namespace = dhcp_namespace(network.id)
        if rewire:
            await asyncio.to_thread(self._wire, network, dhcp_port,
                                    self.options.physical_bridges)
        directory = self._directory(network.id)
        write = functools.partial(self._write_files, directory, served.hosts, network,
                                  dhcp_port, None if whole else delta)
        if not whole and delta is not None \
                and len(delta.new) + len(delta.gone) <= INLINE_HOST_FILES:
            # A few small files (and ``opts`` read back): less work than handing them to a
            # thread, whose hop and the GIL's hand-over back cost the loop more than the
            # writes under a loaded machine (a create's batch is one or two ports).
            opts_changed, hosts = write()
        else:
            opts_changed, hosts = await asyncio.to_thread(write)
        args = dnsmasq.command(self.options.dnsmasq, directory, inner_device(dhcp_port.id),
                               network)
        restarted = False
        if released:
            restarted = await served.process.release(released)
        if served.process.pid is None or args != served.process.args:
            await served.process.start(args)
        elif not restarted and (opts_changed or hosts.needs_reload):
            # New files in hosts/ dnsmasq reads by itself; a removed or rewritten one, or a
            # change of options, only on a SIGHUP (a burst of deletes: one per batch).
            served.process.reload()
        if self.options.metadata_url and served.proxy is None:
            served.proxy = MetadataProxy(
                namespace, ProxyApp(network.id, functools.partial(self.lookup, network.id),
                                    self.options.metadata_url, self.options.metadata_secret,
                                    self._http(), parent_of=self.port_traces.parent),
                port=self.options.metadata_port)
            await served.proxy.start()

    # The guest's DHCP replies ----------------------------------------------------------------

    async def read_leases(self) -> None:
        """Record the DHCP replies dnsmasq reported since the last read, one span each."""
        offsets = {n: self._lease_offsets.get(n, 0) for n in self.networks}
        if not offsets:
            return
        read = await asyncio.to_thread(self._read_lease_files, offsets)
        for network_id, (events, offset) in read.items():
            served = self.networks.get(network_id)
            if served is None:
                continue
            self._lease_offsets[network_id] = offset
            for event in events:
                if event.is_reply(self.options.dnsmasq.lease_seconds):
                    self._record_reply(served, event)

    def _read_lease_files(self, offsets: dict[str, int]
                          ) -> dict[str, tuple[list[dnsmasq.LeaseEvent], int]]:
        read = {}
        for network_id, offset in offsets.items():
            try:
                read[network_id] = dnsmasq.read_lease_events(self._directory(network_id),
                                                             offset)
            except OSError as exc:  # the network being removed meanwhile
                LOG.debug("lease events of %s not read: %s", network_id, exc)
        return read

    def _record_reply(self, served: ServedNetwork, event: dnsmasq.LeaseEvent) -> None:
        port = next((p for p in served.network.ports if p.id == event.port_id), None) \
            or next((p for p in served.network.ports
                     if p.mac_address.lower() == event.mac), None)
        instance = port.device_id if port is not None \
            and port.device_owner.startswith("compute:") else None
        renewal = " (renewed)" if event.action == "old" else ""
        tracing.record("dhcp.reply", event.time_ns, event.time_ns,
                       parent=self.port_traces.parent(port), step="31", **{
                           tracing.SOURCE_ATTRIBUTE: "dnsmasq",
                           tracing.TARGET_ATTRIBUTE: "dhcp-agent",
                           tracing.WHAT_ATTRIBUTE: f"DHCP reply to {event.mac} "
                                                   f"{event.ip}{renewal}",
                           tracing.UNIT_ATTRIBUTE: "dhcp-agent",
                           tracing.INSTANCE_ATTRIBUTE: instance,
                           "stratus.port_id": port.id if port is not None else None,
                           "stratus.network_id": served.network.id,
                           "stratus.host": self.host})

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    @staticmethod
    def _wire(network: NetworkInfo, dhcp_port: PortInfo,
              physical_bridges: Mapping[str, str]) -> None:
        namespace = dhcp_namespace(network.id)
        # A mapped host bridge is never removed here (``_unwire`` only removes ``brq``).
        bridge = network_bridge(network, physical_bridges)
        linux.ensure_bridge(bridge)
        linux.ensure_namespace(namespace)
        linux.plug_veth(namespace, inner_device(dhcp_port.id), tap_name(dhcp_port.id), bridge,
                        dhcp_port.mac_address, network.mtu)
        linux.set_addresses(namespace, inner_device(dhcp_port.id),
                            dnsmasq.interface_addresses(network, dhcp_port))

    @staticmethod
    def _write_files(directory: Path, hosts: dnsmasq.HostsDir, network: NetworkInfo,
                     dhcp_port: PortInfo, delta: PortDelta | None
                     ) -> tuple[bool, dnsmasq.HostsChange]:
        """Write the lease script, ``opts`` and ``hosts/``: all of it when ``delta`` is None
        (the directory made to match ``network``, stale files removed), else the files of
        the ports ``delta`` names. Whether ``opts`` changed, and what ``hosts/`` did."""
        if delta is None:
            dnsmasq.write_lease_script(directory)
            # The single hosts file of agents before hosts/ (dnsmasq is restarted anyway:
            # its command line changed).
            (directory / "host").unlink(missing_ok=True)
            change = hosts.converge(dnsmasq.host_files(network, dhcp_port.id))
        else:
            served = dnsmasq.served_subnet_ids(network)
            files: dict[str, str | None] = {
                dnsmasq.host_file_name(p.id): None for p in delta.gone}
            for port in delta.new:
                files[dnsmasq.host_file_name(port.id)] = dnsmasq.port_hosts(
                    port, served, dhcp_port.id)
            change = hosts.apply(files)
        opts = dnsmasq.write_if_changed(directory / "opts",
                                        dnsmasq.opts_file(network, dhcp_port))
        return opts, change

    async def _remove(self, network_id: str, *, release: bool) -> None:
        async with self._lock(network_id):
            known = network_id in self.networks or self._directory(network_id).exists()
            await self._teardown(network_id)
            if release and known:
                try:
                    await self.server.release_dhcp_port(self._context(), network_id,
                                                        self.host)
                except MessagingError as exc:  # the network (and port) may be gone already
                    LOG.info("dhcp-agent %s: releasing the DHCP port of %s: %s", self.host,
                             network_id, exc)

    async def _teardown(self, network_id: str) -> None:
        # Still listed while it is being removed: it is gone from ``networks`` only when
        # nothing of it is left.
        await self._teardown_served(self.networks.get(network_id), network_id)
        self.networks.pop(network_id, None)

    async def _teardown_served(self, served: ServedNetwork | None, network_id: str) -> None:
        """Stop the proxy and dnsmasq, remove namespace, veth, bridge (when nothing else is in
        it) and files. Works from a state directory alone (after a crash)."""
        if served is not None:
            if served.proxy is not None:
                await served.proxy.stop()
            await served.process.stop()
        directory = self._directory(network_id)
        await dnsmasq.kill_stale(directory)
        outside = None
        if served is not None:
            outside = tap_name(served.dhcp_port.id)
        else:
            with contextlib.suppress(OSError):
                outside = tap_name((directory / "dhcp_port").read_text().strip())
        await asyncio.to_thread(self._unwire, network_id, outside)
        await asyncio.to_thread(shutil.rmtree, directory, True)
        self._lease_offsets.pop(network_id, None)
        if served is not None:
            LOG.info("dhcp-agent %s: network %s removed", self.host, network_id)

    @staticmethod
    def _unwire(network_id: str, outside: str | None) -> None:
        # The veth goes first: a namespace's devices are freed asynchronously after it is
        # removed, and the bridge must be seen empty right away.
        if outside is not None:
            linux.delete_link(outside)
        linux.delete_namespace(dhcp_namespace(network_id))
        bridge = bridge_name(network_id)
        if not linux.bridge_ports(bridge):
            linux.delete_link(bridge)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
