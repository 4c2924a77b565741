"""What the router tests share: an external network on a test bridge, an "outside" namespace
on it (the external subnet's gateway, as the host's ``br-ex`` is in ``stratus up``), router
legs, and TCP listeners/connections made from inside namespaces.

Every name is unique per test (bridge ``bx<hex>``, namespaces ``qout-<hex>``), and the
external subnet a random /24 of 198.18.0.0/15 (the benchmarking range, in no real
network's way), so parallel runs never meet; traffic stays in
these namespaces and bridges.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
import uuid
from dataclasses import dataclass, field

from pyroute2 import IPRoute

from stratus.network.agents import linux
from stratus.network.objects import (
    FixedIP,
    NetworkInfo,
    RouterPort,
    SubnetInfo,
)
from tests.integration.network_agents.conftest import random_mac


def external_network(physical_network: str, cidr: str | None = None) -> NetworkInfo:
    """A flat provider network on ``physical_network`` with one DHCP-less subnet."""
    if cidr is None:
        cidr = f"198.{random.randint(18, 19)}.{random.randint(0, 255)}.0/24"
    network_id = str(uuid.uuid4())
    prefix = cidr.rsplit(".", 1)[0]
    subnet = SubnetInfo(id=str(uuid.uuid4()), network_id=network_id, cidr=cidr,
                        gateway_ip=f"{prefix}.1", enable_dhcp=False)
    return NetworkInfo(id=network_id, project_id="admin", name="public", mtu=1500,
                       network_type="flat", physical_network=physical_network,
                       subnets=[subnet])


def leg(network: NetworkInfo, host_part: int) -> RouterPort:
    """A router leg holding ``.host_part`` of the network's first subnet."""
    subnet = network.subnets[0]
    prefix = subnet.cidr.rsplit(".", 1)[0]
    return RouterPort(id=str(uuid.uuid4()), mac_address=random_mac(),
                      fixed_ips=[FixedIP(subnet_id=subnet.id,
                                         ip_address=f"{prefix}.{host_part}")],
                      network=network.model_copy(update={"ports": []}))


def address(network: NetworkInfo, host_part: int) -> str:
    return f"{network.subnets[0].cidr.rsplit('.', 1)[0]}.{host_part}"


@dataclass
class Outside:
    """A namespace on the external bridge holding the external subnet's gateway address
    (or ``host_address``, where the host holds the gateway): what guests reach through their
    router, and what reaches floating IPs."""

    bridge: str
    cidr: str
    namespace: str = field(default_factory=lambda: f"qout-{uuid.uuid4().hex[:10]}")
    host_address: str | None = None

    @property
    def address(self) -> str:
        return self.host_address or self.cidr.rsplit(".", 1)[0] + ".1"

    @property
    def outer(self) -> str:
        return f"ov{self.namespace[-10:]}"

    def _plug(self) -> None:
        linux.ensure_bridge(self.bridge)
        linux.ensure_namespace(self.namespace)
        with IPRoute() as ipr:
            ipr.link("add", ifname=self.outer, kind="veth",
                     peer={"ifname": "eth0", "net_ns_fd": self.namespace})
            index = ipr.link_lookup(ifname=self.outer)[0]
            ipr.link("set", index=index, master=ipr.link_lookup(ifname=self.bridge)[0],
                     state="up")
        with linux.ipr_in(self.namespace) as ns:
            ns.link("set", index=ns.link_lookup(ifname="eth0")[0], state="up")
        prefix = self.cidr.rsplit("/", 1)[1]
        linux.set_addresses(self.namespace, "eth0", [f"{self.address}/{prefix}"])

    def _unplug(self) -> None:
        linux.delete_link(self.outer)
        linux.delete_namespace(self.namespace)

    async def __aenter__(self) -> Outside:
        try:
            await asyncio.to_thread(self._plug)
        except BaseException:
            await asyncio.to_thread(self._unplug)
            raise
        return self

    async def __aexit__(self, *_: object) -> None:
        await asyncio.to_thread(self._unplug)


def _listen(namespace: str, port: int) -> socket.socket:
    with linux.entered(namespace):
        sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", port))
    sock.listen(8)
    sock.settimeout(35)  # outlasts seen_from's tries (15 s) and its wait for the accept
    return sock


def _connect(namespace: str, address: str, port: int, timeout: float) -> str:
    with linux.entered(namespace):
        sock = socket.create_connection((address, port), timeout=timeout)
    with sock:
        sock.sendall(b"hello\n")
        return str(sock.getsockname()[0])


def _connect_retrying(namespace: str, address: str, port: int, within: float) -> str:
    deadline = time.monotonic() + within
    while True:
        try:
            return _connect(namespace, address, port, min(1.0, deadline - time.monotonic()))
        except OSError:
            if time.monotonic() + 0.1 >= deadline:
                raise
            time.sleep(0.1)


def _accept(sock: socket.socket) -> str:
    conn, peer = sock.accept()
    with conn:
        conn.settimeout(5)
        conn.recv(16)
    return str(peer[0])


class Listener:
    """A TCP listener inside ``namespace``: ``seen_from`` connects from another namespace
    and answers the source address the listener saw."""

    def __init__(self, namespace: str, port: int | None = None) -> None:
        self.namespace = namespace
        self.port = port or random.randint(20000, 60000)
        self.sock: socket.socket | None = None

    async def __aenter__(self) -> Listener:
        self.sock = await asyncio.to_thread(_listen, self.namespace, self.port)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self.sock is not None:
            self.sock.close()

    async def seen_from(self, namespace: str, address: str, within: float = 15.0) -> str:
        """Connect from ``namespace`` to ``address``:port; the peer address accepted.

        Each try is a new connection: a first SYN that crossed a router before its NAT
        rules were in place leaves a conntrack entry without NAT, which that connection's
        retransmissions keep; a new source port meets the rules as they are now. Only a
        connection that completes reaches the accept queue."""
        assert self.sock is not None
        accepting = asyncio.ensure_future(asyncio.to_thread(_accept, self.sock))
        try:
            await asyncio.to_thread(_connect_retrying, namespace, address, self.port, within)
            return await asyncio.wait_for(accepting, 15)
        finally:
            if not accepting.done():
                # A connection that failed: wake the accept up with one of our own.
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(_connect, self.namespace, "127.0.0.1",
                                            self.port, 2)
                with contextlib.suppress(Exception):
                    await accepting


async def reachable(namespace: str, address: str, port: int, within: float = 2.0) -> bool:
    """Whether a TCP connect from ``namespace`` to ``address``:port completes."""
    try:
        await asyncio.to_thread(_connect, namespace, address, port, within)
    except OSError:
        return False
    return True
