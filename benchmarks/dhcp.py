"""DHCP and metadata: the network agents of a real ``stratus up`` (linuxbridge backend, fake
virt driver), timed as a guest and a user see them. Needs root and dnsmasq.

* ``network_ready``: ``POST /subnets`` answered → the network's dnsmasq runs (its pid file
  is written in its namespace), for ``--networks`` networks one after another;
* ``port_in_hosts``: ``POST /ports`` answered → the port's address is in its file in the
  network's dnsmasq hosts directory (the bus event, the file written; dnsmasq reads it by
  itself, no SIGHUP);
* ``lease``: a namespace guest on the network's bridge with a port's MAC runs busybox
  ``udhcpc`` until it holds the lease and has installed its routes (``--guests`` guests,
  one after another);
* ``metadata``: ``GET /openstack/latest/meta_data.json`` from the guest through the proxy to
  metadata-api and back (``--requests`` sequential requests, keep-alive off: a new TCP
  connection each, as cloud-init makes them);
* ``network_delete``: ``DELETE /networks/{id}`` answered → namespace, dnsmasq and files gone.

The guest is the test suite's namespace guest (``tests/integration/network_agents/guest``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from benchmarks import Goal, Result, percentile
from benchmarks._cloud import StratusUp, issue_token
from stratus.network.agents import linux
from stratus.network.agents.dhcp import dnsmasq
from stratus.network.objects import bridge_name, dhcp_namespace
from tests.integration.network_agents.guest import Guest

DESCRIPTION = ("network agents: subnet to dnsmasq ready, port to hosts file, guest DHCP lease, "
               "metadata through the proxy, network delete to clean")

NET = "/network/v2.0"
API = "/compute/v2.1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--networks", type=int, default=10,
                        help="networks made and deleted one at a time (default 10)")
    parser.add_argument("--guests", type=int, default=10,
                        help="guests leasing one at a time (default 10)")
    parser.add_argument("--requests", type=int, default=200,
                        help="metadata requests from one guest (default 200)")


async def _poll(predicate: Any, within: float = 30.0) -> float:
    """Seconds until ``predicate()`` holds (polled every millisecond)."""
    started = time.perf_counter()
    while not predicate():
        if time.perf_counter() - started > within:
            raise RuntimeError(f"not reached within {within}s")
        await asyncio.sleep(0.001)
    return time.perf_counter() - started


def _ms(values: list[float], prefix: str) -> dict[str, float]:
    return {f"{prefix}_p50_ms": percentile(values, 50) * 1e3,
            f"{prefix}_p95_ms": percentile(values, 95) * 1e3}


async def _create(client: httpx.AsyncClient, headers: dict[str, str], kind: str,
                  body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(f"{NET}/{kind}s", headers=headers, json={kind: body})
    if response.status_code != 201:
        raise RuntimeError(f"{kind} create: {response.status_code} {response.text[:300]}")
    created: dict[str, Any] = response.json()[kind]
    return created


async def run(args: argparse.Namespace) -> Result:
    if os.geteuid() != 0:
        raise RuntimeError("the dhcp benchmark needs root (namespaces, bridges, dnsmasq)")
    os.environ["STRATUS_NETWORK__BACKEND"] = "linuxbridge"
    os.environ["STRATUS_COMPUTE__VIRT_DRIVER"] = "fake"
    host = f"bench-{uuid.uuid4().hex[:6]}"
    os.environ["STRATUS_COMPUTE__HOST"] = host
    ready: list[float] = []
    in_hosts: list[float] = []
    leases: list[float] = []
    metadata: list[float] = []
    deletes: list[float] = []
    with tempfile.TemporaryDirectory(prefix="stratus-bench-dhcp-") as tmp:
        data = Path(tmp) / "data"
        state = data / "dhcp"
        async with StratusUp(data, bcrypt_rounds=4) as cloud:
            async with httpx.AsyncClient(base_url=cloud.base_url, timeout=120) as client:
                password = cloud.admin_password()
                assert password is not None
                headers = {"X-Auth-Token": await issue_token(client, cloud.identity_url,
                                                             password)}
                # Networks made and deleted one at a time.
                for n in range(args.networks):
                    net = await _create(client, headers, "network", {"name": f"bench-{n}"})
                    started = time.perf_counter()
                    await _create(client, headers, "subnet", {
                        "network_id": net["id"], "cidr": f"10.200.{n}.0/24",
                        "ip_version": 4})
                    pid = state / net["id"] / "pid"
                    await _poll(pid.exists)
                    ready.append(time.perf_counter() - started)
                    started = time.perf_counter()
                    response = await client.delete(f"{NET}/networks/{net['id']}",
                                                   headers=headers)
                    assert response.status_code == 204, response.text
                    namespace = dhcp_namespace(net["id"])
                    await _poll(lambda d=state / net["id"], ns=namespace:
                                not d.exists() and not linux.namespace_exists(ns))
                    deletes.append(time.perf_counter() - started)

                # One network for the guests: a server (for metadata) and plain ports.
                net = await _create(client, headers, "network", {"name": "bench-guests"})
                await _create(client, headers, "subnet", {
                    "network_id": net["id"], "cidr": "10.201.0.0/22", "ip_version": 4})
                hosts = state / net["id"] / dnsmasq.HOSTS_DIR
                image = (await client.post("/image/v2/images", headers=headers, json={
                    "name": "bench", "disk_format": "raw", "container_format": "bare"})).json()
                await client.put(f"/image/v2/images/{image['id']}/file", content=b"\0" * 4096,
                                 headers={**headers,
                                          "Content-Type": "application/octet-stream"})
                server = (await client.post(f"{API}/servers", headers=headers, json={
                    "server": {"name": "bench-vm", "imageRef": image["id"], "flavorRef": "1",
                               "networks": [{"uuid": net["id"]}]}})).json()["server"]
                while True:
                    shown = (await client.get(f"{API}/servers/{server['id']}",
                                              headers=headers)).json()["server"]
                    if shown["status"] in ("ACTIVE", "ERROR"):
                        break
                    await asyncio.sleep(0.01)
                if shown["status"] != "ACTIVE":
                    raise RuntimeError(f"the guest's server failed: {shown.get('fault')}")
                ports = []
                for n in range(args.guests):
                    started = time.perf_counter()
                    port = await _create(client, headers, "port", {
                        "network_id": net["id"], "device_id": f"bench-{n}",
                        "device_owner": "compute:bench"})
                    address = port["fixed_ips"][0]["ip_address"]
                    await _poll(lambda a=address, f=hosts / port["id"]: f.exists()
                                and a in f.read_text())
                    in_hosts.append(time.perf_counter() - started)
                    ports.append(port)
                for n, port in enumerate(ports):
                    async with Guest(bridge_name(net["id"]), port["mac_address"],
                                     Path(tmp) / f"guest-{n}") as guest:
                        started = time.perf_counter()
                        await guest.dhcp()
                        leases.append(time.perf_counter() - started)
                vm_port = (await client.get(f"{NET}/ports?device_id={server['id']}",
                                            headers=headers)).json()["ports"][0]
                async with Guest(bridge_name(net["id"]), vm_port["mac_address"],
                                 Path(tmp) / "guest-vm") as guest:
                    await guest.dhcp()
                    for _ in range(args.requests):
                        started = time.perf_counter()
                        status, _ = await guest.raw_get("169.254.169.254",
                                                        "/openstack/latest/meta_data.json")
                        metadata.append(time.perf_counter() - started)
                        if status != 200:
                            raise RuntimeError(f"metadata answered {status}")
    metrics = {**_ms(ready, "network_ready"), **_ms(deletes, "network_delete"),
               **_ms(in_hosts, "port_in_hosts"), **_ms(leases, "lease"),
               **_ms(metadata, "metadata")}
    return Result(metrics=metrics, goals=[
        Goal("network_ready_p50_ms", 500.0, "<=", "subnet create to dnsmasq running"),
        Goal("port_in_hosts_p50_ms", 100.0, "<=", "port create to its hosts-file entry"),
        Goal("lease_p50_ms", 500.0, "<=", "udhcpc start to lease and routes installed"),
        Goal("metadata_p50_ms", 20.0, "<=",
             "guest → proxy → metadata-api → guest, a new connection each"),
        Goal("network_delete_p50_ms", 1000.0, "<=", "network delete to nothing left"),
    ], backends={"network_backend": "linuxbridge", "virt_driver": "fake",
                 "bus": "memory://", "database": "sqlite"})
