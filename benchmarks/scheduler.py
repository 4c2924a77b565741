"""Scheduler decision time: filter and weigh N in-memory hosts for one request.

Measures ``select_hosts`` on a ``HostView`` (the per-request decision, the part that grows
with the number of hosts) with every default filter and weigher active, over 100, 1,000
and 10,000 hosts with varied free resources, zones and a few disabled or down hosts. The
database claim that follows a decision touches one host and does not grow with N; it is
not measured here.
"""

from __future__ import annotations

import argparse
import random
import time

from benchmarks import Goal, Result, percentile
from stratus.compute.placement import DISK_GB, MEMORY_MB, VCPU
from stratus.compute.scheduler.host_state import HostState
from stratus.compute.scheduler.host_view import HostView
from stratus.compute.scheduler.request_spec import FlavorSpec, RequestSpec
from stratus.compute.scheduler.selector import SchedulerOptions, select_hosts

DESCRIPTION = "scheduler decision time (filters + weighers) over 100, 1,000 and 10,000 hosts"

DECISION_GOAL_MS = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default="100,1000,10000",
                        help="host counts to measure (default 100,1000,10000)")
    parser.add_argument("--decisions", type=int, default=200,
                        help="decisions timed per host count (default 200)")
    parser.add_argument("--seed", type=int, default=42)


def make_hosts(count: int, rng: random.Random) -> list[HostState]:
    hosts = []
    for i in range(count):
        capacity = {VCPU: 32.0 * 16, MEMORY_MB: 131072.0, DISK_GB: 2000.0}
        used = {VCPU: rng.randrange(0, 500), MEMORY_MB: rng.randrange(0, 131072),
                DISK_GB: rng.randrange(0, 2000)}
        hosts.append(HostState(
            provider_uuid=f"rp-{i}", host=f"host-{i}", zone=f"az{i % 3}",
            enabled=rng.random() > 0.02, up=rng.random() > 0.02, capacity=capacity,
            max_unit={VCPU: 32, MEMORY_MB: 131072, DISK_GB: 2000}, used=used))
    return hosts


async def run(args: argparse.Namespace) -> Result:
    rng = random.Random(args.seed)
    spec = RequestSpec(instance_uuid="bench", project_id="p",
                       flavor=FlavorSpec(vcpus=2, memory_mb=4096, root_gb=20),
                       availability_zone="az1",
                       image_properties={"hw_architecture": "x86_64"})
    options = SchedulerOptions(host_subset_size=3)
    metrics: dict[str, float] = {}
    goals = []
    for size in (int(s) for s in args.sizes.split(",")):
        hosts = HostView(make_hosts(size, rng))  # built once per refresh, as HostSelector does
        select_hosts(hosts, spec, options, rng)  # warm up
        timings = []
        for _ in range(args.decisions):
            started = time.perf_counter()
            select_hosts(hosts, spec, options, rng)
            timings.append(time.perf_counter() - started)
        metrics[f"decision_{size}_hosts_p50_ms"] = percentile(timings, 50) * 1e3
        metrics[f"decision_{size}_hosts_p99_ms"] = percentile(timings, 99) * 1e3
        if size == 10000:
            goals.append(Goal("decision_10000_hosts_p50_ms", DECISION_GOAL_MS, "<=",
                              "one decision over 10,000 hosts, all default filters"))
    if "decision_100_hosts_p50_ms" in metrics and "decision_10000_hosts_p50_ms" in metrics:
        metrics["decision_10000_over_100"] = (metrics["decision_10000_hosts_p50_ms"]
                                              / metrics["decision_100_hosts_p50_ms"])
    return Result(metrics=metrics, goals=goals, backends={"scheduler": "in-memory host view"})
