"""A guest without a VM: a network namespace with a veth on a network's bridge.

It carries the port's MAC, asks for a lease with busybox ``udhcpc`` (requesting the
classless static routes, option 121) and a script that configures the interface and
installs every route it was given, as a guest's DHCP client would, then speaks HTTP from
inside the namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from pyroute2 import IPRoute

from stratus.network.agents import linux

UDHCPC_SCRIPT = """#!/bin/sh
# udhcpc calls this with the lease in the environment: configure the interface and routes.
env > "$LEASE_DUMP.$1"
case "$1" in
  deconfig)
    busybox ip -4 addr flush dev "$interface"
    busybox ip link set "$interface" up
    ;;
  bound|renew)
    busybox ip -4 addr flush dev "$interface"
    busybox ip addr add "$ip/$mask" dev "$interface"
    if [ -n "$staticroutes" ]; then
      set -- $staticroutes
      while [ $# -ge 2 ]; do
        busybox ip route replace "$1" via "$2" dev "$interface"
        shift 2
      done
    elif [ -n "$router" ]; then
      busybox ip route replace default via "${router%% *}" dev "$interface"
    fi
    ;;
esac
exit 0
"""


def _read_lease(path: Path) -> dict[str, str]:
    """The variables the script dumped on ``bound`` ({} when it never ran)."""
    if not path.exists():
        return {}
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def _routes(namespace: str) -> dict[str, str]:
    """destination/len → gateway of the guest's main table (routes with a gateway)."""
    found = {}
    with linux.ipr_in(namespace) as ns:
        for route in ns.get_routes(family=2):
            gateway = route.get("RTA_GATEWAY")
            if gateway:
                destination = route.get("RTA_DST") or "0.0.0.0"
                found[f"{destination}/{route['dst_len']}"] = gateway
    return found


def _addresses(namespace: str, device: str) -> set[str]:
    with linux.ipr_in(namespace) as ns:
        index = ns.link_lookup(ifname=device)[0]
        return {f"{m.get('IFA_ADDRESS')}/{m['prefixlen']}"
                for m in ns.get_addr(index=index, family=2)}


def tcp_connect(namespace: str, address: str, port: int, source: str | None = None,
                timeout: float = 0.5) -> bool:
    """Whether a TCP connection from inside ``namespace`` to ``address:port`` is answered
    (by a ``tcp_listen``-er's ``hi``) within ``timeout`` seconds."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with linux.entered(namespace):
        sock = socket.socket(family)
    with sock:
        sock.settimeout(timeout)
        if source is not None:
            sock.bind((source, 0))
        try:
            sock.connect((address, port))
            return sock.recv(16) == b"hi"
        except OSError:
            return False


@contextlib.contextmanager
def tcp_listen(namespace: str, port: int, echo: bool = False,
               dual_stack: bool = False) -> Iterator[None]:
    """A TCP listener inside ``namespace`` on ``port`` (IPv4, or with ``dual_stack`` IPv4
    and IPv6 at once), for as long as the context lasts: it says ``hi`` to each connection
    and closes it, or (``echo``) keeps each connection open and sends back what it
    receives."""
    with linux.entered(namespace):
        server = socket.socket(socket.AF_INET6 if dual_stack else socket.AF_INET)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if dual_stack:
        server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    server.bind(("::" if dual_stack else "0.0.0.0", port))
    server.listen(16)
    server.settimeout(0.2)
    stop = threading.Event()

    def echo_back(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(0.2)
            while not stop.is_set():
                try:
                    data = conn.recv(64)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                conn.sendall(data)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            if echo:
                threading.Thread(target=echo_back, args=(conn,), daemon=True).start()
                continue
            with conn:
                conn.sendall(b"hi")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        server.close()


@dataclass
class Guest:
    bridge: str
    mac: str
    workdir: Path
    namespace: str = field(default_factory=lambda: f"qguest-{uuid.uuid4().hex[:10]}")
    device: str = "eth0"
    lease: dict[str, str] = field(default_factory=dict)
    #: The bridge side's name; a port's tap name makes the guest that port (the l2-agent
    #: then enslaves the veth instead of making a tap, and its firewall filters it).
    outside_name: str | None = None
    #: The namespace the bridge is in, when it plays a host of its own (None: this one).
    host_namespace: str | None = None

    @property
    def outside(self) -> str:
        return self.outside_name or f"gv{self.namespace[-10:]}"

    def _on_host(self) -> contextlib.AbstractContextManager[None]:
        return (linux.entered(self.host_namespace) if self.host_namespace
                else contextlib.nullcontext())

    def _plug(self) -> None:
        with self._on_host():
            self._plug_here()

    def _plug_here(self) -> None:
        linux.ensure_namespace(self.namespace)
        with IPRoute() as ipr:
            ipr.link("add", ifname=self.outside, kind="veth",
                     peer={"ifname": self.device, "net_ns_fd": self.namespace})
            index = ipr.link_lookup(ifname=self.outside)[0]
            ipr.link("set", index=index, master=ipr.link_lookup(ifname=self.bridge)[0],
                     state="up")
        with linux.ipr_in(self.namespace) as ns:
            index = ns.link_lookup(ifname=self.device)[0]
            ns.link("set", index=index, address=self.mac, state="up")

    def _unplug(self) -> None:
        with contextlib.suppress(linux.NamespaceNotFound), self._on_host():
            linux.delete_link(self.outside)
        linux.delete_namespace(self.namespace)

    async def __aenter__(self) -> Guest:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            await asyncio.to_thread(self._plug)
        except BaseException:
            await asyncio.to_thread(self._unplug)
            raise
        return self

    async def __aexit__(self, *_: object) -> None:
        await asyncio.to_thread(self._unplug)

    async def dhcp(self, within: float = 30.0) -> dict[str, str]:
        """Run ``udhcpc`` once (foreground, exit after the lease); the lease's variables."""
        udhcpc = shutil.which("udhcpc") or "busybox"
        script = self.workdir / "udhcpc.script"
        script.write_text(UDHCPC_SCRIPT)
        script.chmod(0o755)
        dump = self.workdir / "lease"
        args = [udhcpc] if udhcpc != "busybox" else ["busybox", "udhcpc"]
        args += ["-f", "-q", "-n", "-t", "10", "-T", "1", "-i", self.device,
                 "-O", "staticroutes", "-O", "mtu", "-s", str(script)]
        with linux.preexec_in(self.namespace) as enter:
            process = await asyncio.create_subprocess_exec(
                *args, env={"LEASE_DUMP": str(dump), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                preexec_fn=enter)
        output, _ = await asyncio.wait_for(process.communicate(), within)
        lease = _read_lease(Path(f"{dump}.bound"))
        assert process.returncode == 0 and lease, (
            f"udhcpc got no lease ({process.returncode}): {output.decode()[-2000:]}")
        self.lease = lease
        return lease

    async def routes(self) -> dict[str, str]:
        return await asyncio.to_thread(_routes, self.namespace)

    async def addresses(self) -> set[str]:
        return await asyncio.to_thread(_addresses, self.namespace, self.device)

    async def add_address(self, cidr: str) -> None:
        def add() -> None:
            linux.set_addresses(self.namespace, self.device,
                                sorted(_addresses(self.namespace, self.device) | {cidr}))

        await asyncio.to_thread(add)

    def _get(self, url: str, headers: dict[str, str] | None,
             source: str | None) -> httpx.Response:
        with linux.entered(self.namespace):
            transport = httpx.HTTPTransport(local_address=source)
            with httpx.Client(transport=transport, timeout=20, trust_env=False) as client:
                response = client.get(url, headers=headers)
                response.read()
                return response

    def _raw_get(self, address: str, path: str) -> tuple[int, bytes]:
        with linux.entered(self.namespace):
            sock = socket.create_connection((address, 80), timeout=20)
        with sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {address}\r\n"
                         "Connection: close\r\n\r\n".encode())
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), body

    async def raw_get(self, address: str, path: str) -> tuple[int, bytes]:
        """A minimal HTTP/1.1 GET over a new connection (no client library set-up in the
        timing): the status and the body (not de-chunked)."""
        return await asyncio.to_thread(self._raw_get, address, path)

    async def connect(self, address: str, port: int, source: str | None = None,
                      wait: float = 0.5) -> bool:
        """Whether a TCP connection from inside to ``address:port`` is answered (by a
        ``listen``-er's ``hi``) within ``wait`` seconds."""
        return await asyncio.to_thread(tcp_connect, self.namespace, address, port, source, wait)

    def listen(self, port: int) -> contextlib.AbstractContextManager[None]:
        """A TCP listener inside on ``port`` that says ``hi`` to each connection."""
        return tcp_listen(self.namespace, port)

    async def set_mac(self, mac: str) -> None:
        def change() -> None:
            with linux.ipr_in(self.namespace) as ns:
                index = ns.link_lookup(ifname=self.device)[0]
                ns.link("set", index=index, address=mac)

        await asyncio.to_thread(change)

    async def get(self, url: str, headers: dict[str, str] | None = None,
                  source: str | None = None) -> httpx.Response:
        """An HTTP GET made from inside the guest (optionally from address ``source``)."""
        return await asyncio.to_thread(self._get, url, headers, source)
