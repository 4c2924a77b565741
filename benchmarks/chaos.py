"""Chaos under load: boots and deletes in flight while each unit, the broker and the database
fail in turn (split mode, fake hosts, noop network backend).

A stream of boots (``--boots``, paced at ``--rate`` per second; every ``--volume-every``-th
with a blank 1 GiB volume deleted with the server; every ``--delete-every``-th deleted as soon
as it is ACTIVE) runs while these faults happen one after the other: each strikes
``--fault-gap`` seconds into a batch of its own (``--boots`` shared between the faults, posted
``--rate`` per second), once the cloud recovered from the fault before:

* SIGKILL of the API process, a scheduler, a conductor, a compute agent, the network API and
  the volume manager, each started again ``--restart-after`` seconds later;
* ``rabbitmqctl stop_app``, then ``start_app`` ``--restart-after`` seconds later (a private
  RabbitMQ node);
* a PostgreSQL stop (``pg_ctl stop -m fast``: every session closed) and start (a private
  server).

The DHCP and L2 agents run only on the linuxbridge backend (real bridges, taps, a dnsmasq per
network in a namespace: root and dnsmasq needed). With ``--network-agents`` the cloud uses it:
one compute agent with one fake host (``--hosts`` is ignored), a ``dhcp-agent`` and an
``l2-agent`` process for that host on this machine, and two more faults after the network
API's: SIGKILL of the DHCP agent and of the L2 agent, each started again ``--restart-after``
seconds later. Compute waits for the L2 agent's ``network-vif-plugged`` on this backend, so
boots in flight wait for the L2 agent's return. After the settle, the dnsmasq hosts files the
DHCP agent keeps are checked too (given ``--settle-within`` to converge): ``leaked_dhcp_hosts``
(entries for no port of a live server, or for a DHCP port) and ``missing_dhcp_hosts`` (a port
of an ACTIVE server without its entry); after the delete-all, ``left_dhcp_hosts``.

Figures: ``recover_s_<fault>``, seconds from the fault until a new boot (with a port and a
volume) is ACTIVE again; and after the stream and the faults, once every server settled (or
``--settle-within`` passed): ``boots_lost`` (accepted, never deleted, gone), ``stuck``
(BUILD, a task state, or ERROR without a fault), ``errored`` (ERROR with a fault; their faults
in ``fault_messages``), and what does not belong to a live server: ``leaked_claims``
(placement allocations), ``leaked_ports``, ``leaked_ips``, ``leaked_attachments``,
``leaked_volumes`` (and ``leaked_dhcp_hosts``); then every server is deleted and ``left_*``
counts what remains (all 0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks import Goal, Result
from benchmarks._chaos_cloud import ADMIN_PASSWORD, ChaosCloud
from benchmarks._cloud import password_auth

DESCRIPTION = ("chaos under load: boots and deletes in flight while every unit, RabbitMQ and "
               "PostgreSQL fail in turn (split mode, fake hosts)")

FAULTS = ("api", "scheduler", "conductor", "compute-agent", "network-api", "volume-manager",
          "rabbitmq", "postgresql")
#: The faults ``--network-agents`` adds, after ``network-api``'s.
AGENT_FAULTS = ("dhcp-agent", "l2-agent")
#: The process each kill fault SIGKILLs.
VICTIMS = {"api": "api", "scheduler": "scheduler-1", "conductor": "conductor-1",
           "compute-agent": "agent-1", "network-api": "network-api",
           "dhcp-agent": "dhcp-agent", "l2-agent": "l2-agent",
           "volume-manager": "volume-manager"}
TRANSIENT_STATUSES = {"BUILD", "REBUILD", "RESIZE", "MIGRATING", "REBOOT", "HARD_REBOOT"}
COMPUTE = {"OpenStack-API-Version": "compute 2.96"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--boots", type=int, default=500, help="boots in the stream (500)")
    parser.add_argument("--rate", type=float, default=5.0, help="boots posted per second (5)")
    parser.add_argument("--hosts", type=int, default=10, help="fake hosts (10)")
    parser.add_argument("--volume-every", type=int, default=5,
                        help="every Nth boot has a blank volume (5)")
    parser.add_argument("--delete-every", type=int, default=3,
                        help="every Nth boot is deleted once ACTIVE (3)")
    parser.add_argument("--restart-after", type=float, default=3.0,
                        help="seconds a killed unit, the broker or the database stay down (3)")
    parser.add_argument("--fault-gap", type=float, default=3.0,
                        help="seconds between one fault's recovery and the next fault (3)")
    parser.add_argument("--fake-latency", type=float, default=1.0,
                        help="seconds each fake-driver operation takes (1)")
    parser.add_argument("--settle-within", type=float, default=300.0,
                        help="seconds the cloud gets to settle after the last fault (300)")
    parser.add_argument("--faults", default=None,
                        help=f"the faults, in order (default {','.join(FAULTS)}; with "
                             f"--network-agents, {','.join(AGENT_FAULTS)} after network-api)")
    parser.add_argument("--network-agents", action="store_true",
                        help="linuxbridge backend with a DHCP and an L2 agent (root, dnsmasq; "
                             "one fake host); their kills among the faults")
    parser.add_argument("--log-dir", type=Path, default=None,
                        help="keep each process's log here (default: discarded)")


def _progress(message: str) -> None:
    print(f"[chaos] {message}", file=sys.stderr, flush=True)


@dataclass
class ChaosOptions:
    boots: int = 500
    rate: float = 5.0
    hosts: int = 10
    volume_every: int = 5
    delete_every: int = 3
    restart_after: float = 3.0
    fault_gap: float = 3.0
    fake_latency: float = 1.0
    settle_within: float = 300.0
    faults: tuple[str, ...] = FAULTS
    log_dir: Path | None = None
    network_agents: bool = False


def default_faults(network_agents: bool) -> tuple[str, ...]:
    if not network_agents:
        return FAULTS
    at = FAULTS.index("network-api") + 1
    return FAULTS[:at] + AGENT_FAULTS + FAULTS[at:]


@dataclass
class Report:
    """What a chaos run found; ``metrics`` is the flat view the benchmark prints."""

    recover_s: dict[str, float] = field(default_factory=dict)
    counts: dict[str, float] = field(default_factory=dict)
    fault_messages: Counter[str] = field(default_factory=Counter)
    stuck_servers: list[dict[str, Any]] = field(default_factory=list)
    leaks: dict[str, list[Any]] = field(default_factory=dict)
    dead_processes: list[str] = field(default_factory=list)
    #: (port id, IP) of ACTIVE servers' ports the DHCP hosts files lack (network agents).
    missing_dhcp_hosts: list[tuple[str, str]] = field(default_factory=list)
    #: The networks the run made.
    network_ids: list[str] = field(default_factory=list)

    @property
    def metrics(self) -> dict[str, float]:
        found = dict(self.counts)
        found.update({f"recover_s_{k.replace('-', '_')}": v for k, v in self.recover_s.items()})
        finite = [v for v in self.recover_s.values() if math.isfinite(v)]
        found["recover_s_max"] = max(finite) if len(finite) == len(self.recover_s) else math.nan
        return found


class Client:
    """The admin's HTTP client: retries what a fault interrupts (no answer, 5xx) as a
    patient user would, until ``within`` seconds passed."""

    def __init__(self, cloud: ChaosCloud) -> None:
        self.cloud = cloud
        self.http = httpx.AsyncClient(base_url=cloud.base_url, timeout=60,
                                      limits=httpx.Limits(max_connections=40))
        self.token = ""
        self.project_id = ""

    async def login(self) -> None:
        response = await self.request("POST", "/identity/v3/auth/tokens", authed=False,
                                      json=password_auth(ADMIN_PASSWORD))
        self.token = response.headers["X-Subject-Token"]
        self.project_id = response.json()["token"]["project"]["id"]

    async def request(self, method: str, path: str, *, within: float = 120, authed: bool = True,
                      base: str | None = None, ok: Callable[[int], bool] | None = None,
                      **kwargs: Any) -> httpx.Response:
        deadline = time.monotonic() + within
        headers = {**COMPUTE, **kwargs.pop("headers", {})}
        if authed:
            headers["X-Auth-Token"] = self.token
        url = (base or "") + path
        while True:
            try:
                response = await self.http.request(method, url, headers=headers, **kwargs)
                if ok(response.status_code) if ok else response.status_code < 500:
                    return response
                problem = f"{response.status_code} {response.text[:300]}"
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                raise RuntimeError(f"{method} {path}: still failing after {within} s: {problem}")
            await asyncio.sleep(0.5)

    @property
    def network(self) -> str:
        return f"http://127.0.0.1:{self.cloud.network_port}/network/v2.0"

    async def all_pages(self, path: str, key: str, *, base: str | None = None) -> list[Any]:
        items: list[Any] = []
        marker = None
        while True:
            separator = "&" if "?" in path else "?"
            page = path + f"{separator}limit=1000" + (f"&marker={marker}" if marker else "")
            response = await self.request("GET", page, base=base)
            assert response.status_code == 200, response.text
            found = response.json()[key]
            items += found
            if len(found) < 1000:
                return items
            marker = found[-1]["id"]

    async def servers(self) -> list[dict[str, Any]]:
        return await self.all_pages("/compute/v2.1/servers/detail?all_tenants=1", "servers")

    async def aclose(self) -> None:
        await self.http.aclose()


class Load:
    """The stream of boots and in-flight deletes, and what it saw."""

    def __init__(self, client: Client, options: ChaosOptions, image_id: str,
                 network_id: str) -> None:
        self.client = client
        self.options = options
        self.image_id = image_id
        self.network_id = network_id
        #: Server id → boot index, for every boot answered 202.
        self.accepted: dict[str, int] = {}
        self.refused: list[str] = []
        self.deleted: set[str] = set()
        self.statuses: dict[str, str] = {}
        self.posted = 0

    def body(self, name: str, volume: bool) -> dict[str, Any]:
        server: dict[str, Any] = {"name": name, "imageRef": self.image_id, "flavorRef": "1",
                                  "networks": [{"uuid": self.network_id}]}
        if volume:
            server["block_device_mapping_v2"] = [
                {"boot_index": 0, "uuid": self.image_id, "source_type": "image",
                 "destination_type": "local"},
                {"boot_index": -1, "source_type": "blank", "destination_type": "volume",
                 "volume_size": 1, "delete_on_termination": True}]
        return {"server": server}

    async def boot(self, index: int) -> None:
        volume = self.options.volume_every > 0 and index % self.options.volume_every == 0
        try:
            response = await self.client.request(
                "POST", "/compute/v2.1/servers", within=180,
                json=self.body(f"chaos-{index}", volume))
        except RuntimeError as exc:
            self.refused.append(str(exc))
            return
        if response.status_code != 202:
            self.refused.append(f"{response.status_code} {response.text[:300]}")
            return
        self.accepted[response.json()["server"]["id"]] = index

    async def run(self, indices: range) -> None:
        """Post the boots ``indices``, ``rate`` per second, each retried on its own."""
        tasks: list[asyncio.Task[None]] = []
        started = time.monotonic()
        for n, index in enumerate(indices):
            delay = started + n / self.options.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self.boot(index)))
            self.posted += 1
        await asyncio.gather(*tasks)

    async def delete_in_flight(self, stop: asyncio.Event) -> None:
        """Delete every ``delete_every``-th accepted boot once it is ACTIVE."""
        every = self.options.delete_every
        while not stop.is_set():
            with contextlib.suppress(RuntimeError, httpx.HTTPError, KeyError, ValueError):
                for server in await self.client.servers():
                    self.statuses[server["id"]] = server["status"]
                    index = self.accepted.get(server["id"])
                    if (every > 0 and index is not None and index % every == 0
                            and server["status"] == "ACTIVE" and server["id"] not in self.deleted):
                        await delete(self.client, server["id"])
                        self.deleted.add(server["id"])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 2)


async def delete(client: Client, server_id: str) -> None:
    response = await client.request("DELETE", f"/compute/v2.1/servers/{server_id}",
                                    ok=lambda s: s in (204, 404) or 400 <= s < 500)
    if response.status_code not in (204, 404):
        raise RuntimeError(f"DELETE {server_id}: {response.status_code} {response.text[:300]}")


async def probe(client: Client, load: Load, within: float = 240) -> bool:
    """Boot one server with a port and a volume until one is ACTIVE; delete it. Whether
    one became ACTIVE within ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            response = await client.request("POST", "/compute/v2.1/servers", within=60,
                                            json=load.body("probe", True))
        except RuntimeError:
            continue
        if response.status_code != 202:
            await asyncio.sleep(1)
            continue
        server_id = response.json()["server"]["id"]
        status = "BUILD"
        attempt_ends = min(deadline, time.monotonic() + 90)
        while time.monotonic() < attempt_ends:
            with contextlib.suppress(RuntimeError):
                shown = await client.request("GET", f"/compute/v2.1/servers/{server_id}",
                                             within=30)
                if shown.status_code == 200:
                    status = shown.json()["server"]["status"]
                    if status in ("ACTIVE", "ERROR"):
                        break
            await asyncio.sleep(0.5)
        with contextlib.suppress(RuntimeError):
            await delete(client, server_id)
        load.deleted.add(server_id)
        if status == "ACTIVE":
            return True
        _progress(f"probe {server_id} ended {status}; another")
    return False


