"""One dnsmasq per network: its files (pure functions of the network snapshot) and its process.

Files, in ``<dhcp_state_dir>/<network id>/``:

* ``hosts/<port id>``: the ``dhcp-host`` lines of one port, one per fixed IPv4 address on a
  served subnet (MAC, IP, hostname); the directory is dnsmasq's ``--dhcp-hostsdir``;
* ``opts``: per-subnet options (router, DNS servers, MTU, classless static routes 121/249);
* ``leases``, ``pid``, ``dnsmasq.log``: dnsmasq's own;
* ``lease-script``: what dnsmasq runs on each lease change (``--dhcp-script``); it appends a
  line to ``lease-events`` for each lease given or renewed, which the agent reads to record
  the DHCP reply in the guest's trace (``read_lease_events``).

dnsmasq watches ``hosts/`` with inotify (``IN_CLOSE_WRITE``, ``IN_MOVED_TO``) and reads a new
or changed file there by itself: a port added costs one small file and no signal, however
many ports the network has. It only ever *adds* what it reads that way (dnsmasq(8),
``--dhcp-hostsdir``): a file removed, or rewritten with other lines, leaves its old entries
in force until a SIGHUP, which re-reads ``opts`` and the whole directory. So a port deleted
or changed costs a SIGHUP (``HostsDir`` says when one is due), a port added none. Files are
replaced by a rename from a dotfile in the same directory: dnsmasq ignores dotfiles, and the
rename is one ``IN_MOVED_TO`` of a complete file. A change of the command line (a subnet
added or removed) needs a restart. Addresses are static: dnsmasq answers only MACs it knows.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import shlex
import signal
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Network, ip_network
from pathlib import Path

from stratus.network.agents import linux
from stratus.network.objects import (
    DHCP_DEVICE_OWNER,
    METADATA_ADDRESS,
    NetworkInfo,
    PortInfo,
    SubnetInfo,
)

LOG = logging.getLogger(__name__)

_HOSTNAME_OK = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")

#: The ``--dhcp-hostsdir`` in a network's state directory: one file per port.
HOSTS_DIR = "hosts"


def dhcp_subnets(network: NetworkInfo) -> list[SubnetInfo]:
    """The subnets dnsmasq serves: IPv4 with DHCP enabled."""
    return [s for s in network.subnets if s.enable_dhcp and s.ip_version == 4]


def subnet_tag(subnet: SubnetInfo) -> str:
    return f"subnet-{subnet.id}"


def port_hostname(port: PortInfo, address: str) -> str:
    """The port's ``hostname`` when it is a valid DNS label, else ``host-<ip with dashes>``."""
    name = port.hostname.strip().lower()
    if _HOSTNAME_OK.match(name):
        return name
    return "host-" + address.replace(".", "-").replace(":", "-")


def served_subnet_ids(network: NetworkInfo) -> frozenset[str]:
    return frozenset(s.id for s in dhcp_subnets(network))


def port_hosts(port: PortInfo, served: frozenset[str], dhcp_port_id: str) -> str:
    """The port's ``<mac>,<ip>,<hostname>`` lines, one per fixed IP on a served subnet, in
    the order of its addresses; '' for the DHCP port and a port with none.

    No ``set:`` tag: dnsmasq (2.86 to 2.90 at least, Debian's 2.90 here) frees a host's tag
    wrongly on a SIGHUP while that host holds a lease, and crashes (SIGSEGV); the agent
    finds a lease's port by its MAC instead."""
    if port.id == dhcp_port_id or port.device_owner == DHCP_DEVICE_OWNER:
        return ""
    mac = port.mac_address.lower()
    return "".join(f"{mac},{fixed.ip_address},"
                   f"{port_hostname(port, fixed.ip_address)}\n"
                   for fixed in port.fixed_ips if fixed.subnet_id in served)


_FILE_NAME_OK = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_-]{0,127}$")


