"""Network: port create/delete rate and IPAM under contention, against a real all-in-one
``stratus up --network-backend noop`` (IPAM and API; no agents).

* ``create``: ``--sequential`` port creates one at a time (latency), then ``--ports``
  creates with ``--concurrency`` in flight on a /16 (ports per second), then their deletes.
* ``contention``: ``--contended`` creates sent at once onto a subnet with 250 free
  addresses: the wall time, how many succeed (must be 250) and whether any address was
  handed out twice (must be none).

Goal: >= 200 port creates/s all-in-one (Neutron manages ~7/s under load).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from benchmarks import Goal, Result, median_metrics, overhead_rounds, percentile
from benchmarks._cloud import StratusUp, issue_token
from benchmarks._cpu import process_cpu_seconds, scheduler_seconds

DESCRIPTION = "port create/delete rate and IPAM allocation under contention (noop backend)"

CREATE_GOAL = 200.0
API = "/network/v2.0"
CONTENDED_FREE = 250


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sequential", type=int, default=100,
                        help="port creates timed one at a time (default 100)")
    parser.add_argument("--ports", type=int, default=2000,
                        help="port creates for the throughput figure (default 2000)")
    parser.add_argument("--concurrency", type=int, default=50,
                        help="requests in flight (default 50)")
    parser.add_argument("--contended", type=int, default=500,
                        help="creates sent at once onto 250 free addresses (default 500)")
    parser.add_argument("--tracing-overhead", action="store_true",
                        help="also run with tracing off (metrics tracing_off_*) and report "
                             "what tracing, the span store and the metrics cost per create")
    parser.add_argument("--overhead-rounds", type=int, default=3,
                        help="--tracing-overhead: off/on pairs, alternated; figures are the "
                             "medians (default 3)")


async def _rate(count: int, concurrency: int, action: Any) -> float:
    """Run ``action(i)`` for i < count, ``concurrency`` at a time; the seconds taken."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            await action(queue.get_nowait())

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def _rate_each(clients: list[httpx.AsyncClient], count: int,
                     action: Callable[[httpx.AsyncClient, int], Awaitable[None]]) -> float:
    """Run ``action(client, i)`` for i < count, one worker per client (each of its own
    connection), so ``len(clients)`` at a time; the seconds taken."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            await action(client, queue.get_nowait())

    started = time.perf_counter()
    await asyncio.gather(*(worker(client) for client in clients))
    return time.perf_counter() - started


def _no_sniffio() -> None:
    """httpcore asks which async library runs it with ``import sniffio`` on every lock and
    event it sets up (several per request); sniffio is not installed here, and a failed
    import searches the whole ``sys.path`` again each time (a quarter of this client's CPU
    per create). A None in ``sys.modules`` fails that import at once, as it fails anyway:
    httpcore then assumes asyncio, as it does without sniffio."""
    try:
        import sniffio  # noqa: F401
    except ImportError:
        sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def _worker_clients(client: httpx.AsyncClient,
                          count: int) -> AsyncIterator[list[httpx.AsyncClient]]:
    """``count`` clients of ``client``'s server, one connection each (kept alive): a
    worker's requests go one after the other on its own connection. One pool shared by
    every worker made the client's pool bookkeeping (httpcore scans its connections, and
    asks each whether its socket is readable, on every request's start and end) grow with
    the requests in flight: this client's CPU per create was more than the server's."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(httpx.AsyncClient(
            base_url=client.base_url, timeout=300, limits=limits, verify=False))
            for _ in range(count)]


async def run(args: argparse.Namespace) -> Result:
    _no_sniffio()
    os.environ["STRATUS_NETWORK__BACKEND"] = "noop"
    runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for order in overhead_rounds(args.overhead_rounds) if args.tracing_overhead else [(True,)]:
        for tracing in order:
            runs[tracing].append(await _one_cloud(args, tracing))
    metrics = median_metrics(runs[True])
    goals = [
        Goal("port_creates_per_s", CREATE_GOAL, ">=",
             f"{args.ports} creates, {args.concurrency} in flight, all-in-one SQLite "
             "(Neutron: ~7/s under load)"),
        Goal("contended_created", CONTENDED_FREE, "==",
             f"{args.contended} creates at once for {CONTENDED_FREE} free addresses"),
        Goal("contended_duplicate_addresses", 0, "==", "an address is never given twice"),
    ]
    if args.tracing_overhead:
        off = median_metrics(runs[False])
        metrics.update({f"tracing_off_{k}": v for k, v in off.items()})
        metrics["tracing_overhead_rounds"] = args.overhead_rounds
        name = "port_create_server_cpu_ms"
        metrics[f"tracing_overhead_{name}_percent"] = (metrics[name] / off[name] - 1) * 100
        goals.append(Goal(f"tracing_overhead_{name}_percent", 5.0, "<=",
                          "server CPU per create with tracing, the span store and metrics on, "
                          "over the same with tracing off (medians of alternated runs)"))
    return Result(metrics=metrics, goals=goals, backends={
        "network_backend": "noop", "bus": "memory://", "database": "sqlite"})


async def _one_cloud(args: argparse.Namespace, tracing: bool) -> dict[str, float]:
    """One ``stratus up`` measured; tracing off sets ``STRATUS_TRACING__ENABLED=false``."""
    env = {} if tracing else {"STRATUS_TRACING__ENABLED": "false"}
    with tempfile.TemporaryDirectory(prefix="stratus-bench-network-") as tmp:
        async with StratusUp(Path(tmp) / "data", bcrypt_rounds=4, env=env) as cloud:
            await cloud.wait_ready()
            limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
            async with httpx.AsyncClient(base_url=cloud.base_url, timeout=300,
                                         limits=limits) as client:
                password = cloud.admin_password()
                assert password is not None
                headers = {"X-Auth-Token": await issue_token(client, cloud.identity_url,
                                                             password)}
                return await _measure(client, headers, args, cloud.pid)


