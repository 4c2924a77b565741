"""The scheduler's decision over in-memory host states: filters, weighers, subset, errors."""

from __future__ import annotations

import random

import pytest

from stratus.compute.placement import DISK_GB, MEMORY_MB, VCPU
from stratus.compute.scheduler.host_state import HostState
from stratus.compute.scheduler.request_spec import FlavorSpec, RequestSpec
from stratus.compute.scheduler.selector import NoValidHost, SchedulerOptions, select_hosts

TINY = FlavorSpec(vcpus=1, memory_mb=512, root_gb=1)


def host(name: str, *, vcpus: float = 8, ram: float = 8192, disk: float = 100,
         used: dict[str, int] | None = None, **fields: object) -> HostState:
    capacity = {VCPU: vcpus, MEMORY_MB: ram, DISK_GB: disk}
    return HostState(provider_uuid=f"uuid-{name}", host=name, capacity=capacity,
                     max_unit={rc: int(v) for rc, v in capacity.items()},
                     used=used or {}, **fields)  # type: ignore[arg-type]


def spec(**fields: object) -> RequestSpec:
    values: dict[str, object] = {"instance_uuid": "i-1", "project_id": "p", "flavor": TINY}
    values.update(fields)
    return RequestSpec(**values)  # type: ignore[arg-type]


def names(hosts: list[HostState]) -> list[str]:
    return [h.host for h in hosts]


def test_spreads_by_default_and_packs_with_negative_multipliers() -> None:
    hosts = [host("busy", used={MEMORY_MB: 6000, VCPU: 6}), host("idle"),
             host("half", used={MEMORY_MB: 4000, VCPU: 4})]
    assert names(select_hosts(hosts, spec(), SchedulerOptions())) == ["idle", "half", "busy"]
    pack = SchedulerOptions(weigher_multipliers={"RAMWeigher": -1.0, "CPUWeigher": -1.0})
    assert names(select_hosts(hosts, spec(), pack))[0] == "busy"


def test_alternates_are_bounded() -> None:
    hosts = [host(f"h{i}", ram=1000 * (i + 1)) for i in range(10)]
    ordered = select_hosts(hosts, spec(), SchedulerOptions(max_alternates=3))
    assert len(ordered) == 4 and ordered[0].host == "h9"


def test_host_subset_size_spreads_parallel_decisions() -> None:
    hosts = [host(f"h{i}") for i in range(5)]
    rng = random.Random(7)
    chosen = {select_hosts(hosts, spec(), SchedulerOptions(host_subset_size=5), rng)[0].host
              for _ in range(50)}
    assert len(chosen) > 1


@pytest.mark.parametrize(("hosts", "request_spec", "expected"), [
    ([host("off", enabled=False), host("down", up=False), host("ok")], spec(), ["ok"]),
    ([host("a", zone="az1"), host("b", zone="az2")], spec(availability_zone="az2"), ["b"]),
    ([host("small", ram=256), host("big")], spec(), ["big"]),
    ([host("full", used={VCPU: 8}), host("free")], spec(), ["free"]),
    ([host("arm", cpu_arch="aarch64"), host("x86")],
     spec(image_properties={"hw_architecture": "x86_64"}), ["x86"]),
    ([host("qemu", hypervisor_type="qemu"), host("fake")],
     spec(image_properties={"img_hv_type": "qemu"}), ["qemu"]),
    ([host("a"), host("b"), host("c")],
     spec(group_policy="anti-affinity", group_hosts=frozenset({"a", "b"})), ["c"]),
    ([host("a"), host("b")], spec(group_policy="affinity", group_hosts=frozenset({"b"})),
     ["b"]),
    ([host("ssd", aggregate_metadata={"ssd": "true"}), host("hdd")],
     spec(flavor=FlavorSpec(1, 512, 1, extra_specs={
         "aggregate_instance_extra_specs:ssd": "true"})), ["ssd"]),
    ([host("failed"), host("other")], spec(ignore_hosts=frozenset({"failed"})), ["other"]),
])
def test_filters(hosts: list[HostState], request_spec: RequestSpec,
                 expected: list[str]) -> None:
    assert names(select_hosts(hosts, request_spec, SchedulerOptions())) == expected