def host_file_name(port_id: str) -> str:
    """The port's file in ``hosts/``: its id, which the server makes a UUID. Anything else
    (a dotfile, a path) gets a digest, so no id can name a file outside the directory or one
    dnsmasq skips."""
    if _FILE_NAME_OK.match(port_id):
        return port_id
    return "port-" + hashlib.sha256(port_id.encode()).hexdigest()[:32]


def host_files(network: NetworkInfo, dhcp_port_id: str) -> dict[str, str]:
    """What ``hosts/`` holds for ``network``: file name → that port's lines, for every port
    that has any (``port_hosts``)."""
    served = served_subnet_ids(network)
    files = {}
    for port in network.ports:
        if content := port_hosts(port, served, dhcp_port_id):
            files[host_file_name(port.id)] = content
    return files


@dataclass
class HostsChange:
    """What a write did to ``hosts/``: files made, files rewritten with other lines, files
    removed (names)."""

    added: list[str] = field(default_factory=list)
    rewritten: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    @property
    def needs_reload(self) -> bool:
        """dnsmasq drops entries only on a SIGHUP: one is due when a file went or changed."""
        return bool(self.rewritten or self.removed)

    def __bool__(self) -> bool:
        return bool(self.added or self.rewritten or self.removed)


class HostsDir:
    """``hosts/``, the ``--dhcp-hostsdir`` of a network's dnsmasq, and what it holds.

    The agent is the directory's only writer, so what it holds is kept in memory (``files``)
    and a change compares only the files it names. ``converge`` (a network served anew, or
    adopted after a restart) reads the directory once and makes it exactly what it is
    given. Blocking file I/O: run in a thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        #: File name → content, as on disk; None until read (``converge``).
        self.files: dict[str, str] | None = None

    def _read(self) -> dict[str, str]:
        self.path.mkdir(parents=True, exist_ok=True)
        found = {}
        for entry in os.scandir(self.path):
            if entry.name.startswith("."):  # a write cut short by a crash: never read
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                continue
            try:
                found[entry.name] = Path(entry.path).read_text()
            except (OSError, UnicodeDecodeError):
                found[entry.name] = "\0"  # unreadable: rewritten or removed below
        return found

    def _remove(self, name: str) -> None:
        """Move the file out of the directory, then delete it: dnsmasq (2.90) answers an
        ``IN_DELETE`` in its directory by reading the file gone ("cannot read" in its log),
        while a move out (``IN_MOVED_FROM``) is not among the events it watches. Either way
        its entries stay until the SIGHUP that ``HostsChange.needs_reload`` asks for."""
        out = self.path.parent / f".{self.path.name}-removed-{name}"
        try:
            os.replace(self.path / name, out)
        except FileNotFoundError:
            return
        out.unlink(missing_ok=True)

    def converge(self, wanted: dict[str, str]) -> HostsChange:
        """Make the directory hold exactly ``wanted`` (file name → content): stale files
        removed, missing or different ones written."""
        self.files = self._read()
        changes: dict[str, str | None] = {n: None for n in self.files if n not in wanted}
        changes.update(wanted)
        return self.apply(changes)

    def apply(self, changes: dict[str, str | None]) -> HostsChange:
        """Write each named file's content (None or '': remove it); files not named are
        left alone."""
        if self.files is None:
            self.files = self._read()
        done = HostsChange()
        for name, content in changes.items():
            held = self.files.get(name)
            if not content:
                if held is None:
                    continue
                self._remove(name)
                del self.files[name]
                done.removed.append(name)
                continue
            if held == content:
                continue
            tmp = self.path / f".{name}.tmp"
            tmp.write_text(content)
            os.replace(tmp, self.path / name)
            self.files[name] = content
            (done.added if held is None else done.rewritten).append(name)
        return done


def _static_routes(subnet: SubnetInfo, dhcp_address: str | None) -> list[tuple[str, str]]:
    """(destination, next hop) pairs for options 121/249: the metadata address via the DHCP
    port, the subnet's host routes, then the default route via the gateway (a client that
    gets option 121 ignores option 3, so the default route must be in it too)."""
    routes: list[tuple[str, str]] = []
    if dhcp_address is not None:
        routes.append((f"{METADATA_ADDRESS}/32", dhcp_address))
    has_default = False
    for route in subnet.host_routes:
        destination = ip_network(route.destination, strict=False)
        if destination.version != 4:
            continue
        if destination.prefixlen == 0:
            has_default = True
        if destination == IPv4Network(f"{METADATA_ADDRESS}/32"):
            continue
        routes.append((str(destination), route.nexthop))
    if subnet.gateway_ip and not has_default:
        routes.append(("0.0.0.0/0", subnet.gateway_ip))
    return routes


def opts_file(network: NetworkInfo, dhcp_port: PortInfo) -> str:
    """``tag:subnet-<id>,<option>,<value>`` lines for every served subnet."""
    by_subnet = {f.subnet_id: f.ip_address for f in dhcp_port.fixed_ips}
    lines = []
    for subnet in dhcp_subnets(network):
        tag = f"tag:{subnet_tag(subnet)}"
        if subnet.gateway_ip:
            lines.append(f"{tag},option:router,{subnet.gateway_ip}")
        else:
            lines.append(f"{tag},option:router")  # an empty option: no router
        if subnet.dns_nameservers:
            lines.append(f"{tag},option:dns-server,{','.join(subnet.dns_nameservers)}")
        lines.append(f"{tag},option:mtu,{network.mtu}")
        routes = _static_routes(subnet, by_subnet.get(subnet.id))
        if routes:
            pairs = ",".join(f"{dst},{hop}" for dst, hop in routes)
            lines.append(f"{tag},option:classless-static-route,{pairs}")
            lines.append(f"{tag},249,{pairs}")  # the same, for older Windows clients
    return "".join(line + "\n" for line in lines)


def interface_addresses(network: NetworkInfo, dhcp_port: PortInfo) -> list[str]:
    """The DHCP port's addresses in CIDR form (prefix of their subnet), plus the metadata
    address the proxy listens on."""
    cidrs = {s.id: ip_network(s.cidr) for s in network.subnets}
    addresses = []
    for fixed in dhcp_port.fixed_ips:
        subnet = cidrs.get(fixed.subnet_id)
        if subnet is not None and subnet.version == 4:
            addresses.append(f"{fixed.ip_address}/{subnet.prefixlen}")
    addresses.append(f"{METADATA_ADDRESS}/32")
    return addresses


@dataclass(frozen=True)
class DnsmasqOptions:
    binary: str = "dnsmasq"
    domain: str = "openstacklocal"
    lease_seconds: int = 86400


def command(options: DnsmasqOptions, directory: Path, interface: str,
            network: NetworkInfo) -> list[str]:
    """dnsmasq's command line: DHCP only (DNS off), bound to the DHCP port's device, one
    static range per served subnet."""
    args = [
        options.binary, "--keep-in-foreground", "--conf-file=/dev/null", "--no-hosts",
        "--no-resolv", "--port=0", "--bind-interfaces", f"--interface={interface}",
        "--except-interface=lo", "--dhcp-authoritative",
        # Root, because the state directory may sit under a private (0700) data directory
        # that dnsmasq's usual unprivileged user could not read after it drops privileges.
        "--user=root", "--group=root",
        f"--pid-file={directory / 'pid'}",
        f"--dhcp-hostsdir={directory / HOSTS_DIR}",
        f"--dhcp-optsfile={directory / 'opts'}",
        f"--dhcp-leasefile={directory / 'leases'}",
        f"--log-facility={directory / 'dnsmasq.log'}",
        f"--dhcp-script={directory / LEASE_SCRIPT}",
        f"--domain={options.domain}",
    ]
    size = 0
    for subnet in sorted(dhcp_subnets(network), key=lambda s: s.id):
        net = ip_network(subnet.cidr)
        size += net.num_addresses
        args.append(f"--dhcp-range=set:{subnet_tag(subnet)},{net.network_address},static,"
                    f"{net.netmask},{options.lease_seconds}s")
    args.append(f"--dhcp-lease-max={max(size, 16)}")
    return args


LEASE_SCRIPT = "lease-script"
LEASE_EVENTS = "lease-events"
#: ``lease-events`` is started afresh once this much of it has been read.
LEASE_EVENTS_ROTATE = 256 * 1024


def lease_script(directory: Path) -> str:
    """The ``--dhcp-script``: dnsmasq's helper runs it (as root, one at a time, never holding
    up a reply) with ``add|old|del MAC IP [HOSTNAME]``; for ``add`` and ``old`` it appends
    ``<time ns> <action> <mac> <ip> <lease expiry> <tags>``. The guest's hostname is left
    out (the guest chooses it). A shell line, not a Python process: one ``date`` and one
    append per lease."""
    events = shlex.quote(str(directory / LEASE_EVENTS))
    return ("#!/bin/sh\n"
            "# Written by the stratus dhcp-agent: a line per lease given or renewed.\n"
            "PATH=/usr/sbin:/usr/bin:/sbin:/bin\n"
            'case "$1" in add|old) ;; *) exit 0 ;; esac\n'
            "printf '%s %s %s %s %s %s\\n' \"$(date +%s%N)\" \"$1\" \"$2\" \"$3\" "
            f'"${{DNSMASQ_LEASE_EXPIRES:-0}}" "${{DNSMASQ_TAGS:-}}" >> {events}\n')


@dataclass(frozen=True)
class LeaseEvent:
    """dnsmasq gave (``add``) or renewed (``old``) a lease: it answered the guest's DHCP."""

    time_ns: int
    action: str
    mac: str
    ip: str
    #: The lease's end (seconds since the epoch; 0 when dnsmasq did not say).
    expires: int
    tags: tuple[str, ...]

    @property
    def port_id(self) -> str | None:
        """The port a ``set:port-<id>`` tag names: only in leases given by the dnsmasq of an
        agent before ``hosts/`` (whose lines had the tag; see ``port_hosts``); else None,
        and the port is found by MAC."""
        for tag in self.tags:
            if tag.startswith("port-"):
                return tag.removeprefix("port-")
        return None

    def is_reply(self, lease_seconds: int) -> bool:
        """A lease given, or renewed now; not one dnsmasq read back from its lease file on
        a restart (it reports those as ``old`` too, with their earlier expiry)."""
        if self.action == "add" or not self.expires:
            return True
        return self.expires >= self.time_ns // 1_000_000_000 + lease_seconds - 10


