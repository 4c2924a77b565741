"""Routers and floating IPs on a real ``stratus up`` (linuxbridge backend: the l3-agent does
the kernel work), driven by the real ``openstack`` CLI, without a VM.

``stratus up`` makes the ``public`` external network on its first start (here on a test
bridge and range, without the masquerade: nothing leaves the machine) and says so; the host
holds the public gateway address on that bridge, so the host is "the outside". A router
joins ``public`` to ``private``; a namespace guest with a port's MAC gets its address by
DHCP; the host reaches the guest by its floating IP, and the guest's traffic reaches the host
from the floating IP. Taken apart with the CLI, and when the cloud stops no namespace,
bridge or veth of it is left.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stratus.network.agents import linux
from stratus.network.objects import bridge_name, router_namespace
from tests.e2e.cloud import Cloud, base_env, free_port
from tests.integration.network_agents.conftest import require_root_and_dnsmasq
from tests.integration.network_agents.guest import Guest
from tests.integration.network_agents.l3net import Listener

pytestmark = pytest.mark.e2e


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    require_root_and_dnsmasq()
    env = base_env(STRATUS_NETWORK__BACKEND="linuxbridge", STRATUS_COMPUTE__VIRT_DRIVER="fake",
                   STRATUS_COMPUTE__HOST=f"e2e-{uuid.uuid4().hex[:8]}")
    instance = Cloud(tmp_path / "data", free_port(), env)
    try:
        instance.start(timeout=120)  # (a busy machine starts slowly)
        yield instance
    finally:
        if instance.process is not None:  # also when it failed to come up in time
            instance.stop()


def _reach_from_host(address: str, port: int, listener: socket.socket,
                     within: float = 30.0) -> str:
    """Connect from this host to ``address``:``port`` until it works (the first SYNs may
    come before the agent's NAT); the peer address ``listener`` accepted."""
    deadline = time.monotonic() + within
    while True:
        try:
            with socket.create_connection((address, port), timeout=1):
                pass
            conn, peer = listener.accept()
            conn.close()
            return str(peer[0])
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _host_listener(address: str) -> socket.socket:
    """A listener on this host bound to the public bridge's address only."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, 0))
    sock.listen(4)
    sock.settimeout(15)
    return sock


def _guest_connect(namespace: str, address: str, port: int) -> None:
    with linux.entered(namespace):
        sock = socket.create_connection((address, port), timeout=10)
    sock.close()


async def _session(port: dict[str, Any], floating_ip: str, gateway: str, private_id: str,
                   workdir: Path) -> dict[str, str]:
    seen: dict[str, str] = {}
    async with Guest(bridge_name(private_id), port["mac_address"], workdir) as guest:
        seen["lease"] = (await guest.dhcp())["ip"]
        async with Listener(guest.namespace) as inside:
            assert inside.sock is not None
            seen["host_to_guest_from"] = await asyncio.to_thread(
                _reach_from_host, floating_ip, inside.port, inside.sock)
        with await asyncio.to_thread(_host_listener, gateway) as listener:
            accepting = asyncio.ensure_future(asyncio.to_thread(listener.accept))
            await asyncio.to_thread(_guest_connect, guest.namespace, gateway,
                                    listener.getsockname()[1])
            conn, peer = await asyncio.wait_for(accepting, 15)
            conn.close()
            seen["guest_to_host_from"] = peer[0]
    return seen


def test_router_and_floating_ip_in_the_kernel_with_the_real_cli(cloud: Cloud,
                                                                 tmp_path: Path) -> None:
    log = " ".join(cloud.log().split())  # (the console wraps long lines)
    made = re.search(r"Network: external network public on bridge (\S+) \(made\) with "
                     r"(\S+)/(\d+) on the host side", log)
    assert made, log[-3000:]
    bridge, gateway = made.group(1), made.group(2)
    assert "Network: made the external network public" in log
    assert "masquerading" not in log

    router = cloud.openstack_json("router", "create", "r1")
    cloud.openstack("router", "set", "--external-gateway", "public", "r1")
    cloud.openstack("router", "add", "subnet", "r1", "private-subnet")
    private = cloud.openstack_json("network", "show", "private")
    port = cloud.openstack_json("port", "create", "--network", "private", "guest-port")
    # Its (default) group lets TCP in: the host connects to the guest by its floating IP.
    for group_id in port["security_group_ids"]:
        cloud.openstack("security", "group", "rule", "create", "--ingress", "--protocol",
                        "tcp", "--remote-ip", "0.0.0.0/0", group_id)
    fip = cloud.openstack_json("floating", "ip", "create", "public")
    cloud.openstack("floating", "ip", "set", "--port", "guest-port", fip["id"])

    seen = asyncio.run(_session(port, fip["floating_ip_address"], gateway, private["id"],
                                tmp_path / "g"))
    assert seen["lease"] == port["fixed_ips"][0]["ip_address"]
    assert seen["host_to_guest_from"] == gateway
    assert seen["guest_to_host_from"] == fip["floating_ip_address"]
    assert cloud.openstack_json("floating", "ip", "show", fip["id"])["status"] == "ACTIVE"
    agents = cloud.openstack_json("network", "agent", "list")
    assert any(a["Agent Type"] == "L3 agent" and a["Alive"] in (True, ":-)")
               for a in agents), agents

    cloud.openstack("floating", "ip", "delete", fip["id"])
    cloud.openstack("router", "remove", "subnet", "r1", "private-subnet")
    cloud.openstack("router", "unset", "--external-gateway", "r1")
    cloud.openstack("router", "delete", "r1")
    namespace = router_namespace(router["id"])
    deadline = time.monotonic() + 30
    while linux.namespace_exists(namespace) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not linux.namespace_exists(namespace)

    assert cloud.stop() == 0
    assert linux.get_link(bridge) is None
    assert not [n for n in _namespaces() if n.startswith("qrouter-") and router["id"] in n]


def _namespaces() -> list[str]:
    try:
        return os.listdir(linux.NETNS_DIR)
    except FileNotFoundError:
        return []
