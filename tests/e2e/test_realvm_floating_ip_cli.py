"""Issue 13 end to end on a real guest: a floating IP reaches a service the guest runs only
once a security group rule lets it in.

The session's real-guest cloud (``stratus up --with-test-image``, libvirt under TCG,
linuxbridge backend: the l2-agent's nftables firewall filters the guest's tap, the l3-agent
makes the router's namespace and NAT). Its ``public`` network is on a test bridge; a
namespace on that bridge, holding an address of ``public`` the network service allocated to
a port made for it, plays "the outside". A router joins ``public`` to ``private``. The guest
is booted (one boot) into a security group of its own that opens only TCP 8081; its
user-data script starts busybox ``httpd`` on 8080 and on 8081. From the outside, the guest's
floating IP answers on 8081 (so the floating IP's NAT is in force) but not on 8080, until
``openstack security group rule create --dst-port 8080``: then 8080 answers with the page
the guest wrote, without the guest being touched (no reboot, same boot on its console).
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stratus.network.agents import linux
from tests.e2e.cloud import Cloud
from tests.e2e.test_realvm_cli import console_until
from tests.integration.network_agents.l3net import Outside

pytestmark = [pytest.mark.e2e, pytest.mark.realvm, pytest.mark.serial]

SERVICE = 8080
CONTROL = 8081

USER_DATA = f"""#!/bin/sh
mkdir -p /www
echo "guest $(hostname) serves" > /www/index.html
# busybox httpd goes to the background itself; init carries on to STRATUS-READY.
httpd -p {SERVICE} -h /www && httpd -p {CONTROL} -h /www && echo "STRATUS-HTTPD up"
"""


def _http_get(namespace: str, address: str, port: int, timeout: float) -> bytes:
    """``GET /index.html`` over a TCP connection made from ``namespace``; the whole answer."""
    with linux.entered(namespace):
        sock = socket.socket()
    with sock:
        sock.settimeout(timeout)
        sock.connect((address, port))
        sock.sendall(b"GET /index.html HTTP/1.0\r\nHost: guest\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
        return answer


def _answers(namespace: str, address: str, port: int, timeout: float = 2.0) -> bytes | None:
    try:
        return _http_get(namespace, address, port, timeout)
    except OSError:  # refused, unreachable, or timed out: the firewall drops the SYN
        return None


def _first_answer(namespace: str, address: str, port: int, within: float) -> bytes:
    deadline = time.monotonic() + within
    while True:
        answer = _answers(namespace, address, port)
        if answer is not None:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"{address}:{port} never answered within {within:.0f} s")
        time.sleep(0.2)


@pytest.fixture
def cloud(realvm_cloud: Cloud) -> Iterator[Cloud]:
    """The session's real-guest cloud; the router, floating IP, ports and group this test
    makes are taken apart after it even when it fails (the server by ``realvm_cloud``), so
    the next real-guest test finds the cloud as it was."""
    yield realvm_cloud
    cloud = realvm_cloud
    for fip in cloud.openstack_json("floating", "ip", "list"):
        cloud.openstack("floating", "ip", "delete", fip["ID"], check=False)
    cloud.openstack("port", "delete", "outside", check=False)
    if cloud.openstack("router", "show", "fip-r1", check=False).returncode == 0:
        cloud.openstack("router", "remove", "subnet", "fip-r1", "private-subnet", check=False)
        cloud.openstack("router", "delete", "fip-r1", check=False)
    servers = [s["ID"] for s in cloud.openstack_json("server", "list", "--all-projects")]
    if servers:  # the group is in use until its server is gone
        cloud.openstack("server", "delete", "--wait", *servers, check=False)
    cloud.openstack("security", "group", "delete", "web", check=False)


@pytest.mark.timeout(900)  # one TCG boot on a shared machine
def test_a_floating_ip_reaches_the_guests_service_only_once_a_rule_allows_it(
        cloud: Cloud, tmp_path: Path) -> None:
    bridge = cloud.env["STRATUS_NETWORK__PHYSICAL_BRIDGES"].split(":", 1)[1]
    public_cidr = cloud.env["STRATUS_NETWORK__EXTERNAL_SUBNET_CIDR"]

    cloud.openstack("router", "create", "fip-r1")
    cloud.openstack("router", "set", "--external-gateway", "public", "fip-r1")
    cloud.openstack("router", "add", "subnet", "fip-r1", "private-subnet")
    # A new group holds only egress rules: everything coming in is refused but for what is
    # opened here, the control port.
    group = cloud.openstack_json("security", "group", "create", "web")
    cloud.openstack("security", "group", "rule", "create", "--ingress", "--protocol", "tcp",
                    "--dst-port", str(CONTROL), "--remote-ip", "0.0.0.0/0", "web")
    script = tmp_path / "user-data.sh"
    script.write_text(USER_DATA)
    server = cloud.openstack_json("server", "create", "--image", "stratus-test-guest",
                                  "--flavor", "m1.tiny", "--network", "private",
                                  "--security-group", "web", "--user-data", str(script),
                                  "--wait", "fip-vm")
    assert server["status"] == "ACTIVE"
    fip = cloud.openstack_json("floating", "ip", "create", "public")
    address = fip["floating_ip_address"]
    cloud.openstack("server", "add", "floating", "ip", "fip-vm", address)
    booted = console_until(cloud, "fip-vm", r"^STRATUS-READY", within=240)
    assert "STRATUS-HTTPD up" in booted, booted[-2000:]
    [guest_port] = cloud.openstack_json("port", "list", "--device-id", server["id"])
    assert cloud.openstack_json("port", "show", guest_port["ID"])["security_group_ids"] == [
        group["id"]]

    # "The outside": an address of public that IPAM gave to a port no one else will use.
    outside_port = cloud.openstack_json("port", "create", "--network", "public", "outside")
    outside_ip = outside_port["fixed_ips"][0]["ip_address"]

    async def probe() -> dict[str, bytes | None]:
        seen: dict[str, bytes | None] = {}
        async with Outside(bridge, public_cidr, host_address=outside_ip) as outside:
            ns = outside.namespace
            # The floating IP's NAT and the control rule are in force...
            seen["control"] = await asyncio.to_thread(_first_answer, ns, address, CONTROL, 60)
            # ...but nothing lets the service in: several tries, each given two seconds.
            tries = [await asyncio.to_thread(_answers, ns, address, SERVICE) for _ in range(3)]
            seen["before_rule"] = next((t for t in tries if t is not None), None)
            cloud.openstack("security", "group", "rule", "create", "--ingress", "--protocol",
                            "tcp", "--dst-port", str(SERVICE), "--remote-ip", "0.0.0.0/0",
                            "web")
            seen["after_rule"] = await asyncio.to_thread(_first_answer, ns, address, SERVICE,
                                                         15)
        return seen

    seen = asyncio.run(probe())
    assert seen["control"] is not None and b"200 OK" in seen["control"]
    assert seen["before_rule"] is None, seen["before_rule"]
    after = seen["after_rule"]
    assert after is not None and b"200 OK" in after, after
    assert re.search(rb"guest \S+ serves", after), after
    # The guest was not touched: the same boot, and its floating address is on the server.
    console = cloud.openstack("console", "log", "show", "fip-vm").stdout
    assert console.count("STRATUS-INIT") == 1
    addresses = cloud.openstack_json("server", "show", "fip-vm")["addresses"]
    assert address in str(addresses), addresses