def parse_lease_event(line: str) -> LeaseEvent | None:
    fields = line.split(None, 5)
    if len(fields) < 5 or fields[1] not in ("add", "old"):
        return None
    try:
        time_ns, expires = int(fields[0]), int(fields[4])
    except ValueError:
        return None
    tags = tuple(fields[5].split()) if len(fields) > 5 else ()
    return LeaseEvent(time_ns, fields[1], fields[2].lower(), fields[3], expires, tags)


def read_lease_events(directory: Path, offset: int) -> tuple[list[LeaseEvent], int]:
    """The events ``lease-events`` gained after ``offset``, and the offset to read from next
    time. A file read up to its end past ``LEASE_EVENTS_ROTATE`` is renamed and what the
    script appended in the meantime read from the renamed one, so the file stays small."""
    path = directory / LEASE_EVENTS
    try:
        with path.open("rb") as events:
            events.seek(0, os.SEEK_END)
            if events.tell() < offset:  # started afresh (a new state directory)
                offset = 0
            events.seek(offset)
            data = events.read()
    except FileNotFoundError:
        return [], 0
    complete = data.rfind(b"\n") + 1  # a line still being written waits
    offset += complete
    text = data[:complete].decode(errors="replace")
    if offset >= LEASE_EVENTS_ROTATE and complete == len(data):
        old = path.with_name(LEASE_EVENTS + ".old")
        os.replace(path, old)
        with old.open("rb") as events:
            events.seek(offset)
            text += events.read().decode(errors="replace")
        old.unlink()
        offset = 0
    parsed = (parse_lease_event(line) for line in text.splitlines())
    return [event for event in parsed if event is not None], offset