def test_soft_affinity_prefers_but_does_not_require() -> None:
    hosts = [host("a"), host("b")]
    soft = spec(group_policy="soft-affinity", group_hosts=frozenset({"b"}))
    assert select_hosts(hosts, soft, SchedulerOptions())[0].host == "b"
    soft_anti = spec(group_policy="soft-anti-affinity", group_hosts=frozenset({"a", "b"}))
    assert len(select_hosts(hosts, soft_anti, SchedulerOptions())) == 2


def test_no_valid_host_names_each_filter_and_count() -> None:
    hosts = [host("off", enabled=False), host("small1", ram=256), host("small2", ram=256),
             host("ok-but-wrong-zone", zone="elsewhere")]
    huge = spec(flavor=FlavorSpec(vcpus=1, memory_mb=4096, root_gb=1), availability_zone="nova")
    with pytest.raises(NoValidHost) as caught:
        select_hosts(hosts, huge, SchedulerOptions())
    message = str(caught.value)
    assert "ComputeFilter removed 1 of 4 hosts" in message
    assert "AvailabilityZoneFilter removed 1 of 3 hosts" in message
    assert "ResourceFilter removed 2 of 2 hosts" in message
    # The operator's evidence: each filter's count, and each removed host with why.
    assert caught.value.evidence == (
        "ComputeFilter removed 1 of 4 hosts:",
        "  off: compute service disabled",
        "AvailabilityZoneFilter removed 1 of 3 hosts:",
        "  ok-but-wrong-zone: in zone elsewhere, not nova",
        "ResourceFilter removed 2 of 2 hosts:",
        "  small1: MEMORY_MB 4096 wanted, 256 free",
        "  small2: MEMORY_MB 4096 wanted, 256 free")
    with pytest.raises(NoValidHost, match="there are no compute hosts"):
        select_hosts([], spec(), SchedulerOptions())


def test_unknown_filter_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="NoSuchFilter"):
        select_hosts([host("a")], spec(), SchedulerOptions(filters=("NoSuchFilter",)))


def test_max_unit_bounds_a_single_request() -> None:
    wide = host("wide", vcpus=64)
    wide.max_unit[VCPU] = 16
    with pytest.raises(NoValidHost):
        select_hosts([wide], spec(flavor=FlavorSpec(vcpus=32, memory_mb=1, root_gb=0)),
                     SchedulerOptions())


LAZY_NUMPY = """
import json, sys
from stratus.compute.scheduler import arrays, host_view, manager, selector
loaded = {"imported": "numpy" in sys.modules}
from stratus.compute.placement import MEMORY_MB
from stratus.compute.scheduler.host_state import HostState
from stratus.compute.scheduler.request_spec import FlavorSpec, RequestSpec
hosts = [HostState(provider_uuid=f"u-{n}", host=n, capacity={MEMORY_MB: 1024},
                   max_unit={MEMORY_MB: 1024}, used={}) for n in ("a", "b")]
spec = RequestSpec(instance_uuid="i", project_id="p",
                   flavor=FlavorSpec(vcpus=0, memory_mb=512, root_gb=0))
chosen = selector.select_hosts(hosts, spec, selector.SchedulerOptions())
loaded["decided"] = "numpy" in sys.modules
import numpy
loaded["same"] = arrays.np is numpy and "np" in vars(arrays)
print(json.dumps(loaded))
"""


def test_numpy_is_loaded_by_the_first_decision_not_by_the_scheduler_modules() -> None:
    """In a fresh interpreter (this one has NumPy already): importing every scheduler module
    leaves NumPy unloaded; the first decision loads it, through ``arrays.np``, kept there."""
    import json
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", LAZY_NUMPY], capture_output=True,
                            text=True, timeout=120, check=True)
    assert json.loads(result.stdout) == {"imported": False, "decided": True, "same": True}
