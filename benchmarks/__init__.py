"""Stratus benchmarks: one module per scenario, one JSON object per run.

``python -m benchmarks NAME [--json-out FILE] [scenario options]`` runs ``benchmarks/NAME.py``
and prints ``{"scenario", "environment", "parameters", "metrics", "goals"}``;
``python -m benchmarks --list`` lists the scenarios. A scenario module defines::

    DESCRIPTION: str
    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    async def run(args: argparse.Namespace) -> Result: ...

Figures are recorded, never asserted in tests: timing goals are stated here and reported as
met or not, and wherever possible a figure is read as a ratio between two paths measured on
the same machine in the same run (e.g. cached/uncached validation).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import math
import pkgutil
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, cast

__all__ = [
    "Goal",
    "Result",
    "Scenario",
    "latency_metrics",
    "load",
    "main",
    "median_metrics",
    "overhead_rounds",
    "percentile",
    "run_scenario",
    "scenario_names",
]

Comparison = Literal["<=", ">=", "=="]


@dataclass(frozen=True)
class Goal:
    """``metric <comparison> target``; ``note`` says what the goal applies to."""

    metric: str
    target: float
    comparison: Comparison = ">="
    note: str = ""

    def met(self, value: float | None) -> bool:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return False
        if self.comparison == ">=":
            return value >= self.target
        if self.comparison == "<=":
            return value <= self.target
        return value == self.target


@dataclass
class Result:
    """What a scenario measured: metrics by name, its goals, and the backends it ran on."""

    metrics: dict[str, float]
    goals: list[Goal] = field(default_factory=list)
    #: Database backend and version, bcrypt rounds, ... (merged into ``environment.backends``).
    backends: dict[str, Any] = field(default_factory=dict)


class Scenario(Protocol):
    DESCRIPTION: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    async def run(self, args: argparse.Namespace) -> Result: ...


# Statistics --------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, interpolated linearly between ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


_UNIT_SCALE = {"s": 1.0, "ms": 1e3, "us": 1e6}


def median_metrics(runs: Sequence[dict[str, float]]) -> dict[str, float]:
    """Each metric's median over ``runs`` (the metrics of repeated runs of one setup)."""
    names = dict.fromkeys(name for run in runs for name in run)
    return {name: statistics.median(run[name] for run in runs if name in run)
            for name in names}


def overhead_rounds(rounds: int) -> list[tuple[bool, ...]]:
    """The order of ``rounds`` off/on pairs of a tracing-overhead run: ``(False, True)``,
    then ``(True, False)``, alternating, so a drift of the machine's load over the run falls
    on both sides alike."""
    return [(False, True) if r % 2 == 0 else (True, False) for r in range(rounds)]


def latency_metrics(prefix: str, latencies_s: Sequence[float], elapsed_s: float,
                    unit: Literal["s", "ms", "us"] = "ms") -> dict[str, float]:
    """``<prefix>_ops_per_s``, ``<prefix>_p50_<unit>``, ``<prefix>_p99_<unit>`` of one run.

    Throughput is operations over the run's wall time (with every client running at once);
    percentiles are of the per-operation latencies.
    """
    scale = _UNIT_SCALE[unit]
    return {
        f"{prefix}_ops_per_s": len(latencies_s) / elapsed_s if elapsed_s > 0 else math.nan,
        f"{prefix}_p50_{unit}": percentile(latencies_s, 50) * scale,
        f"{prefix}_p99_{unit}": percentile(latencies_s, 99) * scale,
    }


def _rounded(value: float) -> float:
    if isinstance(value, bool) or isinstance(value, int):
        return value
    if math.isnan(value) or math.isinf(value):
        return value
    if abs(value) >= 100:
        return round(value, 1)
    return float(f"{value:.4g}")


# Runner ------------------------------------------------------------------------------------


def scenario_names() -> list[str]:
    """Every ``benchmarks/<name>.py`` whose name does not start with an underscore."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__)
                  if not m.name.startswith("_") and not m.ispkg)


def load(name: str) -> Scenario:
    if not name.isidentifier() or name.startswith("_"):
        raise LookupError(f"no scenario {name!r}")
    try:
        module = importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"{__name__}.{name}":
            raise LookupError(f"no scenario {name!r}") from exc
        raise
    for attr in ("DESCRIPTION", "add_arguments", "run"):
        if not hasattr(module, attr):
            raise LookupError(f"benchmarks.{name} is not a scenario (no {attr})")
    return cast(Scenario, module)


def _json_safe(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str) and "://" in value and "@" in value:
        from sqlalchemy.engine import make_url

        try:
            return make_url(value).render_as_string(hide_password=True)
        except Exception:
            return value
    return value


def parameters(args: argparse.Namespace) -> dict[str, Any]:
    return {k: _json_safe(v) for k, v in sorted(vars(args).items()) if k != "json_out"}


def run_scenario(name: str, scenario: Scenario, args: argparse.Namespace) -> dict[str, Any]:
    """Run one scenario and return the document ``python -m benchmarks`` prints."""
    from benchmarks._environment import environment, load_average

    load_before = load_average()
    result = asyncio.run(scenario.run(args))
    metrics = {k: _rounded(v) for k, v in result.metrics.items()}
    goals: dict[str, dict[str, Any]] = {}
    for goal in result.goals:
        entry: dict[str, Any] = {"value": metrics.get(goal.metric), "target": goal.target,
                                 "comparison": goal.comparison,
                                 "met": goal.met(result.metrics.get(goal.metric))}
        if goal.note:
            entry["note"] = goal.note
        goals[goal.metric] = entry
    return {
        "scenario": name,
        "environment": environment(result.backends, load_before=load_before),
        "parameters": parameters(args),
        "metrics": metrics,
        "goals": goals,
    }


def _parser(name: str, scenario: Scenario) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks {name}",
                                     description=scenario.DESCRIPTION)
    parser.add_argument("--json-out", type=Path, metavar="FILE",
                        help="also write the JSON result to FILE")
    scenario.add_arguments(parser)
    return parser


USAGE = """\
usage: python -m benchmarks NAME [--json-out FILE] [scenario options]
       python -m benchmarks NAME --help
       python -m benchmarks --list
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE + "\nscenarios: " + ", ".join(scenario_names()))
        return 0 if args else 2
    if args[0] == "--list":
        for name in scenario_names():
            print(f"{name:12} {load(name).DESCRIPTION}")
        return 0
    name, rest = args[0], args[1:]
    try:
        scenario = load(name)
    except LookupError as exc:
        print(f"{exc}; scenarios: {', '.join(scenario_names())}", file=sys.stderr)
        return 2
    options = _parser(name, scenario).parse_args(rest)
    document = run_scenario(name, scenario, options)
    text = json.dumps(document, indent=2)
    print(text, flush=True)
    if options.json_out is not None:
        options.json_out.parent.mkdir(parents=True, exist_ok=True)
        options.json_out.write_text(text + "\n")
    return 0
