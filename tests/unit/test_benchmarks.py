"""The benchmark runner: scenario discovery, options and the shape of its one JSON object.

Only the plumbing is tested, with a trivial in-process scenario; figures are never asserted.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path

import pytest

import benchmarks
from benchmarks import Goal, Result, latency_metrics, percentile

TOP_LEVEL_KEYS = {"scenario", "environment", "parameters", "metrics", "goals"}
PACKAGES = {"stratus", "fastapi", "sqlalchemy", "uvicorn", "cryptography", "bcrypt"}


def _tiny_scenario() -> types.ModuleType:
    module = types.ModuleType("benchmarks.tiny")

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--n", type=int, default=3)

    async def run(args: argparse.Namespace) -> Result:
        latencies = [0.001 * (i + 1) for i in range(args.n)]
        metrics = latency_metrics("op", latencies, sum(latencies), "ms")
        metrics["errors"] = 0
        return Result(
            metrics=metrics,
            goals=[Goal("op_ops_per_s", 1.0, ">=", "always met here"),
                   Goal("errors", 0, "=="),
                   Goal("not_measured", 1.0, "<=")],
            backends={"database": "none", "bcrypt_rounds": 4},
        )

    module.DESCRIPTION = "a trivial in-process scenario"  # type: ignore[attr-defined]
    module.add_arguments = add_arguments  # type: ignore[attr-defined]
    module.run = run  # type: ignore[attr-defined]
    return module


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = _tiny_scenario()
    monkeypatch.setitem(sys.modules, "benchmarks.tiny", module)
    return module


def test_runner_prints_one_json_object(tiny: types.ModuleType, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "results" / "tiny.json"
    assert benchmarks.main(["tiny", "--n", "5", "--json-out", str(out)]) == 0
    document = json.loads(capsys.readouterr().out)  # the whole of stdout is one object
    assert json.loads(out.read_text()) == document

    assert set(document) == TOP_LEVEL_KEYS
    assert document["scenario"] == "tiny"
    assert document["parameters"] == {"n": 5}

    env = document["environment"]
    assert {"machine", "python", "backends", "packages"} <= set(env)
    assert {"cpu_model", "logical_cpus", "ram_gb", "kernel"} <= set(env["machine"])
    assert env["python"]["version"].count(".") == 2
    assert env["backends"] == {"database": "none", "bcrypt_rounds": 4}
    assert PACKAGES <= set(env["packages"])
    assert env["packages"]["stratus"]

    metrics = document["metrics"]
    assert set(metrics) == {"op_ops_per_s", "op_p50_ms", "op_p99_ms", "errors"}
    assert all(isinstance(v, int | float) for v in metrics.values())

    goals = document["goals"]
    assert set(goals) == {"op_ops_per_s", "errors", "not_measured"}
    for goal in goals.values():
        assert {"target", "comparison", "met"} <= set(goal)
        assert isinstance(goal["met"], bool)
    assert goals["op_ops_per_s"] == {"value": metrics["op_ops_per_s"], "target": 1.0,
                                     "comparison": ">=", "met": True,
                                     "note": "always met here"}
    assert goals["errors"]["met"] is True
    # A goal without its metric is not met.
    assert goals["not_measured"]["met"] is False and goals["not_measured"]["value"] is None


def test_list_names_every_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    names = benchmarks.scenario_names()
    assert {"identity", "startup"} <= set(names)
    assert not [n for n in names if n.startswith("_")]
    assert benchmarks.main(["--list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == names


def test_unknown_scenario_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert benchmarks.main(["no_such_scenario"]) == 2
    assert "no scenario" in capsys.readouterr().err
    assert benchmarks.main(["_cloud"]) == 2


@pytest.mark.parametrize("name", ["identity", "startup"])
def test_scenarios_default_to_keystones_bcrypt_rounds(name: str) -> None:
    scenario = benchmarks.load(name)
    parser = argparse.ArgumentParser()
    scenario.add_arguments(parser)
    assert parser.parse_args([]).bcrypt_rounds == 12
    assert parser.parse_args(["--bcrypt-rounds", "4"]).bcrypt_rounds == 4


def test_statistics_and_goals() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([1.0, 2.0], 50) == 1.5
    assert percentile([5.0], 99) == 5.0
    metrics = latency_metrics("x", [0.001, 0.002, 0.003, 0.004], 0.5, "us")
    assert metrics["x_ops_per_s"] == 8.0
    assert metrics["x_p50_us"] == pytest.approx(2500.0)
    assert Goal("m", 5, ">=").met(5) and not Goal("m", 5, ">=").met(4.9)
    assert Goal("m", 2, "<=").met(1.5) and not Goal("m", 2, "<=").met(2.1)
    assert Goal("m", 0, "==").met(0) and not Goal("m", 0, "==").met(1)
    assert not Goal("m", 0, ">=").met(None) and not Goal("m", 0, ">=").met(float("nan"))


def test_image_bounds_are_the_slowest_constraint_of_each_transfer() -> None:
    """The upload is bound by the hash floor or, where server and client share too few
    cores, by their CPU; the download by its client's one thread and then its fsync."""
    from benchmarks.image import bounds

    two_cores = bounds(1000.0, 750.0, upload_cpu_s=3.5, download_client_cpu_s=1.4,
                       download_fsync_s=0.5, cores=2)
    assert two_cores["upload_cpu_bound_mb_per_s"] == pytest.approx(1000 / 1.75)
    assert two_cores["upload_bound_mb_per_s"] == pytest.approx(1000 / 1.75)  # under 750
    assert two_cores["download_bound_mb_per_s"] == pytest.approx(1000 / 1.9)
    four_cores = bounds(1000.0, 750.0, 3.5, 1.4, 0.5, cores=4)
    assert four_cores["upload_bound_mb_per_s"] == 750.0  # the hashes bind again