async def inject(cloud: ChaosCloud, fault: str, down_for: float) -> None:
    if fault in VICTIMS:
        victim = VICTIMS[fault]
        cloud.kill(victim)
        await asyncio.sleep(down_for)
        cloud.start(victim)
    elif fault == "rabbitmq":
        await cloud.broker_stop()
        try:
            await asyncio.sleep(down_for)
        finally:
            await cloud.broker_start()
    elif fault == "postgresql":
        await cloud.database_stop()
        try:
            await asyncio.sleep(down_for)
        finally:
            await cloud.database_start()
    else:
        raise ValueError(f"no fault {fault!r}; the faults are {', '.join(FAULTS)}")


async def prepare(client: Client) -> tuple[str, str]:
    """Quotas lifted, an image, a network with a large subnet: (image id, network id)."""
    project = client.project_id
    await client.request("PUT", f"/compute/v2.1/os-quota-sets/{project}", json={"quota_set": {
        "instances": -1, "cores": -1, "ram": -1}})
    await client.request("PUT", f"/volume/v3/{project}/os-quota-sets/{project}", json={
        "quota_set": {"volumes": -1, "gigabytes": -1}})
    image = (await client.request("POST", "/image/v2/images", json={
        "name": "chaos", "disk_format": "raw", "container_format": "bare"})).json()
    uploaded = await client.request(
        "PUT", f"/image/v2/images/{image['id']}/file", content=b"\0" * 4096,
        headers={"Content-Type": "application/octet-stream"})
    assert uploaded.status_code == 204, uploaded.text
    network = await client.request("POST", "/networks", base=client.network,
                                   json={"network": {"name": "chaos"}})
    assert network.status_code == 201, network.text
    network_id = network.json()["network"]["id"]
    subnet = await client.request("POST", "/subnets", base=client.network, json={"subnet": {
        "network_id": network_id, "ip_version": 4, "cidr": "10.77.0.0/21"}})
    assert subnet.status_code == 201, subnet.text
    return str(image["id"]), network_id