async def _network(client: httpx.AsyncClient, headers: dict[str, str], cidr: str,
                   **subnet: Any) -> str:
    net = (await client.post(f"{API}/networks", headers=headers, json={
        "network": {"name": f"bench-{cidr}"}})).json()["network"]
    response = await client.post(f"{API}/subnets", headers=headers, json={"subnet": {
        "network_id": net["id"], "cidr": cidr, "ip_version": 4, **subnet}})
    assert response.status_code == 201, response.text
    return str(net["id"])


def _cpu_seconds(pid: int) -> float:
    """CPU time the server process has used so far (to the nanosecond, ``_cpu``)."""
    return process_cpu_seconds(pid)


async def _measure(client: httpx.AsyncClient, headers: dict[str, str],
                   args: argparse.Namespace, server_pid: int) -> dict[str, float]:
    big = await _network(client, headers, "10.100.0.0/16")
    body = {"port": {"network_id": big}}
    latencies = []
    for _ in range(args.sequential):
        started = time.perf_counter()
        response = await client.post(f"{API}/ports", headers=headers, json=body)
        latencies.append(time.perf_counter() - started)
        assert response.status_code == 201, response.text

    created: list[str] = []
    transport_errors = 0

    async def create(client: httpx.AsyncClient, _: int) -> None:
        nonlocal transport_errors
        try:
            response = await client.post(f"{API}/ports", headers=headers, json=body)
        except httpx.TransportError:
            # A kept-alive connection the server closed as it was reused: counted, not
            # retried (a POST), so a loaded machine's figure stays honest.
            transport_errors += 1
            return
        assert response.status_code == 201, response.text
        created.append(response.json()["port"]["id"])

    async with _worker_clients(client, args.concurrency) as clients:
        for each in clients:  # each worker's connection opened before the clock starts
            response = await each.get(f"{API}/ports", headers=headers,
                                      params={"limit": 1, "fields": "id"})
            assert response.status_code == 200, response.text
        cpu_before = _cpu_seconds(server_pid)
        # Which side bounds the rate: the server's event loop (its thread on a CPU, or
        # runnable and waiting for one, over the phase's wall time) or this client, which
        # shares the machine's CPUs with it (its CPU per create, its loop's share of the
        # wall).
        server_loop_before = scheduler_seconds(server_pid, main_thread_only=True)
        client_loop_before = scheduler_seconds(os.getpid(), main_thread_only=True)
        client_cpu_before = time.process_time()
        create_s = await _rate_each(clients, args.ports, create)
        create_cpu = _cpu_seconds(server_pid) - cpu_before
        client_cpu = time.process_time() - client_cpu_before
        server_loop = [after - before for after, before in zip(
            scheduler_seconds(server_pid, main_thread_only=True), server_loop_before,
            strict=True)]
        client_loop = [after - before for after, before in zip(
            scheduler_seconds(os.getpid(), main_thread_only=True), client_loop_before,
            strict=True)]

        async def delete(client: httpx.AsyncClient, i: int) -> None:
            response = await client.delete(f"{API}/ports/{created[i]}", headers=headers)
            assert response.status_code == 204, response.text

        delete_s = await _rate_each(clients, len(created), delete)

    small = await _network(client, headers, "10.101.0.0/24", allocation_pools=[
        {"start": "10.101.0.2", "end": f"10.101.0.{CONTENDED_FREE + 1}"}])
    started = time.perf_counter()
    responses = await asyncio.gather(*(
        client.post(f"{API}/ports", headers=headers, json={"port": {"network_id": small}})
        for _ in range(args.contended)))
    contended_s = time.perf_counter() - started
    statuses = Counter(r.status_code for r in responses)
    addresses = [r.json()["port"]["fixed_ips"][0]["ip_address"] for r in responses
                 if r.status_code == 201]
    return {
        "port_create_p50_ms": percentile(latencies, 50) * 1e3,
        "port_create_p95_ms": percentile(latencies, 95) * 1e3,
        "port_creates_per_s": len(created) / create_s,
        "port_create_transport_errors": float(transport_errors),
        # The server's CPU per create hardly moves with other load on the machine, unlike
        # the rate: 1000 / this is the rate one idle core would sustain.
        "port_create_server_cpu_ms": create_cpu / max(len(created), 1) * 1e3,
        "port_create_client_cpu_ms": client_cpu / max(len(created), 1) * 1e3,
        # Shares of the create phase's wall time: the server's loop thread on a CPU and
        # runnable waiting for one (near 1 together: the server's loop bounds the rate);
        # the same of this client's loop.
        "port_create_server_loop_ran": server_loop[0] / create_s,
        "port_create_server_loop_waited": server_loop[1] / create_s,
        "port_create_client_loop_ran": client_loop[0] / create_s,
        "port_create_client_loop_waited": client_loop[1] / create_s,
        "port_deletes_per_s": len(created) / delete_s,
        "contended_total_s": contended_s,
        "contended_requests_per_s": args.contended / contended_s,
        "contended_created": float(statuses.get(201, 0)),
        "contended_refused_409": float(statuses.get(409, 0)),
        "contended_other_status": float(sum(v for k, v in statuses.items()
                                            if k not in (201, 409))),
        "contended_duplicate_addresses": float(len(addresses) - len(set(addresses))),
    }