def test_live_migration_downtime_is_the_step_in_the_guests_clock() -> None:
    """``lifecycle_live``: the guest's clock runs 1 % fast and stops 0.15 s, then 0.30 s, at
    two switch-overs; ticks arrive 0-20 ms late. One slope and a level per stretch give the
    stops back, to within the arrival noise."""
    from benchmarks.lifecycle_live import fit_steps

    delays = [0.0, 0.02, 0.005, 0.015, 0.01, 0.0]
    stretches, lost = [], 0.0
    for start, stop in ((100.0, 0.15), (120.0, 0.30), (140.0, 0.0)):
        ticks = []
        for n, delay in enumerate(delays):
            host = start + 2 * n
            ticks.append((host + delay, (host - 90.0 - lost) * 1.01))
        stretches.append(ticks)
        lost += stop
    steps, slope, residual = fit_steps(stretches)
    assert steps == [pytest.approx(0.15 * 1.01, abs=0.01), pytest.approx(0.30 * 1.01, abs=0.01)]
    assert slope == pytest.approx(-0.01, abs=0.001)
    assert residual < 0.02


async def test_realboot_splits_init_at_the_guest_kernels_clock(tmp_path: Path) -> None:
    """``realboot``: the guest's ``uptime=`` in its init line is its kernel's part of the
    time to init; ``kernel`` is the rest (the cloud's part, QEMU's start, the firmware)."""
    import time

    from benchmarks.realboot import _watch_markers

    console = tmp_path / "console.log"
    console.write_text('STRATUS-INIT uptime=3.25 product="OpenStack Nova" serial=x\r\n'
                       "STRATUS-NET iface=eth0 ip=10.0.0.5/24\r\nSTRATUS-METADATA ok\r\n"
                       "STRATUS-GUEST ip=10.0.0.5 uptime=4.00\r\n")
    seen = await _watch_markers(console, time.time() - 10.0, 5.0)
    assert set(seen) == {"init", "net", "metadata", "guest", "kernel"}
    assert seen["kernel"] == pytest.approx(seen["init"] - 3.25)


def test_realboot_busy_loops_spin_while_the_block_runs_and_are_gone_after() -> None:
    """``realboot --busy-loops N``: N processes of this one's own spin on the CPU during the
    boots and none is left once they end, whatever ended them."""
    import os

    from benchmarks.realboot import _busy_loops

    def spinning_children() -> int:
        count = 0
        for entry in Path("/proc").iterdir():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except (OSError, NotADirectoryError):
                continue
            # The parent's pid is the 4th field, after the command's name in parentheses.
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent == os.getpid() and cmdline.endswith(b"-c\0while True: pass\0"):
                count += 1
        return count

    with pytest.raises(RuntimeError), _busy_loops(2):
        assert spinning_children() == 2
        raise RuntimeError("a boot failed")
    assert spinning_children() == 0


