"""The l2-agent: wires ports into Linux bridges on the hosts it serves.

For a port bound to one of its hosts it makes the network's bridge (``brq<network[:11]>``)
if absent — on one host a flat network needs nothing else; with ``tunnel_ip`` set a
``vxlan`` network also gets a VXLAN device (``vxlan-<vni>``, learning off) in the bridge,
whose forwarding entries (where each remote MAC is, and the endpoints floods go to) are the
ones the server sends (``stratus.network.l2pop``: ``fdb_add``/``fdb_remove`` to every agent;
the whole set, ``get_fdb_entries``, on start and once a VXLAN device is made) — then a
persistent root-owned tap (``tap<port[:11]>``, the network's MTU) in the bridge, up, and
reports ``update_device_up``. A guest attaches to the tap later (libvirt
``<target dev=... managed='no'/>``).

One agent serves several host names (the all-in-one runs many compute hosts on one
machine): it listens on ``l2_agent.<host>`` for each and answers for each.

Taps outlive the agent. It records the ports it plugged (``state_file``); after a crash the
next start asks the server about each (``get_device_details``): still bound here, it is
plugged and reported up again; gone or bound elsewhere, its tap is removed. Then every port
the server says is bound here (``get_bound_ports``) is plugged. A clean ``stop`` unplugs all.

Security groups are enforced by the firewall driver (``firewall``: nftables, or noop where
``nft`` is missing or filtering is turned off): the ruleset of every filtered port is
rendered from the server's ``DeviceDetails`` and applied atomically whenever a port comes,
goes or changes, and when the server says groups changed (``security_groups_updated``: the
touched ports are fetched again, changes arriving together are applied together). A change
of members alone (a port created, deleted or re-addressed in a group) comes as the
addresses that joined or left (``security_group_members_changed``): the agent asks which of
those are members now (``get_group_members``, however many members the group has), puts
them in its ports' members, and the firewall adds or deletes those set elements without
rendering anything else; the full resync on start stays the source of truth. The
firewall's tables outlive the agent like the taps do: after a restart the old ruleset stays
in force until the first full resync has the server's current state, which then replaces it
in one transaction.

A binding and a group change travel on different queues (``port_bound`` to the host,
``security_groups_updated`` to every agent), so either may arrive first, and the details a
binding carries were read when the port was bound: a rule committed since may be missing
from them, and its notice may have come while the agent did not know the port yet. So a
bound port is filtered at once with what the binding carries, then fetched again like a
changed one. Answers are applied in the order their questions were asked
(:class:`~stratus.network.agents.ordering.AnswerOrder`; a binding counts as asked when it
arrives): a resync's list asked before a change never undoes it, nor plugs again a port
unbound meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stratus.core.bus import MessagingError, UnknownMethod
from stratus.core.context import RequestContext
from stratus.core.periodic import Periodic
from stratus.core.tracing import span
from stratus.network.agents import linux
from stratus.network.agents.l2.firewall import (
    Firewall,
    NftablesFirewall,
    NoopFirewall,
    filtered,
)
from stratus.network.agents.ordering import AnswerOrder
from stratus.network.objects import (
    DHCP_DEVICE_OWNER,
    L2_AGENT_TYPE,
    AgentState,
    DeviceDetails,
    FdbEntries,
    NetworkInfo,
    PortInfo,
    bridge_name,
    network_bridge,
    security_details,
    tap_name,
)
from stratus.network.rpcapi import L2_AGENT_TOPIC, NetworkServerAPI

LOG = logging.getLogger(__name__)

AGENT_TYPE = L2_AGENT_TYPE
BINARY = "stratus-l2-agent"


def vxlan_name(vni: int) -> str:
    return f"vxlan-{vni}"


@dataclass(frozen=True)
class L2AgentOptions:
    #: This host's VXLAN tunnel address; None keeps every network flat on one host.
    tunnel_ip: str | None = None
    report_interval: float = 10.0
    #: JSON record of the ports plugged here, read after a crash (None: not kept).
    state_file: Path | None = None
    #: ``network.physical_bridges``: mapped flat networks plug into these host bridges.
    physical_bridges: Mapping[str, str] = field(default_factory=dict)
    #: The nftables tables of the firewall (``inet``/``bridge`` <name>); None: no filtering.
    firewall_table: str | None = None
    nft: str = "nft"
    #: Seconds to gather security group changes before fetching and applying them.
    firewall_batch_delay: float = 0.02
    #: Seconds at least from one fetch-and-apply round to the next while changes keep
    #: coming (a burst of port creates in a group): what arrives meanwhile gathers into the
    #: next round, so the server is asked and the ruleset changed a few times a second
    #: however many creates there are, while a lone change still waits only
    #: ``firewall_batch_delay``. Each round asks the server (a bus call and a read) and
    #: works out the changed groups' sets whole (O(members)): at 0.1 s those rounds were a
    #: fifth of the server's CPU during a burst of creates; at 0.25 s a member still
    #: reaches the guests' sets well within the second the firewall is given.
    firewall_round_interval: float = 0.25
    #: Seconds between fetches of the whole set of VXLAN forwarding entries: a notice lost
    #: (a fanout sent while this agent's bus connection was down) is made good by then.
    fdb_resync_interval: float = 60.0


def make_firewall(options: L2AgentOptions) -> Firewall:
    """nftables when a table is configured and ``nft`` is there, else no filtering (said)."""
    if options.firewall_table:
        firewall = NftablesFirewall(table=options.firewall_table, nft=options.nft)
        if firewall.available():
            LOG.info("l2-agent: security groups enforced with nftables (tables %s, applied "
                     "with %s)", options.firewall_table, firewall.runner)
            return firewall
        LOG.warning("l2-agent: neither libnftables nor %s found; security groups are NOT "
                    "enforced", options.nft)
    else:
        LOG.warning("l2-agent: firewall off; security groups are NOT enforced")
    return NoopFirewall()


class L2AgentManager:
    """Plugs and unplugs taps for ``hosts``; :meth:`endpoint` gives each host's bus manager."""

    METHODS = ("port_bound", "port_unbound", "network_deleted", "security_groups_updated",
               "security_group_members_changed", "fdb_add", "fdb_remove")

    def __init__(self, hosts: Sequence[str], server: NetworkServerAPI,
                 options: L2AgentOptions | None = None) -> None:
        if not hosts:
            raise ValueError("an l2-agent serves at least one host")
        self.hosts = list(hosts)
        self.server = server
        self.options = options or L2AgentOptions()
        #: port id → (host, network id) of the taps this agent plugged.
        self.ports: dict[str, tuple[str, str]] = {}
        self._lock = asyncio.Lock()
        #: Hosts whose resync with the server succeeded since the start.
        self._synced: set[str] = set()
        self._periodic = Periodic("l2-agent: heartbeat and resync", self.options.report_interval,
                                  self._heartbeat)
        self.firewall: Firewall = make_firewall(self.options)
        #: False until a full resync gave the server's state: until then the ruleset an
        #: earlier run left stays in force untouched.
        self._firewall_live = False
        #: Ports whose security the server says changed, fetched again in one batch: whole,
        #: and (``_refresh_security``) only their groups' rules and members.
        self._refresh_ports: set[str] = set()
        self._refresh_security: set[str] = set()
        #: Group id → addresses whose membership changed: asked about (only they) in the
        #: same batch.
        self._refresh_members: dict[str, set[str]] = {}
        self._refresh_task: asyncio.Task[None] | None = None
        #: When the last round of fetching and applying began (``loop.time()``).
        self._round_started = -float("inf")
        #: Numbers the questions to the server; per port, the answer in force.
        self._order = AnswerOrder()
        #: Keeps the VXLAN forwarding entries' changes in the order they came.
        self._fdb_lock = asyncio.Lock()
        self._fdb_synced_at = time.monotonic()

    def endpoint(self, host: str) -> L2HostEndpoint:
        return L2HostEndpoint(self, host)

    @staticmethod
    def _context() -> RequestContext:
        return RequestContext.for_service("l2-agent")

    # Life cycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Report in for every host; settle the ports an earlier run left plugged (still
        bound here: plugged and reported up again; gone or moved: unplugged); plug what
        the server says is bound here; then heartbeat."""
        await self.report(start=True)
        await self._recover()
        await self._resync_pending()
        self._periodic.start()

    async def _resync_pending(self) -> None:
        """Resync each host not resynced yet (the server may not have been up); once all
        are, the firewall applies the server's state (replacing what an earlier run left)."""
        for host in self.hosts:
            if host in self._synced:
                continue
            try:
                await self.resync(host)
                await self.resync_fdb(host)
                self._synced.add(host)
            except MessagingError as exc:
                LOG.warning("l2-agent %s: resync failed (%s); will retry", host, exc)
        if not self._firewall_live and self._synced == set(self.hosts):
            self._firewall_live = True
            await self._apply_firewall()
            LOG.info("l2-agent: firewall applied for %d filtered ports",
                     len(self.firewall.ports))

    async def stop(self, *, unplug: bool = True) -> None:
        """Stop reporting; with ``unplug``, remove the taps (and emptied bridges) made here,
        except those a guest still holds open (a guest that outlives this process keeps its
        network; the tap stays recorded, for the next start)."""
        await self._periodic.stop()
        if self._refresh_task is not None:
            self._refresh_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh_task
        if unplug:
            async with self._lock:
                for port_id, (host, network_id) in list(self.ports.items()):
                    link = await asyncio.to_thread(linux.get_link, tap_name(port_id))
                    if link is not None and link.kind == "tun" and link.carrier:
                        LOG.info("l2-agent %s: %s is in use by a guest; left plugged", host,
                                 link.name)
                        continue
                    await asyncio.to_thread(self._unplug, port_id, network_id)
                    del self.ports[port_id]
                    self.firewall.remove_port(port_id)
                await self._save()
                if self._firewall_live:
                    await self._apply_firewall()

    async def _save(self) -> None:
        path = self.options.state_file
        if path is None:
            return
        records = {p: {"host": h, "network_id": n} for p, (h, n) in self.ports.items()}
        await asyncio.to_thread(_write_json, path, records)

    async def _recover(self) -> None:
        path = self.options.state_file
        if path is None:
            return
        try:
            records = await asyncio.to_thread(_read_json, path)
        except (OSError, ValueError) as exc:
            LOG.warning("l2-agent: cannot read %s (%s); nothing to recover", path, exc)
            return
        ctx = self._context()
        for port_id, record in records.items():
            host, network_id = str(record.get("host", "")), str(record.get("network_id", ""))
            details = None
            asked = self._order.ask()
            if host in self.hosts:
                try:
                    details = await self.server.get_device_details(ctx, port_id, host)
                except MessagingError as exc:
                    LOG.warning("l2-agent %s: port %s left as it is (%s)", host, port_id, exc)
                    self.ports[port_id] = (host, network_id)
                    continue
            if details is not None and details.port.binding_host_id in ("", host):
                try:
                    await self.port_bound(ctx, host, details, as_of=asked)
                except Exception:  # one port must not keep the agent from starting
                    LOG.exception("l2-agent %s: port %s could not be plugged again", host,
                                  port_id)
            else:
                LOG.info("l2-agent: port %s is no longer bound to %s; unplugging it", port_id,
                         host)
                async with self._lock:
                    if not self._order.outdated(port_id, asked):
                        await asyncio.to_thread(self._unplug, port_id, network_id)
                        self.firewall.remove_port(port_id)
        await self._save()

    async def report(self, *, start: bool = False) -> None:
        for host in self.hosts:
            devices = sum(1 for h, _ in self.ports.values() if h == host)
            state = AgentState(host=host, binary=BINARY, agent_type=AGENT_TYPE,
                               topic=L2_AGENT_TOPIC, start_flag=start,
                               configurations={"devices": devices,
                                               "tunnel_ip": self.options.tunnel_ip,
                                               "tunnel_types": ["vxlan"]
                                               if self.options.tunnel_ip else []})
            try:
                await self.server.report_state(self._context(), state)
            except MessagingError as exc:
                LOG.warning("l2-agent %s: heartbeat failed: %s", host, exc)

    async def _heartbeat(self) -> None:
        await self.report()
        await self._resync_pending()
        if (self.options.tunnel_ip and time.monotonic() - self._fdb_synced_at
                >= self.options.fdb_resync_interval):
            self._fdb_synced_at = time.monotonic()
            for host in self._synced:
                try:
                    await self.resync_fdb(host)
                except MessagingError as exc:
                    LOG.warning("l2-agent %s: forwarding entries not fetched (%s)", host, exc)

    async def resync(self, host: str) -> None:
        """Plug again every port bound to ``host`` whose tap is missing (after a restart)."""
        ctx = self._context()
        asked = self._order.ask()
        try:
            bound = await self.server.get_bound_ports(ctx, host)
        except UnknownMethod as exc:
            LOG.warning("l2-agent %s: the server cannot list bound ports (%s)", host, exc)
            return
        for details in bound:
            try:
                await self.port_bound(ctx, host, details, as_of=asked)
            except Exception:  # one port must not keep the others unplugged
                LOG.exception("l2-agent %s: port %s could not be plugged", host,
                              details.port.id)

    async def resync_fdb(self, host: str) -> None:
        """Make the VXLAN forwarding entries of ``host``'s networks the server's."""
        if not self.options.tunnel_ip:
            return
        try:
            entries = await self.server.get_fdb_entries(self._context(), host)
        except UnknownMethod as exc:
            LOG.warning("l2-agent %s: the server gives no forwarding entries (%s)", host, exc)
            return
        await self.fdb_sync(entries)

    # Work -------------------------------------------------------------------------------------

    async def port_bound(self, ctx: RequestContext, host: str, details: DeviceDetails, *,
                         as_of: int | None = None) -> None:
        """Filter and plug the port, then report it up. ``as_of`` numbers the question
        ``details`` answers; without it they came with the binding (read by the server when
        it bound the port, maybe before a group change it has sent since): the port is
        fetched again once plugged."""
        port, network = details.port, details.network
        pushed = as_of is None
        as_of = self._order.ask() if as_of is None else as_of
        async with self._lock:
            if self._order.outdated(port.id, as_of):
                LOG.debug("l2-agent %s: an outdated state of port %s ignored", host, port.id)
                return
            # Filtered before the tap is up: the guest never sees an open port. The spans
            # show what of a build's wait for network-vif-plugged is this agent's.
            if self._track(details):
                with span("l2.firewall"):
                    await self._apply_firewall()
            with span("l2.plug"):
                made_vxlan = await asyncio.to_thread(self._plug, port, network)
            self.ports[port.id] = (host, network.id)
            with span("l2.save"):
                await self._save()
        LOG.info("l2-agent %s: port %s plugged (%s in %s)", host, port.id, tap_name(port.id),
                 network_bridge(network, self.options.physical_bridges))
        if pushed:
            self._schedule_refresh({port.id})
        await self.server.update_device_up(ctx, port.id, host)
        if made_vxlan:
            # Notices about this network sent before the device existed were dropped here;
            # now that the port is up the server counts this host in.
            try:
                await self.resync_fdb(host)
            except MessagingError as exc:  # the next start's resync asks again
                LOG.warning("l2-agent %s: forwarding entries not fetched (%s)", host, exc)

    async def port_unbound(self, ctx: RequestContext, host: str, port_id: str,
                           network_id: str) -> None:
        asked = self._order.ask()
        async with self._lock:
            self._order.outdated(port_id, asked)  # newer than any answer in flight
            owner = self.ports.get(port_id)
            if owner is not None and owner[0] != host:
                # The port moved to another host this agent also serves, and that host's
                # port_bound came first: the tap is theirs now.
                LOG.info("l2-agent %s: port %s is now plugged for %s; tap kept", host,
                         port_id, owner[0])
            else:
                await asyncio.to_thread(self._unplug, port_id, network_id)
                self.ports.pop(port_id, None)
                if self.firewall.remove_port(port_id):
                    await self._apply_firewall()
                await self._save()
                LOG.info("l2-agent %s: port %s unplugged", host, port_id)
        await self.server.update_device_down(ctx, port_id, host)

    async def network_deleted(self, ctx: RequestContext, network_id: str) -> None:
        asked = self._order.ask()
        async with self._lock:
            for port_id, (_, net) in list(self.ports.items()):
                if net == network_id:
                    self._order.outdated(port_id, asked)
                    await asyncio.to_thread(linux.delete_link, tap_name(port_id))
                    del self.ports[port_id]
                    self.firewall.remove_port(port_id)
            await asyncio.to_thread(self._drop_bridge, network_id, True)
            await self._apply_firewall()
            await self._save()

    # VXLAN forwarding entries (the server's ``l2pop``) ---------------------------------------

    async def fdb_add(self, entries: FdbEntries) -> None:
        await self._fdb(entries, "add")

    async def fdb_remove(self, entries: FdbEntries) -> None:
        await self._fdb(entries, "remove")

    async def fdb_sync(self, entries: FdbEntries) -> None:
        """These networks' entries become exactly ``entries`` (stale ones go)."""
        await self._fdb(entries, "sync")

    async def _fdb(self, entries: FdbEntries, mode: str) -> None:
        if not self.options.tunnel_ip:
            return
        async with self._fdb_lock:
            for network_id, network in entries.networks.items():
                wanted = {(mac, ip) for ip, macs in network.endpoints.items()
                          if ip != self.options.tunnel_ip for mac in macs}
                device = vxlan_name(network.segmentation_id)
                try:
                    changed = await asyncio.to_thread(_change_fdb, device, wanted, mode)
                except Exception:  # one network must not keep the others' entries back
                    LOG.exception("l2-agent: forwarding entries of %s not changed", device)
                    continue
                if changed:
                    LOG.info("l2-agent: %s forwarding entries of network %s (%s): %s", mode,
                             network_id, device, sorted(wanted))

    # The firewall -----------------------------------------------------------------------------

    def _track(self, details: DeviceDetails) -> bool:
        """Keep the firewall's view of the port; True when the ruleset must change."""
        if filtered(details):
            if self.firewall.ports.get(details.port.id) == details:
                return False
            self.firewall.set_port(details)
            return True
        return self.firewall.remove_port(details.port.id)

    async def _apply_firewall(self) -> None:
        if not self._firewall_live:
            return
        try:
            await self.firewall.apply()
        except Exception:  # the old ruleset stays; the next change or resync tries again
            LOG.exception("l2-agent: the firewall could not be applied")

    async def security_groups_updated(self, ctx: RequestContext, security_group_ids: list[str],
                                      port_ids: list[str]) -> None:
        """Fetch again (soon, in one batch with changes arriving meanwhile) what the change
        touches, and apply: the ports it names whole, and for the other ports that use or
        name the groups only their groups (one question for all of them)."""
        groups = set(security_group_ids)
        named = {p for p in port_ids if p in self.ports}
        users: set[str] = set()
        for port_id, details in self.firewall.ports.items():
            used = set(details.port.security_group_ids) | set(details.remote_group_members)
            if used & groups:
                users.add(port_id)
        self._schedule_refresh(named, security=users - named)

    async def security_group_members_changed(self, ctx: RequestContext,
                                             members: dict[str, list[str]]) -> None:
        """These addresses joined or left these groups: ask (soon, in one batch with the
        changes arriving meanwhile) which of them are members now, for the groups our
        ports' rules name as remote group, and change only those elements of the sets."""
        named: set[str] = set()
        for details in self.firewall.ports.values():
            named.update(details.remote_group_members)
        touched = {g: set(a) for g, a in members.items() if g in named and a}
        self._schedule_refresh(set(), members=touched)

    def _schedule_refresh(self, port_ids: set[str], *, security: set[str] | None = None,
                          members: dict[str, set[str]] | None = None) -> None:
        """``port_ids`` are fetched again whole, ``security`` only their groups, and of
        ``members``' groups only whether those addresses are members."""
        if not port_ids and not security and not members:
            return
        self._refresh_ports |= port_ids
        self._refresh_security |= security or set()
        for group_id, addresses in (members or {}).items():
            self._refresh_members.setdefault(group_id, set()).update(addresses)
        if self._refresh_task is None or self._refresh_task.done():
            self._refresh_task = asyncio.create_task(self._refresh())

    async def settled(self) -> None:
        """Wait until the security group changes received so far are applied."""
        while self._refresh_task is not None and not self._refresh_task.done():
            await asyncio.shield(self._refresh_task)

    async def _refresh(self) -> None:
        loop = asyncio.get_running_loop()
        while self._refresh_ports or self._refresh_security or self._refresh_members:
            # Not sooner than a round interval after the last round began: under a stream
            # of changes a round takes all that came meanwhile.
            next_round = self._round_started + self.options.firewall_round_interval
            await asyncio.sleep(max(self.options.firewall_batch_delay,
                                    next_round - loop.time()))
            self._round_started = loop.time()
            await self._refresh_round()

    async def _refresh_round(self) -> None:
        """Fetch and apply what the changes gathered so far touch."""
        wanted, self._refresh_ports = self._refresh_ports, set()
        security, self._refresh_security = self._refresh_security - wanted, set()
        members, self._refresh_members = self._refresh_members, {}
        ctx = self._context()
        changed = False
        for port_id in sorted(wanted):
            owner = self.ports.get(port_id)
            if owner is None:  # not plugged (yet: once plugged it is fetched again)
                continue
            asked = self._order.ask()
            try:
                details = await self.server.get_device_details(ctx, port_id, owner[0])
            except MessagingError as exc:
                LOG.warning("l2-agent: port %s not refreshed (%s)", port_id, exc)
                continue
            async with self._lock:
                if self._order.outdated(port_id, asked):
                    continue
                if details is None or port_id not in self.ports:
                    changed |= self.firewall.remove_port(port_id)
                else:
                    changed |= self._track(details)
        if security:
            changed |= await self._refresh_security_of(ctx, security)
        if members:
            changed |= await self._refresh_members_of(ctx, members)
        if changed:
            async with self._lock:
                await self._apply_firewall()

    async def _refresh_security_of(self, ctx: RequestContext, port_ids: set[str]) -> bool:
        """Fetch again the groups of these plugged, filtered ports (whose own state did not
        change), once for all of them, and track each port with them; True when the
        ruleset must change."""
        ports = sorted(p for p in port_ids if p in self.ports and p in self.firewall.ports)
        group_ids = sorted({g for p in ports
                            for g in self.firewall.ports[p].port.security_group_ids})
        if not ports:
            return False
        asked = self._order.ask()
        try:
            groups = await self.server.get_security_groups(ctx, group_ids)
        except MessagingError as exc:
            LOG.warning("l2-agent: security groups %s not refreshed (%s)", group_ids, exc)
            return False
        changed = False
        async with self._lock:
            for port_id in ports:
                details = self.firewall.ports.get(port_id)
                if details is None or port_id not in self.ports:
                    continue  # unplugged or unfiltered meanwhile: nothing to refresh
                if self._order.outdated(port_id, asked):
                    continue
                changed |= self._track(security_details(details, groups))
        return changed

    async def _refresh_members_of(self, ctx: RequestContext,
                                  touched: dict[str, set[str]]) -> bool:
        """Ask which of the ``touched`` addresses are members of their groups now, and put
        them in (or take them out of) the members every filtered port has of those groups;
        True when the ruleset must change. The firewall then adds and deletes those set
        elements alone."""
        asked = self._order.ask()
        try:
            present = await self.server.get_group_members(
                ctx, {g: sorted(a) for g, a in sorted(touched.items())})
        except UnknownMethod:  # an older server: fetch the groups whole instead
            users = {p for p, d in self.firewall.ports.items()
                     if touched.keys() & d.remote_group_members.keys()}
            return await self._refresh_security_of(ctx, users)
        except MessagingError as exc:
            LOG.warning("l2-agent: members of %s not refreshed (%s)", sorted(touched), exc)
            return False
        now = {g: set(present.get(g, ())) for g in touched}
        changed = False
        async with self._lock:
            for port_id, details in list(self.firewall.ports.items()):
                groups = touched.keys() & details.remote_group_members.keys()
                if not groups or port_id not in self.ports:
                    continue
                if self._order.outdated(port_id, asked):
                    continue
                update: dict[str, list[str]] = {}
                for group_id in groups:
                    # Set operations over the whole group, not a Python loop: this runs
                    # after every burst of creates in a group of hundreds of members.
                    before = set(details.remote_group_members[group_id])
                    after = before.difference(touched[group_id])
                    after |= now[group_id]
                    if after != before:
                        update[group_id] = sorted(after)
                if update:
                    changed |= self._track(details.model_copy(update={
                        "remote_group_members": {**details.remote_group_members, **update}}))
        return changed

    def _plug(self, port: PortInfo, network: NetworkInfo) -> bool:
        """Wire the port; True when the network's VXLAN device was made for it. A DHCP
        port's device is the dhcp-agent's veth, which that agent puts in the bridge: only
        the bridge and VXLAN device are made for it."""
        # A mapped host bridge (``br-ex``) is never removed here: ``_drop_bridge`` only
        # removes a network's own ``brq`` bridge.
        bridge = network_bridge(network, self.options.physical_bridges)
        linux.ensure_bridge(bridge)
        made = False
        if (network.network_type == "vxlan" and self.options.tunnel_ip
                and network.segmentation_id is not None):
            name = vxlan_name(network.segmentation_id)
            made = linux.get_link(name) is None
            # No learning: the server's entries say where every port is (``l2pop``).
            linux.ensure_vxlan(name, network.segmentation_id, self.options.tunnel_ip, bridge,
                               network.mtu, learning=False)
        if port.device_owner != DHCP_DEVICE_OWNER:
            linux.ensure_tap(tap_name(port.id), bridge, network.mtu)
        return made

    def _unplug(self, port_id: str, network_id: str) -> None:
        link = linux.get_link(tap_name(port_id))
        # Only our taps: a veth of that name is a DHCP port, which its agent removes.
        if link is not None and link.kind == "tun":
            linux.delete_link(link.name)
        self._drop_bridge(network_id, False)

    @staticmethod
    def _drop_bridge(network_id: str, force: bool) -> None:
        """Remove the network's bridge (and VXLAN device) once only they remain, or always
        with ``force`` (the network is gone)."""
        bridge = bridge_name(network_id)
        ports = linux.bridge_ports(bridge)
        others = [p for p in ports if p.kind != "vxlan"]
        if others and not force:
            return
        for port in ports:
            if port.kind == "vxlan":
                linux.delete_link(port.name)
        linux.delete_link(bridge)


