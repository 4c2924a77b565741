"""Bus: casts per second and call round trips, in-process (``memory://``) and on RabbitMQ.

Everything goes through the real ``stratus.core.bus`` (RPCClient, RPCServer, envelopes,
validation), in this process, on the standard asyncio event loop (as ``stratus up`` runs).
For each transport, each repeat uses a fresh topic:

* ``cast``: ``--casts`` casts with ``--concurrency`` in flight (memory: one sender, it never
  waits), no server listening yet, so the figure is the sending side. On RabbitMQ a cast returns
  when the broker confirmed it (persistent message, durable quorum queue); in-process when it
  is queued. Per-cast latency percentiles come from the same run.
* ``handled``: then a server (one connection of its own, prefetch 32) drains those casts:
  decode, validate, span, run a no-op handler, ack.
* ``call``: ``--calls`` calls one at a time to a server in this process (its own connection):
  the round trip a caller sees (request queue, handler, reply queue).

Figures are medians over ``--repeats``. On RabbitMQ the queues the run made are deleted at
the end; nothing else on the broker is touched.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import os
import statistics
import sys
import time
from typing import Any

from benchmarks import Goal, Result, latency_metrics
from stratus.core.bus import RPCClient, RPCServer, Target, get_transport
from stratus.core.bus.url import TransportURL
from stratus.core.context import RequestContext

DESCRIPTION = ("bus casts/s (confirmed on RabbitMQ) and call round-trip p50/p99, "
               "memory:// and RabbitMQ")

MEMORY_CAST_GOAL = 100_000.0
RABBIT_CAST_GOAL = 5_000.0
RABBIT_CALL_P50_GOAL_MS = 1.0
DEFAULT_RABBIT_URL = "rabbit://guest:guest@127.0.0.1:5672/"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--transports", default="memory,rabbit",
                        help="comma-separated: memory, rabbit (default both)")
    parser.add_argument("--rabbit-url", default=DEFAULT_RABBIT_URL,
                        help=f"RabbitMQ to measure (default {DEFAULT_RABBIT_URL})")
    parser.add_argument("--memory-casts", type=int, default=200_000,
                        help="casts per repeat on memory:// (default 200000)")
    parser.add_argument("--rabbit-casts", type=int, default=10_000,
                        help="casts per repeat on RabbitMQ (default 10000)")
    parser.add_argument("--concurrency", type=int, default=256,
                        help="RabbitMQ casts in flight at once (default 256)")
    parser.add_argument("--calls", type=int, default=2000,
                        help="calls per repeat, one at a time (default 2000)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs per transport; figures are medians (default 3)")


def _progress(message: str) -> None:
    print(f"[bus] {message}", file=sys.stderr, flush=True)


class Sink:
    """The benchmark's manager: counts casts, answers calls."""

    def __init__(self) -> None:
        self.handled = 0
        self.done = asyncio.Event()
        self.expected = 0

    async def noop(self, ctx: RequestContext, seq: int) -> None:
        self.handled += 1
        if self.handled >= self.expected:
            self.done.set()

    async def echo(self, ctx: RequestContext, seq: int) -> int:
        return seq


def _context() -> RequestContext:
    return RequestContext(user_id="bench-user", project_id="bench-project",
                          roles=["member"], global_request_id=None)


async def _casts(client: RPCClient, count: int, concurrency: int) -> tuple[list[float], float]:
    ctx = _context()
    latencies: list[float] = []
    clock = time.perf_counter
    if concurrency <= 1:
        began = clock()
        for seq in range(count):
            start = clock()
            await client.cast(ctx, "noop", seq=seq)
            latencies.append(clock() - start)
        return latencies, clock() - began

    next_seq = iter(range(count))

    async def sender() -> None:
        for seq in next_seq:
            start = clock()
            await client.cast(ctx, "noop", seq=seq)
            latencies.append(clock() - start)

    began = clock()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    return latencies, clock() - began


async def _calls(client: RPCClient, count: int) -> tuple[list[float], float]:
    ctx = _context()
    latencies: list[float] = []
    clock = time.perf_counter
    began = clock()
    for seq in range(count):
        start = clock()
        await client.call(ctx, "echo", seq=seq)
        latencies.append(clock() - start)
    return latencies, clock() - began