def _unsettled(server: dict[str, Any]) -> bool:
    return (server["status"] in TRANSIENT_STATUSES
            or server.get("OS-EXT-STS:task_state") is not None
            or (server["status"] == "ERROR" and not server.get("fault")))


async def settle(client: Client, within: float) -> list[dict[str, Any]]:
    """The servers once none is unsettled, or when ``within`` seconds passed."""
    deadline = time.monotonic() + within
    while True:
        servers = await client.servers()
        if not any(_unsettled(s) for s in servers) or time.monotonic() > deadline:
            return servers
        await asyncio.sleep(2)


async def holdings(client: Client) -> dict[str, list[tuple[str, Any]]]:
    """Who holds what: claims, compute ports and their IPs, volumes and attachments, each
    with the server (consumer, device, attachment) it belongs to."""
    placement = {"OpenStack-API-Version": "placement 1.14"}
    providers = (await client.request("GET", "/placement/resource_providers",
                                      headers=placement)).json()["resource_providers"]
    claims: list[tuple[str, Any]] = []
    for provider in providers:
        allocations = (await client.request(
            "GET", f"/placement/resource_providers/{provider['uuid']}/allocations",
            headers=placement)).json()["allocations"]
        claims += [(consumer, provider["name"]) for consumer in allocations]
    ports = await client.all_pages("/ports", "ports", base=client.network)
    compute_ports = [p for p in ports if not p["device_owner"].startswith("network:")]
    volumes = await client.all_pages(
        f"/volume/v3/{client.project_id}/volumes/detail?all_tenants=1", "volumes")
    found: dict[str, list[tuple[str, Any]]] = {}
    if client.cloud.network_agents:
        # An entry belongs to the server its port's device is; one for a DHCP port, or
        # for a port that is gone, to nobody.
        owners = {p["id"]: ("" if p["device_owner"].startswith("network:") else
                            p["device_id"]) for p in ports}
        found["dhcp_hosts"] = [(owners.get(port_id, ""), (port_id, address))
                               for _, port_id, address in client.cloud.dhcp_hosts()]
    return found | {
        "claims": claims,
        "ports": [(p["device_id"], p["id"]) for p in compute_ports],
        "ips": [(p["device_id"], ip["ip_address"]) for p in compute_ports
                for ip in p["fixed_ips"]],
        "attachments": [(a["server_id"], v["id"]) for v in volumes
                        for a in v.get("attachments", [])],
        # A boot's volume is named after its server (``<server id>-blank-vol``) by the
        # compute host that makes it: its owner even before it is attached.
        "volumes": [(next((a["server_id"] for a in v.get("attachments", [])),
                          (v.get("name") or "")[:36]), (v["id"], v["status"]))
                    for v in volumes],
    }