def _change_fdb(device: str, wanted: set[tuple[str, str]], mode: str) -> bool:
    """Apply ``wanted`` (MAC, tunnel IP) entries to ``device`` by ``mode`` (add, remove or
    sync); False when this host has no such device (no port of that network here)."""
    if linux.get_link(device) is None:
        return False
    if mode == "add":
        return linux.fdb_change(device, wanted, set())
    if mode == "remove":
        return linux.fdb_change(device, set(), wanted)
    present = linux.fdb_remote(device)
    return linux.fdb_change(device, wanted - present, present - wanted)


def _write_json(path: Path, content: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(content, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, dict[str, object]]:
    if not path.exists():
        return {}
    loaded = json.loads(path.read_text())
    if not isinstance(loaded, dict):
        raise ValueError("not a JSON object")
    return {str(k): v for k, v in loaded.items() if isinstance(v, dict)}


class L2HostEndpoint:
    """The bus manager of one host the agent serves (``l2_agent.<host>``)."""

    METHODS = L2AgentManager.METHODS

    def __init__(self, agent: L2AgentManager, host: str) -> None:
        self.agent = agent
        self.host = host

    async def port_bound(self, ctx: RequestContext, details: DeviceDetails) -> None:
        await self.agent.port_bound(ctx, self.host, details)

    async def port_unbound(self, ctx: RequestContext, port_id: str, network_id: str) -> None:
        await self.agent.port_unbound(ctx, self.host, port_id, network_id)

    async def network_deleted(self, ctx: RequestContext, network_id: str) -> None:
        await self.agent.network_deleted(ctx, network_id)

    async def security_groups_updated(self, ctx: RequestContext, security_group_ids: list[str],
                                      port_ids: list[str]) -> None:
        await self.agent.security_groups_updated(ctx, security_group_ids, port_ids)

    async def security_group_members_changed(self, ctx: RequestContext,
                                             members: dict[str, list[str]]) -> None:
        await self.agent.security_group_members_changed(ctx, members)

    async def fdb_add(self, ctx: RequestContext, entries: FdbEntries) -> None:
        await self.agent.fdb_add(entries)

    async def fdb_remove(self, ctx: RequestContext, entries: FdbEntries) -> None:
        await self.agent.fdb_remove(entries)