def write_lease_script(directory: Path) -> None:
    path = directory / LEASE_SCRIPT
    write_if_changed(path, lease_script(directory))
    path.chmod(0o755)


def write_if_changed(path: Path, content: str) -> bool:
    """Replace ``path`` atomically when its content differs; True when it changed."""
    with contextlib.suppress(FileNotFoundError):
        if path.read_text() == content:
            return False
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(content)
    os.replace(tmp, path)
    return True


def released_leases(gone: Iterable[PortInfo],
                    holders: Mapping[str, PortInfo]) -> set[tuple[str, str]]:
    """The leases to drop when ``gone`` ports were removed or replaced (a port updated is
    gone as its old object): the (MAC, address) pairs of ``gone`` that the address's holder
    now (``holders``: address → port, after the change) does not have. An address is held
    by one port of a network at most, so the other ports need not be looked at: a batch
    of port events costs its own ports' work."""
    released = set()
    for port in gone:
        mac = port.mac_address.lower()
        for fixed in port.fixed_ips:
            holder = holders.get(fixed.ip_address)
            if holder is None or holder.mac_address.lower() != mac:
                released.add((mac, fixed.ip_address))
    return released


def drop_leases(path: Path, released: set[tuple[str, str]]) -> bool:
    """Remove the leases of ``released`` (MAC, address) pairs from dnsmasq's lease file
    (``<expiry> <mac> <address> <hostname> <client id>`` lines); True when it held any.
    Only while dnsmasq is stopped: it reads the file once, at start."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return False
    macs = {mac for mac, _ in released}
    addresses = {address for _, address in released}
    kept = [line for line in lines
            if not ((fields := line.split()) and len(fields) >= 3
                    and (fields[1].lower() in macs or fields[2] in addresses))]
    if len(kept) == len(lines):
        return False
    write_if_changed(path, "".join(line + "\n" for line in kept))
    return True


def holds_leases(path: Path, released: set[tuple[str, str]]) -> bool:
    """Whether the lease file has a lease of one of ``released``."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return False
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and any(fields[1].lower() == mac or fields[2] == address
                                    for mac, address in released):
            return True
    return False


