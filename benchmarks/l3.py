"""Routers and floating IPs: the l3-agent of a real ``stratus up`` (linuxbridge backend, fake
virt driver), timed as a user sees it. Needs root, dnsmasq and nft.

The cloud's ``public`` network gets a bridge and range of its own (no masquerade: nothing
leaves the machine). A router joins it to ``private``; a namespace guest on ``private``
(its address by DHCP, default route the router) runs a TCP echo listener. The host holds the
external gateway address on the public bridge, so it is "the outside".

* ``router_interface_ready``: ``PUT /routers/{id}/add_router_interface`` answered → the
  router's namespace holds the interface's leg;
* ``fip_reply``: ``PUT /floatingips/{id}`` with ``port_id`` (what ``openstack floating ip
  set --port`` sends) answered → the first echo reply from the guest through the floating
  IP to a TCP connection from the host (``--floating-ips`` rounds; between rounds the
  floating IP is disassociated and seen unreachable again); ``fip_put_answered`` is the
  API's part of it (the PUT's answer);
* ``sg_rule_closes`` / ``sg_rule_opens``: the guest's only ingress TCP rule deleted → new
  connections through the floating IP go unanswered; created again → the first reply
  (``--rules`` rounds; a silence is seen within the 0.2 s a probe waits): the
  l2-agent's firewall, rule to effect;
* ``sg_port_creates_per_s``: ``--sg-ports`` port creates (``--sg-concurrency`` in flight)
  on a tenant network of its own (a /16 with DHCP), each taking the project's ``default``
  group, which holds its remote-group rules and a few more (SSH, ICMP, DNS, the TCP rule
  above): every create changes the group's members, so the dhcp-agent hears of the port and
  the l2-agent refetches and re-applies the guest's firewall (the guest is in that group)
  while the creates go on, in the same process as the API. ``sg_members_converged`` is the
  last create's answer → its address in the guest's remote-group set in the kernel;
  ``sg_port_create_server_cpu_ms`` the server's CPU (API and agents) per create and
  ``sg_port_create_nft_cpu_ms`` its ``nft`` runs'; then the ports are deleted
  (``sg_port_deletes_per_s``);
* ``sg_member_apply_cpu_ms``: before the cloud starts, the l2-agent's firewall driver alone
  (``_firewall.py``): CPU per member added to a 1000-member remote group as it applies now,
  against ``sg_member_replace_nft_cpu_ms``, the whole ruleset replaced by an ``nft`` process
  (how it applied before), alternated in one run; ``sg_member_apply_cpu_ratio`` the
  second over the first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from benchmarks import Goal, Result, percentile
from benchmarks._cloud import StratusUp, issue_token
from benchmarks._cpu import scheduler_seconds
from benchmarks._firewall import member_apply_cpu
from benchmarks.network import _rate
from stratus.network.agents import linux
from stratus.network.agents.l2.firewall import FAMILIES
from stratus.network.agents.l3.router import internal_device
from stratus.network.objects import bridge_name, router_namespace, tap_name
from tests.integration.network_agents.guest import Guest

DESCRIPTION = ("routers and floating IPs: interface add to leg in place, floating IP "
               "association to the first reply through it")

NET = "/network/v2.0"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--floating-ips", type=int, default=10,
                        help="associate/first-reply/disassociate rounds (default 10)")
    parser.add_argument("--rules", type=int, default=10,
                        help="security group rule delete/create rounds through the floating "
                             "IP (default 10)")
    parser.add_argument("--sg-ports", type=int, default=1000,
                        help="port creates with security groups on for the rate figure "
                             "(default 1000)")
    parser.add_argument("--sg-concurrency", type=int, default=50,
                        help="port creates in flight (default 50)")
    parser.add_argument("--sg-apply-rounds", type=int, default=100,
                        help="members added one at a time to a 1000-member remote group, "
                             "the firewall driver alone in this process (0 skips)")
    parser.add_argument("--sg-count-statements", action="store_true",
                        help="run the server under benchmarks/profiles/counted_server.py and "
                             "report the SQL statements per port create")


class EchoServer:
    """A TCP echo listener inside a namespace, served by a thread."""

    def __init__(self, namespace: str) -> None:
        with linux.entered(namespace):
            self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("0.0.0.0", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                with contextlib.suppress(OSError):
                    conn.settimeout(2)
                    conn.sendall(conn.recv(64))

    def close(self) -> None:
        self.sock.close()


async def _echo(address: str, port: int, within: float) -> bool:
    """One TCP connection from this (host) namespace: True when the echo came back."""
    try:
        async with asyncio.timeout(within):
            reader, writer = await asyncio.open_connection(address, port)
            try:
                writer.write(b"ping")
                return await reader.read(16) == b"ping"
            finally:
                writer.close()
    except (OSError, TimeoutError):
        return False


async def _first_reply(address: str, port: int, within: float = 30.0) -> float:
    """Seconds until an echo comes back through ``address``: a new connection every 10 ms
    (a SYN sent before the NAT is in place is lost and would wait for its retransmission),
    each given a second; the first answered wins."""
    started = time.perf_counter()
    attempts: set[asyncio.Task[bool]] = set()
    try:
        while time.perf_counter() - started < within:
            attempts.add(asyncio.create_task(_echo(address, port, 1.0)))
            done, _ = await asyncio.wait(attempts, timeout=0.01)
            if any(task.result() for task in done):
                return time.perf_counter() - started
            attempts -= done
        raise RuntimeError(f"{address}:{port} never answered within {within}s")
    finally:
        for task in attempts:
            task.cancel()
        await asyncio.gather(*attempts, return_exceptions=True)


async def _until_silent(address: str, port: int, within: float = 30.0) -> None:
    started = time.perf_counter()
    while await _echo(address, port, 0.2):
        if time.perf_counter() - started > within:
            raise RuntimeError(f"{address}:{port} still answers after {within}s")
        await asyncio.sleep(0.01)


def _ms(values: list[float], prefix: str) -> dict[str, float]:
    return {f"{prefix}_p50_ms": percentile(values, 50) * 1e3,
            f"{prefix}_p95_ms": percentile(values, 95) * 1e3}


async def _call(client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str],
                body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = await client.request(method, f"{NET}{path}", headers=headers, json=body)
    if response.status_code >= 300:
        raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")
    return response.json() if response.content else {}


#: Rules "a few" a project adds to its default group besides the benchmark's TCP rule.
EXTRA_RULES = ({"protocol": "tcp", "port_range_min": 22, "port_range_max": 22},
               {"protocol": "icmp"},
               {"protocol": "udp", "port_range_min": 53, "port_range_max": 53})


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU time the server used so far, its own and its finished children's (``nft``)."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return (float(times.user + times.system),
            float(times.children_user + times.children_system))


async def _bus_messages_sent(client: httpx.AsyncClient) -> float:
    """Messages the server sent on its bus so far (``/metrics``), every kind and method."""
    response = await client.get("/metrics")
    response.raise_for_status()
    return sum(float(line.rsplit(" ", 1)[1]) for line in response.text.splitlines()
               if line.startswith("stratus_bus_messages_sent_total{"))


def _in_remote_group_set(table: str, group_id: str, address: str) -> bool:
    """Whether the l2-agent's ruleset has ``address`` among the group's IPv4 members."""
    name = f"rg4-{group_id.replace('-', '')}"
    return subprocess.run(["nft", "get", "element", FAMILIES[1], table, name,
                           f"{{ {address} }}"], capture_output=True).returncode == 0


class _Counted:
    """The server's SQL statements, counted by ``counted_server.py`` between two signals
    (None: the server runs plain)."""

    def __init__(self, out: Path | None, pid: int) -> None:
        self.out, self.pid = out, pid

    def start(self) -> None:
        if self.out is not None:
            os.kill(self.pid, signal.SIGUSR1)

    async def stop(self) -> int | None:
        """Statements sent since ``start``, those of the work that followed included
        (the agents' fetches and applies are done by the time the last member converged)."""
        if self.out is None:
            return None
        os.kill(self.pid, signal.SIGUSR2)
        done = self.out.with_suffix(".done")
        for _ in range(1200):
            if done.exists():
                break
            await asyncio.sleep(0.05)
        else:
            raise RuntimeError("the counted server never wrote its counts")
        counts = json.loads(self.out.with_suffix(".json").read_text())
        # Which statements, for whoever looks for the next thing to cut (progress: stderr).
        for text, count in counts["stmts"][:15]:
            print(f"  sql x{count}: {text}", file=sys.stderr)
        return int(counts["sql"])


def _phase(name: str) -> None:
    """Say which phase of the creates runs (``$L3_PHASE_FILE``), for a profiler started
    and stopped around it."""
    path = os.environ.get("L3_PHASE_FILE")
    if path:
        Path(path).write_text(name)


async def _sg_ports(client: httpx.AsyncClient, headers: dict[str, str], group_id: str,
                    table: str, args: argparse.Namespace, server_pid: int,
                    counted: _Counted) -> dict[str, float]:
    """Port creates/s with the default group (and its rules) on every port, the l2-agent's
    firewall and the dhcp-agent following; then the deletes."""
    for rule in EXTRA_RULES:
        await _call(client, "POST", "/security-group-rules", headers, {"security_group_rule": {
            "security_group_id": group_id, "direction": "ingress", "ethertype": "IPv4",
            "remote_ip_prefix": "0.0.0.0/0", **rule}})
    network = (await _call(client, "POST", "/networks", headers,
                           {"network": {"name": "bench-sg"}}))["network"]
    await _call(client, "POST", "/subnets", headers, {"subnet": {
        "network_id": network["id"], "cidr": "10.102.0.0/16", "ip_version": 4}})
    body = {"port": {"network_id": network["id"]}}
    created: list[dict[str, Any]] = []
    last: list[float] = []

    async def create(_: int) -> None:
        port = (await _call(client, "POST", "/ports", headers, body))["port"]
        assert port["security_groups"] == [group_id], port["security_groups"]
        created.append(port)
        last.append(time.perf_counter())

    _phase("creates")
    messages_before = await _bus_messages_sent(client)
    counted.start()
    cpu_before, children_before = _cpu_seconds(server_pid)
    loop_before = scheduler_seconds(server_pid, main_thread_only=True)
    threads_before = scheduler_seconds(server_pid)
    client_before = time.process_time()
    create_s = await _rate(args.sg_ports, args.sg_concurrency, create)
    client_cpu = time.process_time() - client_before
    cpu_after, children_after = _cpu_seconds(server_pid)
    loop_after = scheduler_seconds(server_pid, main_thread_only=True)
    threads_after = scheduler_seconds(server_pid)
    # The last port answered: its address reaches the guest's firewall.
    address = created[-1]["fixed_ips"][0]["ip_address"]
    while not await asyncio.to_thread(_in_remote_group_set, table, group_id, address):
        if time.perf_counter() - last[-1] > 60:
            raise RuntimeError(f"{address} never reached the remote group's set")
        await asyncio.sleep(0.005)
    converged = time.perf_counter() - last[-1]
    statements = await counted.stop()
    messages = await _bus_messages_sent(client) - messages_before

    async def delete(i: int) -> None:
        await _call(client, "DELETE", f"/ports/{created[i]['id']}", headers)

    _phase("deletes")
    delete_s = await _rate(len(created), args.sg_concurrency, delete)
    _phase("done")
    if statements is not None:
        sql = {"sg_port_create_sql_statements": statements / len(created)}
    else:
        sql = {}
    return {**sql,"sg_port_creates_per_s": len(created) / create_s,
            # The rate follows the machine's load; the CPU per create hardly does:
            # 1000 / it is the rate one idle core would sustain.
            "sg_port_create_server_cpu_ms": (cpu_after - cpu_before) / len(created) * 1e3,
            # Bus messages sent in the server's process (it runs the agents too): the API's
            # notices to the agents and the agents' questions back, until the last converged.
            "sg_port_create_bus_messages": messages / len(created),
            "sg_port_create_nft_cpu_ms": (children_after - children_before) / len(created)
                                         * 1e3,
            "sg_members_converged_ms": converged * 1e3,
            # Where the creates' wall time went in the server's event loop: running, and
            # runnable but kept off the CPUs by the machine's other load; the rest it waited
            # (on its database thread, its agents' timers, the client).
            "sg_port_create_loop_run_share": (loop_after[0] - loop_before[0]) / create_s,
            "sg_port_create_loop_runq_share": (loop_after[1] - loop_before[1]) / create_s,
            "sg_port_create_server_runq_ms": (threads_after[1] - threads_before[1])
                                             / len(created) * 1e3,
            "sg_port_create_client_cpu_ms": client_cpu / len(created) * 1e3,
            "sg_port_deletes_per_s": len(created) / delete_s}


def _has_leg(namespace: str, device: str) -> bool:
    if not linux.namespace_exists(namespace):
        return False
    try:
        with linux.ipr_in(namespace) as ns:
            return bool(ns.link_lookup(ifname=device))
    except OSError:
        # The namespace's file is there before its mount: setns refuses it (EINVAL) for a
        # moment while the agent makes it.
        return False


async def run(args: argparse.Namespace) -> Result:
    if os.geteuid() != 0:
        raise RuntimeError("the l3 benchmark needs root (namespaces, bridges, nft, dnsmasq)")
    tag = uuid.uuid4().hex[:8]
    host = f"bench-{tag}"
    table = f"sg-bench-{tag}"  # its own tables: never another cloud's on this machine
    env = {"STRATUS_NETWORK__BACKEND": "linuxbridge", "STRATUS_COMPUTE__VIRT_DRIVER": "fake",
           "STRATUS_COMPUTE__HOST": host, "STRATUS_NETWORK__FIREWALL_TABLE": table,
           "STRATUS_NETWORK__PHYSICAL_BRIDGES": f"public:bx{tag}",
           "STRATUS_NETWORK__EXTERNAL_SUBNET_CIDR":
               f"198.{random.randint(18, 19)}.{random.randint(0, 255)}.0/24",
           "STRATUS_NETWORK__EXTERNAL_MASQUERADE": "false"}
    router_ready: list[float] = []
    replies: list[float] = []
    answers: list[float] = []
    rule_opened: list[float] = []
    rule_closed: list[float] = []
    sg_ports: dict[str, float] = {}
    # First, on a quiet process: the firewall driver's own cost per member change.
    sg_apply = await member_apply_cpu(args.sg_apply_rounds) if args.sg_apply_rounds else {}
    try:
        with tempfile.TemporaryDirectory(prefix="stratus-bench-l3-") as tmp:
            counted_out = Path(tmp) / "counted" if args.sg_count_statements else None
            if counted_out is not None:
                env["PROF_OUT"] = str(counted_out)
            command = ([sys.executable, str(Path(__file__).parent / "profiles"
                                            / "counted_server.py")]
                       if counted_out is not None else None)
            async with (StratusUp(Path(tmp) / "data", bcrypt_rounds=4, env=env,
                                  command=command) as cloud,
                        httpx.AsyncClient(base_url=cloud.base_url, timeout=120) as client):
                password = cloud.admin_password()
                assert password is not None
                headers = {"X-Auth-Token": await issue_token(client, cloud.identity_url,
                                                             password)}
                public = (await _call(client, "GET", "/networks?name=public",
                                      headers))["networks"][0]
                private = (await _call(client, "GET", "/networks?name=private",
                                       headers))["networks"][0]
                subnet_id = private["subnets"][0]
                router = (await _call(client, "POST", "/routers", headers, {"router": {
                    "name": "bench", "external_gateway_info": {"network_id": public["id"]}}}
                ))["router"]
                namespace = router_namespace(router["id"])
                started = time.perf_counter()
                interface = await _call(client, "PUT",
                                        f"/routers/{router['id']}/add_router_interface",
                                        headers, {"subnet_id": subnet_id})
                leg = internal_device(interface["port_id"])
                while not await asyncio.to_thread(_has_leg, namespace, leg):
                    if time.perf_counter() - started > 30:
                        raise RuntimeError("the router's interface never appeared")
                    await asyncio.sleep(0.001)
                router_ready.append(time.perf_counter() - started)

                port = (await _call(client, "POST", "/ports", headers, {"port": {
                    "network_id": private["id"], "device_id": f"bench-{tag}",
                    "device_owner": "compute:bench"}}))["port"]
                group_id = port["security_groups"][0]
                open_tcp = {"security_group_rule": {
                    "security_group_id": group_id, "direction": "ingress", "ethertype": "IPv4",
                    "protocol": "tcp", "remote_ip_prefix": "0.0.0.0/0"}}
                rule_id = (await _call(client, "POST", "/security-group-rules", headers,
                                       open_tcp))["security_group_rule"]["id"]
                fip = (await _call(client, "POST", "/floatingips", headers, {"floatingip": {
                    "floating_network_id": public["id"]}}))["floatingip"]
                address = fip["floating_ip_address"]
                # The guest is the port's tap: bound here, the l2-agent enslaves it and its
                # firewall filters it.
                async with Guest(bridge_name(private["id"]), port["mac_address"],
                                 Path(tmp) / "guest", outside_name=tap_name(port["id"])) as guest:
                    await _call(client, "PUT", f"/ports/{port['id']}", headers,
                                {"port": {"binding:host_id": host}})
                    started = time.perf_counter()
                    while (await _call(client, "GET", f"/ports/{port['id']}",
                                       headers))["port"]["status"] != "ACTIVE":
                        if time.perf_counter() - started > 30:
                            raise RuntimeError("the guest's port never became ACTIVE")
                        await asyncio.sleep(0.05)
                    await guest.dhcp()
                    echo = await asyncio.to_thread(EchoServer, guest.namespace)
                    try:
                        for _ in range(args.floating_ips):
                            started = time.perf_counter()
                            await _call(client, "PUT", f"/floatingips/{fip['id']}", headers,
                                        {"floatingip": {"port_id": port["id"]}})
                            answers.append(time.perf_counter() - started)
                            await _first_reply(address, echo.port)
                            replies.append(time.perf_counter() - started)
                            await _call(client, "PUT", f"/floatingips/{fip['id']}", headers,
                                        {"floatingip": {"port_id": None}})
                            await _until_silent(address, echo.port)
                        await _call(client, "PUT", f"/floatingips/{fip['id']}", headers,
                                    {"floatingip": {"port_id": port["id"]}})
                        await _first_reply(address, echo.port)
                        for _ in range(args.rules):
                            started = time.perf_counter()
                            await _call(client, "DELETE", f"/security-group-rules/{rule_id}",
                                        headers)
                            await _until_silent(address, echo.port)
                            rule_closed.append(time.perf_counter() - started)
                            started = time.perf_counter()
                            rule_id = (await _call(client, "POST", "/security-group-rules",
                                                   headers, open_tcp))["security_group_rule"]["id"]
                            await _first_reply(address, echo.port)
                            rule_opened.append(time.perf_counter() - started)
                        if args.sg_ports:
                            sg_ports = await _sg_ports(client, headers, group_id, table, args,
                                                       cloud.pid,
                                                       _Counted(counted_out, cloud.pid))
                    finally:
                        echo.close()
    finally:  # the public network's bridge is the host's: stratus up leaves it
        await asyncio.to_thread(linux.delete_link, f"bx{tag}")
    metrics = {**_ms(router_ready, "router_interface_ready"), **_ms(replies, "fip_reply"),
               **_ms(answers, "fip_put_answered"), **_ms(rule_opened, "sg_rule_opens"),
               **_ms(rule_closed, "sg_rule_closes"), **sg_ports, **sg_apply}
    goals = []
    if sg_ports:
        goals.append(Goal("sg_port_creates_per_s", 200.0, ">=",
                          f"{args.sg_ports} creates, {args.sg_concurrency} in flight, the "
                          "default group with rules on each, l2- and dhcp-agents following "
                          "(Neutron: ~7/s under load)"))
    return Result(metrics=metrics, goals=[*goals,
        Goal("fip_reply_p50_ms", 1000.0, "<=",
             "floating IP set --port answered to the first reply through it"),
        Goal("sg_rule_opens_p95_ms", 1000.0, "<=",
             "security group rule created → the first new connection it admits"),
        Goal("sg_rule_closes_p95_ms", 1000.0, "<=",
             "security group rule deleted → new connections refused"),
    ], backends={"network_backend": "linuxbridge", "virt_driver": "fake",
                 "bus": "memory://", "database": "sqlite"})