async def test_summary_puts_each_figure_beside_its_goal(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``benchmarks summary``: every run's metrics under its name, issue 21's goals and the
    scenario's own side by side, a failed run recorded while the others still count."""
    from benchmarks import summary

    async def one(run: summary.Run, quick: bool) -> dict[str, object]:
        assert quick
        if run.label == "network":
            raise RuntimeError("RabbitMQ is down")
        return {"environment": {"machine": {"load_average_before_run": [3.5, 2.0, 1.0]},
                                "backends": {"database": "sqlite"}},
                "metrics": {"boot_p50_ms": 40.0, "concurrent_boots_per_s": 150.0},
                "goals": {"boot_p50_ms": {"target": 50.0, "comparison": "<=", "met": True}}}

    monkeypatch.setattr(summary, "_one", one)
    parser = argparse.ArgumentParser()
    summary.add_arguments(parser)
    result = await summary.run(parser.parse_args(["--quick", "--only", "boot,network"]))
    assert result.metrics["boot.boot_p50_ms"] == 40.0
    assert result.metrics["boot.load_average_1m_before"] == 3.5
    assert result.metrics["network.failed"] == 1
    goals = {goal.metric: goal for goal in result.goals}
    assert goals["boot.concurrent_boots_per_s"].target == 200.0
    assert not goals["boot.concurrent_boots_per_s"].met(result.metrics[
        "boot.concurrent_boots_per_s"])
    assert goals["boot.boot_p50_ms"].note.startswith("issue 21")  # one goal per metric
    assert not goals["network.port_creates_per_s"].met(
        result.metrics.get("network.port_creates_per_s"))
    assert not [g for g in goals if g.startswith(("startup.", "boot_split."))]


def test_scale_splits_rounds_into_even_blocks() -> None:
    from benchmarks.scale import _blocks

    assert _blocks(100, 10) == [10] * 10
    assert _blocks(23, 4) == [6, 6, 6, 5]
    assert _blocks(3, 10) == [1, 1, 1]  # never an empty block
    assert _blocks(5, 0) == [5]


def test_scale_ratio_is_the_median_of_per_pass_ratios() -> None:
    """A ratio is taken pass by pass (blocks seconds apart, so the machine's drift over
    the run cancels) and the median of those kept: one pass at 10,000 that fell in a noisy
    moment does not move it."""
    from benchmarks.scale import _paired_ratios, _Samples

    samples = {(what, size): _Samples() for what in
               ("detail", "detail_next", "ports", "servers_all", "boot")
               for size in (100, 1000, 10000)}
    # The machine's load drifts over the passes (both sizes alike); one pass at 10,000
    # is twice as slow.
    samples["ports", 100].cpu = [8.0, 10.0, 12.0, 14.0, 16.0]
    samples["ports", 10000].cpu = [8.0, 10.0, 24.0, 14.0, 16.0]
    samples["servers_all", 1000].cpu = [30.0, 40.0, 50.0]
    samples["servers_all", 10000].cpu = [33.0, 44.0, 55.0]
    samples["boot", 100].cpu = [60.0, 120.0, 60.0]
    samples["boot", 10000].cpu = [66.0, 60.0, 66.0]
    ratios = _paired_ratios(samples, [100, 1000, 10000], postgres=False)
    assert ratios["ports_cpu_ms_10000_over_100"] == pytest.approx(1.0)
    assert ratios["ports_cpu_ms_10000_over_100_iqr"] == pytest.approx(0.0)
    # GET /servers is compared from 1,000 (a full page of 1,000 rows).
    assert ratios["servers_all_cpu_ms_10000_over_1000"] == pytest.approx(1.1)
    assert "servers_all_cpu_ms_1000_over_100" not in ratios
    assert ratios["boot_cpu_ms_10000_over_100"] == pytest.approx(1.1)
    assert not any("db_cpu" in name for name in ratios)