async def _one_repeat(url: str, name: str, casts: int, concurrency: int, calls: int,
                      topics: list[str]) -> dict[str, float]:
    topic = f"bench-{os.urandom(4).hex()}"
    topics.append(topic)
    sender = get_transport(url)
    receiver = get_transport(url)
    await sender.start()
    await receiver.start()
    try:
        client = RPCClient(sender, Target(topic), timeout=30)
        warm = max(100, casts // 50)
        sink = Sink()
        sink.expected = casts + warm
        await _casts(client, warm, concurrency)
        cpu_before = time.process_time()
        latencies, elapsed = await _casts(client, casts, concurrency)
        cpu = time.process_time() - cpu_before
        metrics = latency_metrics(f"{name}_cast", latencies, elapsed, "ms")
        metrics[f"{name}_cast_cpu_us"] = cpu / casts * 1e6

        server = RPCServer(receiver, Target(topic), sink, ["noop", "echo"])
        began = time.perf_counter()
        await server.start()
        await asyncio.wait_for(sink.done.wait(), 600)
        metrics[f"{name}_handled_per_s"] = sink.handled / (time.perf_counter() - began)

        await _calls(client, max(50, calls // 20))
        latencies, elapsed = await _calls(client, calls)
        metrics.update(latency_metrics(f"{name}_call", latencies, elapsed, "ms"))
        await server.stop()
        return metrics
    finally:
        await sender.close()
        await receiver.close()


async def _amqp(url: str) -> Any:
    """A plain aiormq connection to the URL's first node (for facts and cleanup)."""
    import aiormq

    parsed = TransportURL.parse(url)
    host = parsed.hosts[0]
    vhost = "" if parsed.virtual_host == "/" else parsed.virtual_host
    return await aiormq.connect(f"amqp://{host.username or 'guest'}:"
                                f"{host.password or 'guest'}@{host.host}:{host.port}/{vhost}")


async def _rabbit_details(url: str) -> dict[str, Any]:
    connection = await _amqp(url)
    try:
        version = (connection.server_properties or {}).get("version")
        return {"rabbitmq_version": version.decode() if isinstance(version, bytes)
                else version, "rabbitmq_url": str(TransportURL.parse(url))}
    finally:
        await connection.close()


async def _delete_topics(url: str, topics: list[str]) -> None:
    """Remove the queues and exchanges the run declared (RabbitMQ keeps durable ones)."""
    from stratus.core.bus.target import (
        call_queue,
        cast_queue,
        dead_letter_queue,
        fanout_exchange,
    )

    if not topics:
        return
    connection = await _amqp(url)
    try:
        channel = await connection.channel()
        for topic in topics:
            for queue in (cast_queue(topic), call_queue(topic), dead_letter_queue(topic)):
                await channel.queue_delete(queue)
            await channel.exchange_delete(fanout_exchange(topic))
    finally:
        await connection.close()


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


async def run(args: argparse.Namespace) -> Result:
    wanted = [t.strip() for t in args.transports.split(",") if t.strip()]
    unknown = set(wanted) - {"memory", "rabbit"}
    if unknown or not wanted:
        raise SystemExit(f"--transports: unknown {sorted(unknown)}; use memory and/or rabbit")
    metrics: dict[str, float] = {}
    backends: dict[str, Any] = {
        "bus_transports": wanted,
        "event_loop": type(asyncio.get_running_loop()).__module__,
    }
    for package in ("aio-pika", "aiormq", "pamqp"):
        try:
            backends[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            backends[package] = None

    if "memory" in wanted:
        runs = []
        for repeat in range(args.repeats):
            _progress(f"memory:// repeat {repeat + 1}/{args.repeats}")
            runs.append(await _one_repeat(f"memory://bench-{repeat}", "memory",
                                          args.memory_casts, 1, args.calls, []))
        metrics.update(_median(runs))

    if "rabbit" in wanted:
        backends.update(await _rabbit_details(args.rabbit_url))
        backends["rabbit_cast_queue"] = "quorum, durable, persistent messages, confirms"
        runs = []
        topics: list[str] = []
        try:
            for repeat in range(args.repeats):
                _progress(f"RabbitMQ repeat {repeat + 1}/{args.repeats}")
                runs.append(await _one_repeat(args.rabbit_url, "rabbit", args.rabbit_casts,
                                              args.concurrency, args.calls, topics))
        finally:
            await _delete_topics(args.rabbit_url, topics)
        metrics.update(_median(runs))

    if "memory_cast_ops_per_s" in metrics and "rabbit_cast_ops_per_s" in metrics:
        metrics["memory_over_rabbit_cast_ops"] = (metrics["memory_cast_ops_per_s"]
                                                  / metrics["rabbit_cast_ops_per_s"])
    goals = [
        Goal("memory_cast_ops_per_s", MEMORY_CAST_GOAL, ">=",
             "in-process casts, one sender"),
        Goal("rabbit_cast_ops_per_s", RABBIT_CAST_GOAL, ">=",
             "broker-confirmed persistent casts to a quorum queue, --concurrency in flight"),
        Goal("rabbit_call_p50_ms", RABBIT_CALL_P50_GOAL_MS, "<=",
             "call round trip on loopback, one call at a time"),
    ]
    return Result(metrics=metrics, goals=[g for g in goals if g.metric in metrics],
                  backends=backends)