def _pid_of(directory: Path) -> int | None:
    """The pid in ``directory/pid`` when that process is a dnsmasq using this directory."""
    try:
        pid = int((directory / "pid").read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return None
    marker = f"--pid-file={directory / 'pid'}".encode()
    return pid if marker in cmdline else None


async def kill_stale(directory: Path, grace: float = 5.0) -> bool:
    """Stop a dnsmasq left running on ``directory`` by an earlier agent (one that crashed);
    True when there was one."""
    pid = _pid_of(directory)
    if pid is None:
        return False
    LOG.info("stopping dnsmasq %d left over on %s", pid, directory)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    # Not our child: nothing to wait on but its /proc entry.
    while _pid_of(directory) == pid and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    if _pid_of(directory) == pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return True


class Dnsmasq:
    """The dnsmasq of one network, run in its namespace and restarted when it dies.

    ``start`` is idempotent; ``reload`` (SIGHUP) makes it re-read ``opts`` and ``hosts/``
    (new files in ``hosts/`` it reads by itself);
    ``stop`` ends it and the watcher. A dnsmasq that exits on its own is started again after
    a back-off that grows from 0.2 s to 10 s while it keeps failing quickly.
    """

    def __init__(self, namespace: str, directory: Path) -> None:
        self.namespace = namespace
        self.directory = directory
        self.args: list[str] = []
        self.restarts = 0
        #: SIGHUPs sent (to any of its processes).
        self.reloads = 0
        self._process: asyncio.subprocess.Process | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._stopping = False
        #: The current process handles SIGHUP (it wrote its pid file).
        self._ready = False
        #: A reload was asked for while it was starting (its files may be newer than what
        #: it read): sent once it is ready.
        self._reload_pending = False

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    async def start(self, args: Sequence[str]) -> None:
        """Run dnsmasq with ``args``; one already running with other arguments is restarted."""
        if self.pid is not None and list(args) == self.args:
            return
        await self.stop()
        self.args = list(args)
        self._stopping = False
        await kill_stale(self.directory)
        await self._spawn()
        self._watcher = asyncio.create_task(self._watch(), name=f"dnsmasq-{self.namespace}")

    async def _spawn(self) -> None:
        # dnsmasq's start-up errors (before its log file is open) go here.
        self._ready = False
        log = await asyncio.to_thread(open, self.directory / "dnsmasq.stderr", "ab")
        try:
            with linux.preexec_in(self.namespace) as enter:
                self._process = await asyncio.create_subprocess_exec(
                    *self.args, stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL, stderr=log, preexec_fn=enter,
                    start_new_session=True)
        finally:
            log.close()
        self._ready = await self._until_ready(self._process)
        if self._ready and self._reload_pending:
            self.reload()
        LOG.info("dnsmasq %d serves %s", self._process.pid, self.namespace)

    async def _until_ready(self, process: asyncio.subprocess.Process,
                           within: float = 10.0) -> bool:
        """Wait until dnsmasq wrote its pid file: by then it handles SIGHUP (until it does,
        a SIGHUP would end it). False when it did not in time, or exited."""
        pid_file = self.directory / "pid"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while process.returncode is None and loop.time() < deadline:
            with contextlib.suppress(OSError, ValueError):
                if int(pid_file.read_text().strip() or 0) == process.pid:
                    return True
            await asyncio.sleep(0.005)
        return False

    async def _watch(self) -> None:
        delay = 0.2
        while True:
            process = self._process
            assert process is not None
            started = asyncio.get_running_loop().time()
            code = await process.wait()
            if self._stopping:
                return
            LOG.warning("dnsmasq of %s exited (%s); starting it again", self.namespace, code)
            ran = asyncio.get_running_loop().time() - started
            delay = 0.2 if ran > 30 else min(delay * 2, 10.0)
            await asyncio.sleep(delay)
            if self._stopping:
                return
            try:
                await self._spawn()
                self.restarts += 1
            except Exception:
                LOG.exception("dnsmasq of %s could not be started; trying again",
                              self.namespace)

    async def release(self, released: set[tuple[str, str]]) -> bool:
        """Forget the leases of ``released`` (MAC, address) pairs, so their addresses can be
        leased to other ports at once: dnsmasq is stopped, its lease file edited, and
        started again (it reads leases only at start; Debian's dhcp_release is not used,
        as it is not installed with dnsmasq). True when it was restarted (it read every
        file anew: no reload is due)."""
        leases = self.directory / "leases"
        if not released or not await asyncio.to_thread(holds_leases, leases, released):
            return False
        args = self.args
        await self.stop()
        await asyncio.to_thread(drop_leases, leases, released)
        if args:
            await self.start(args)
        return True

    def reload(self) -> None:
        """SIGHUP: dnsmasq re-reads ``opts`` and every file of ``hosts/``, dropping what
        they no longer hold (for one still starting, once it handles SIGHUP)."""
        pid = self.pid
        if pid is not None and not self._ready:
            self._reload_pending = True
            return
        self._reload_pending = False
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGHUP)
                self.reloads += 1

    async def stop(self, grace: float = 5.0) -> None:
        self._stopping = True
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            async with asyncio.timeout(grace):
                await process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
