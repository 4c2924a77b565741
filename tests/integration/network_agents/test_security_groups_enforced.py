"""Security groups enforced, with the real network-api, dhcp-agent and l2-agent (built as
``stratus up`` builds them): namespace guests behind their ports' taps get addresses by real
DHCP and reach each other only as the rules made through the API allow, changes taking
effect on the running guests."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from stratus.network.objects import bridge_name, tap_name
from tests.integration.network_agents.conftest import eventually, random_mac
from tests.integration.network_agents.guest import Guest
from tests.integration.network_agents.test_with_server import NET, Cloud, cloud, link

__all__ = ["cloud"]  # the fixture, shared with test_with_server

#: How long a change may take to reach the data path before the test calls it lost (how
#: fast it is: ``benchmarks l3``, goal a second).
WITHIN = 10.0


async def until(check: Callable[[], Awaitable[bool]], wanted: bool) -> float:
    """Seconds until ``check()`` answers ``wanted`` (fails past ``WITHIN``)."""
    started = time.monotonic()
    while await check() != wanted:
        assert time.monotonic() - started < WITHIN, f"not {wanted} within {WITHIN}s"
    return time.monotonic() - started


async def api(cloud: Cloud, method: str, path: str, body: Any = None,
              status: int = 200) -> Any:
    response = await cloud.client.request(method, f"{NET}/{path}", headers=cloud.headers,
                                          json=body)
    assert response.status_code == status, response.text
    return response.json() if response.content else None


async def free_address(cloud: Cloud, network_id: str, prefix: str) -> str:
    """An address of the /24 ``prefix`` that no port of the network holds."""
    ports = (await api(cloud, "GET", f"ports?network_id={network_id}"))["ports"]
    held = {ip["ip_address"] for port in ports for ip in port["fixed_ips"]}
    return next(f"{prefix}.{host}" for host in range(250, 1, -1)
                if f"{prefix}.{host}" not in held)


def nft_tables(table: str) -> list[str]:
    listing = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True,
                             check=True).stdout
    return [line for line in listing.splitlines() if line.endswith(f" {table}")]


# In the parallel part like the other namespace-guest tests: its timing goal is
# ``benchmarks l3``'s, its waits (``until``) poll up to WITHIN, nothing needs the machine alone.
async def test_two_guests_reach_each_other_only_as_the_rules_allow(
        cloud: Cloud, tmp_path: Path, kernel_cleanup: Callable[..., None]) -> None:
    network = await cloud.create("network", {"name": f"sg-{uuid.uuid4().hex[:6]}"})
    kernel_cleanup(network=network["id"], directory=cloud.state_dir / network["id"])
    prefix = f"10.{uuid.uuid4().int % 180 + 64}.{uuid.uuid4().int % 250}"
    await cloud.create("subnet", {"network_id": network["id"], "cidr": f"{prefix}.0/24",
                                  "ip_version": 4})
    bridge = bridge_name(network["id"])

    async def bridge_made() -> bool:
        return await link(bridge) is not None

    deadline = time.monotonic() + 30
    while not await bridge_made():
        assert time.monotonic() < deadline, "the DHCP agent made no bridge"
        await asyncio.sleep(0.05)
    web = (await api(cloud, "POST", "security-groups", {"security_group": {"name": "web"}},
                     status=201))["security_group"]
    ports = [await cloud.create("port", {
        "network_id": network["id"], "device_id": str(uuid.uuid4()),
        "device_owner": "compute:nova", "security_groups": [web["id"]]}) for _ in range(2)]
    for port in ports:
        kernel_cleanup(device=tap_name(port["id"]))

    async with Guest(bridge, ports[0]["mac_address"], tmp_path / "a",
                     outside_name=tap_name(ports[0]["id"])) as a, \
            Guest(bridge, ports[1]["mac_address"], tmp_path / "b",
                  outside_name=tap_name(ports[1]["id"])) as b:
        # Bound now: the l2-agent filters them before it reports them up.
        for port in ports:
            await api(cloud, "PUT", f"ports/{port['id']}",
                      {"port": {"binding:host_id": cloud.host}})
        for port in ports:
            async def active(port_id: str = port["id"]) -> bool:
                shown = await api(cloud, "GET", f"ports/{port_id}")
                return bool(shown["port"]["status"] == "ACTIVE")
            deadline = time.monotonic() + 30
            while not await active():
                assert time.monotonic() < deadline, "port never ACTIVE"
                await asyncio.sleep(0.05)
        assert nft_tables(cloud.firewall_table) == [f"table bridge {cloud.firewall_table}",
                                                    f"table inet {cloud.firewall_table}"]
        # DHCP passes the firewall: each guest gets its port's address.
        assert (await a.dhcp())["ip"] == ports[0]["fixed_ips"][0]["ip_address"]
        assert (await b.dhcp())["ip"] == ports[1]["fixed_ips"][0]["ip_address"]
        b_ip, a_ip = b.lease["ip"], a.lease["ip"]

        with b.listen(22), b.listen(23):
            assert not await b.connect(a_ip, 22)  # nothing listens in a
            assert not await a.connect(b_ip, 22)  # web opens nothing yet
            rule = (await api(cloud, "POST", "security-group-rules", {
                "security_group_rule": {"security_group_id": web["id"],
                                        "direction": "ingress", "protocol": "6",
                                        "port_range_min": 22, "port_range_max": 22}},
                status=201))["security_group_rule"]
            opened = await until(lambda: a.connect(b_ip, 22, wait=0.2), True)
            assert not await a.connect(b_ip, 23)

            await api(cloud, "DELETE", f"security-group-rules/{rule['id']}", status=204)
            closed = await until(lambda: a.connect(b_ip, 22, wait=0.2), False)
            print(f"rule create took effect in {opened:.3f}s, delete in {closed:.3f}s")

            # Open to the group's members: a, and only as itself.
            await api(cloud, "POST", "security-group-rules", {"security_group_rule": {
                "security_group_id": web["id"], "direction": "ingress",
                "remote_group_id": web["id"]}}, status=201)
            await until(lambda: a.connect(b_ip, 22, wait=0.2), True)
            # Addresses are allocated at random: the forged one must be no port's.
            forged = await free_address(cloud, network["id"], prefix)
            await a.add_address(f"{forged}/24")
            assert not await a.connect(b_ip, 22, source=forged)  # forged IP
            await a.set_mac(random_mac())
            assert not await a.connect(b_ip, 22)  # forged MAC
            await a.set_mac(ports[0]["mac_address"])
            assert await a.connect(b_ip, 22, wait=5.0)

            # b leaves filtering: no groups, no port security; 23 answers though no
            # rule opens it.
            await api(cloud, "PUT", f"ports/{ports[1]['id']}", {"port": {
                "security_groups": [], "port_security_enabled": False}})
            await until(lambda: a.connect(b_ip, 23, wait=0.2), True)

    for port in ports:
        await cloud.delete("port", port["id"])
    await cloud.delete("network", network["id"])
    await eventually(lambda: nft_tables(cloud.firewall_table) == [],
                     message="no table of ours left")


def port_chain(table: str, port_id: str) -> str:
    """The port's ingress chain as the kernel holds it ("" while there is none)."""
    done = subprocess.run(["nft", "list", "chain", "inet", table,
                           f"in-{port_id.replace('-', '')}"],
                          capture_output=True, text=True, check=False)
    return done.stdout