def network_agents_unavailable() -> str | None:
    """Why the DHCP and L2 agents cannot run here, or None."""
    if os.geteuid() != 0:
        return "the DHCP and L2 agents need root (namespaces, bridges, taps, nftables)"
    for tool in ("dnsmasq", "nft"):
        if shutil.which(tool) is None:
            return f"the DHCP and L2 agents need {tool}"
    return None


async def run_chaos(work_dir: Path, options: ChaosOptions) -> Report:
    """One chaos run in ``work_dir``: the cloud, the stream, the faults, the checks."""
    report = Report()
    hosts = options.hosts
    if options.network_agents:
        if reason := network_agents_unavailable():
            raise RuntimeError(reason)
        hosts = 1
    async with ChaosCloud(work_dir, hosts=hosts, fake_latency=options.fake_latency,
                          network_agents=options.network_agents) as cloud:
        client = Client(cloud)
        try:
            await client.login()
            image_id, network_id = await prepare(client)
            cloud.network_ids.add(network_id)
            report.network_ids.append(network_id)
            await _wait_hypervisors(client, hosts)
            load = Load(client, options, image_id, network_id)
            _progress("cloud up; first boot (probe) …")
            assert await probe(client, load), "the cloud could not boot before any fault"
            stop_deleting = asyncio.Event()
            deleter = asyncio.create_task(load.delete_in_flight(stop_deleting))
            began = time.monotonic()
            # Each fault strikes into a batch of boots of its own, posted from
            # ``fault_gap`` seconds before it on, so every fault finds boots in flight
            # however long the ones before took to recover from.
            per_fault = -(-options.boots // max(1, len(options.faults)))
            batches: list[asyncio.Task[None]] = []
            for n, fault in enumerate(options.faults):
                batch = range(n * per_fault, min(options.boots, (n + 1) * per_fault))
                batches.append(asyncio.create_task(load.run(batch)))
                await asyncio.sleep(options.fault_gap)
                _progress(f"{fault}: down for {options.restart_after} s "
                          f"({load.posted}/{options.boots} boots posted)")
                at = time.monotonic()
                await inject(cloud, fault, options.restart_after)
                recovered = await probe(client, load)
                report.recover_s[fault] = time.monotonic() - at if recovered else math.inf
                _progress(f"{fault}: a boot is ACTIVE again after "
                          f"{report.recover_s[fault]:.1f} s")
            await asyncio.gather(*batches)
            report.counts["stream_s"] = time.monotonic() - began
            # One last pass of in-flight deletes, then the cloud gets its time to settle.
            await asyncio.sleep(2)
            stop_deleting.set()
            await deleter
            settle_began = time.monotonic()
            servers = await settle(client, options.settle_within)
            if options.network_agents:
                await _dhcp_converged(client, servers, report, max(
                    30.0, options.settle_within - (time.monotonic() - settle_began)))
            report.dead_processes = cloud.dead()
            await _check(client, load, servers, report)
            await _delete_all(client, report, options.settle_within)
            report.counts.setdefault("deletes_repeated", 0.0)
            # A compute host tried a delete's release again (a service failed transiently).
            report.counts["release_retries"] = float(sum(
                cloud.log_text(name).count("trying again")
                for name in cloud.units if name.startswith("agent-")))
            if options.log_dir is not None:
                cloud.copy_logs(options.log_dir)
        finally:
            await client.aclose()
    return report


async def _wait_hypervisors(client: Client, hosts: int, within: float = 120) -> None:
    deadline = time.monotonic() + within
    while True:
        listed = (await client.request("GET", "/compute/v2.1/os-hypervisors")).json()
        if sum(h["state"] == "up" for h in listed.get("hypervisors", [])) >= hosts:
            return
        assert time.monotonic() < deadline, f"fewer than {hosts} hypervisors up: {listed}"
        await asyncio.sleep(1)


async def _check(client: Client, load: Load, servers: list[dict[str, Any]],
                 report: Report) -> None:
    live = {s["id"] for s in servers}
    stuck = [s for s in servers if _unsettled(s)]
    report.stuck_servers = [{"id": s["id"], "status": s["status"], "host": s.get(
        "OS-EXT-SRV-ATTR:host"), "task_state": s.get("OS-EXT-STS:task_state")}
        for s in stuck]
    errored = [s for s in servers if s["status"] == "ERROR" and s.get("fault")]
    report.fault_messages = Counter(str(s["fault"].get("message", ""))[:160] for s in errored)
    lost = [i for i in load.accepted if i not in live and i not in load.deleted]
    held = await holdings(client)
    leaks = {kind: [item for owner, item in items if owner not in live]
             for kind, items in held.items()}
    report.leaks = leaks
    report.counts.update({
        "boots_posted": float(load.posted), "boots_accepted": float(len(load.accepted)),
        "boots_refused": float(len(load.refused)),
        "boots_unacknowledged": float(len([s for s in servers
                                           if s["id"] not in load.accepted
                                           and s["name"] != "probe"])),
        "deleted_in_flight": float(len(load.deleted)),
        "boots_lost": float(len(lost)), "stuck": float(len(stuck)),
        "errored": float(len(errored)), "servers_live": float(len(live)),
        **{f"leaked_{kind}": float(len(items)) for kind, items in leaks.items()},
    })
    report.counts["leaked"] = float(sum(len(items) for items in leaks.values()))


def _missing_dhcp_hosts(servers: list[dict[str, Any]], ports: list[dict[str, Any]],
                        held: dict[str, list[tuple[str, Any]]]) -> list[tuple[str, str]]:
    """(port id, IP) of each ACTIVE server's port IP with no entry in a DHCP hosts file."""
    active = {s["id"] for s in servers if s["status"] == "ACTIVE"}
    entries = {entry for _, entry in held.get("dhcp_hosts", [])}
    return [(p["id"], ip["ip_address"]) for p in ports if p["device_id"] in active
            and not p["device_owner"].startswith("network:") for ip in p["fixed_ips"]
            if (p["id"], ip["ip_address"]) not in entries]


async def _dhcp_converged(client: Client, servers: list[dict[str, Any]], report: Report,
                          within: float) -> None:
    """Wait until the DHCP hosts files match the live servers' ports (none leaked, none
    missing), or ``within`` seconds passed; record how long that took."""
    began = time.monotonic()
    live = {s["id"] for s in servers}
    while True:
        held = await holdings(client)
        ports = await client.all_pages("/ports", "ports", base=client.network)
        leaked = [entry for owner, entry in held["dhcp_hosts"] if owner not in live]
        missing = _missing_dhcp_hosts(servers, ports, held)
        if (not leaked and not missing) or time.monotonic() - began > within:
            break
        await asyncio.sleep(2)
    report.counts["dhcp_converge_s"] = time.monotonic() - began
    report.counts["missing_dhcp_hosts"] = float(len(missing))
    report.missing_dhcp_hosts = missing


async def _delete_all(client: Client, report: Report, within: float) -> None:
    servers = await client.servers()
    semaphore = asyncio.Semaphore(20)

    async def one(server_id: str) -> None:
        async with semaphore:
            with contextlib.suppress(RuntimeError):
                await delete(client, server_id)

    await asyncio.gather(*(one(s["id"]) for s in servers))
    deadline = time.monotonic() + within
    while True:
        left = await client.servers()
        if not left or time.monotonic() > deadline:
            break
        # A delete that could not release a server's ports or volumes leaves it ERROR
        # (with why); as a user would, delete it again.
        failed = [s for s in left if s["status"] == "ERROR"
                  and s.get("OS-EXT-STS:task_state") is None]
        report.counts["deletes_repeated"] = report.counts.get("deletes_repeated", 0.0) + len(
            failed)
        await asyncio.gather(*(one(s["id"]) for s in failed))
        await asyncio.sleep(5)
    held = await holdings(client)
    while held.get("dhcp_hosts") and time.monotonic() < deadline + 60:
        # The DHCP agent drops a deleted port's entry on the port's event (or its resync).
        await asyncio.sleep(2)
        held = await holdings(client)
    report.counts["left_servers"] = float(len(left))
    for kind, items in held.items():
        report.counts[f"left_{kind}"] = float(len(items))
    report.counts["left"] = float(len(left) + sum(len(items) for items in held.values()))


GOALS = [
    Goal("boots_lost", 0, "<=", "accepted boots that vanished without a delete"),
    Goal("stuck", 0, "<=", "servers in BUILD or a task state (or ERROR without a fault) "
                           "once the faults are over and the cloud had time to settle"),
    Goal("leaked", 0, "<=", "claims, ports, IPs, volumes and attachments of no live server"),
    Goal("left", 0, "<=", "servers, claims, ports, IPs, volumes, attachments once every "
                          "server is deleted"),
]


async def run(args: argparse.Namespace) -> Result:
    options = ChaosOptions(
        boots=args.boots, rate=args.rate, hosts=args.hosts, volume_every=args.volume_every,
        delete_every=args.delete_every, restart_after=args.restart_after,
        fault_gap=args.fault_gap, fake_latency=args.fake_latency,
        settle_within=args.settle_within,
        faults=(tuple(f for f in args.faults.split(",") if f) if args.faults is not None
                else default_faults(args.network_agents)),
        log_dir=args.log_dir, network_agents=args.network_agents)
    with tempfile.TemporaryDirectory(prefix="stratus-bench-chaos-") as tmp:
        report = await run_chaos(Path(tmp), options)
    for message, count in report.fault_messages.most_common(5):
        _progress(f"ERROR x{count}: {message}")
    for server in report.stuck_servers[:10]:
        _progress(f"stuck: {server}")
    for kind, items in report.leaks.items():
        if items:
            _progress(f"leaked {kind}: {items[:5]}")
    if report.missing_dhcp_hosts:
        _progress(f"missing DHCP hosts: {report.missing_dhcp_hosts[:5]}")
    if report.dead_processes:
        _progress(f"processes that died: {report.dead_processes}")
    goals = GOALS + [Goal(f"recover_s_{f.replace('-', '_')}", 60, "<=",
                          "seconds from the fault until a new boot is ACTIVE again")
                     for f in options.faults]
    if options.network_agents:
        goals.append(Goal("missing_dhcp_hosts", 0, "<=",
                          "ports of ACTIVE servers without a DHCP host entry, once settled"))
        backends: dict[str, Any] = {
            "network_backend": "linuxbridge", "fake_hosts": 1,
            "dhcp_l2_agents": "one dhcp-agent and one l2-agent process (root namespace)"}
    else:
        backends = {"network_backend": "noop", "fake_hosts": options.hosts,
                    "dhcp_l2_agents": "not run: they serve the linuxbridge backend only "
                                      "(--network-agents)"}
    return Result(metrics=report.metrics, goals=goals, backends={
        "virt_driver": "fake", "database": "postgresql (private)",
        "bus": "rabbit (private node)", **backends})

