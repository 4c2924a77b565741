"""The bus benchmark scenario runs end to end on memory:// (tiny sizes; figures not checked)."""

from __future__ import annotations

import json

import pytest

import benchmarks


def test_bus_scenario_on_memory(capsys: pytest.CaptureFixture[str]) -> None:
    assert benchmarks.main(["bus", "--transports", "memory", "--memory-casts", "300",
                            "--calls", "30", "--repeats", "1"]) == 0
    document = json.loads(capsys.readouterr().out)
    metrics = document["metrics"]
    for name in ("memory_cast_ops_per_s", "memory_cast_p50_ms", "memory_handled_per_s",
                 "memory_call_p50_ms", "memory_call_p99_ms"):
        assert metrics[name] > 0
    assert set(document["goals"]) == {"memory_cast_ops_per_s"}
    assert document["environment"]["backends"]["bus_transports"] == ["memory"]


def test_bus_scenario_rejects_unknown_transports() -> None:
    with pytest.raises(SystemExit):
        benchmarks.main(["bus", "--transports", "kafka"])