async def test_a_rule_made_right_after_the_binding_is_in_force(
        cloud: Cloud, kernel_cleanup: Callable[..., None]) -> None:
    """A user boots a server, then opens port 22: the rule's notice races the l2-agent's
    first filtering of the port (which starts from what the binding carried)."""
    group = (await api(cloud, "POST", "security-groups", {"security_group": {
        "name": "ssh"}}, status=201))["security_group"]
    network = await cloud.create("network", {"name": f"sg-{uuid.uuid4().hex[:6]}"})
    kernel_cleanup(network=network["id"], directory=cloud.state_dir / network["id"])
    prefix = f"10.{uuid.uuid4().int % 180 + 64}.{uuid.uuid4().int % 250}"
    await cloud.create("subnet", {"network_id": network["id"], "cidr": f"{prefix}.0/24",
                                  "ip_version": 4})
    port = await cloud.create("port", {
        "network_id": network["id"], "device_id": str(uuid.uuid4()),
        "device_owner": "compute:nova", "security_groups": [group["id"]]})
    kernel_cleanup(device=tap_name(port["id"]))
    # Bound and opened at once: whichever commits first, the binding's notice may carry
    # the group without the rule and the rule's notice may come first.
    await asyncio.gather(
        api(cloud, "PUT", f"ports/{port['id']}", {"port": {"binding:host_id": cloud.host}}),
        api(cloud, "POST", "security-group-rules", {"security_group_rule": {
            "security_group_id": group["id"], "direction": "ingress", "protocol": "tcp",
            "port_range_min": 22, "port_range_max": 22}}, status=201))

    async def ssh_open() -> bool:
        chain = await asyncio.to_thread(port_chain, cloud.firewall_table, port["id"])
        return "dport 22 " in chain

    took = await until(ssh_open, True)
    print(f"the rule was in force {took:.3f}s after it was made")
    await cloud.delete("port", port["id"])
    await cloud.delete("network", network["id"])
