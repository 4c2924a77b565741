"""``python benchmarks/profiles/span_costs.py [GROUPS] [PROFILE]``: what a span costs, alone.

A boot's spans in miniature, ``GROUPS`` times (default 5,000): an API request's server span
(three attributes set at its end, as the middleware does), inside it a bus cast's sender
span whose trace headers the message carries, then the handler's consumer span joined to
them (the headers extracted and attached, as the bus server does) with a flow step's span
inside: four spans a group, the request id and instance stamped on each, tracing and the
span store on as in ``stratus up`` (no OTLP exporter).

Prints one JSON line: Python calls per span on the calling thread (cProfile: load-
independent), and CPU µs per span over every thread (``time.process_time``, the span
store's writes included; load-dependent: compare trees alternated). ``PROFILE``: a second,
profiled pass's cProfile is written there; ``-``: no profiled pass (under callgrind, whose
instruction counts of two ``GROUPS`` differ by what their spans cost, whatever the load).
Another tree's code is measured with ``PYTHONPATH=<tree>``.
"""

from __future__ import annotations

import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SPANS_PER_GROUP = 4


def _groups(count: int) -> None:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate
    from opentelemetry.trace import SpanKind

    from stratus.core.bus.client import _sending
    from stratus.core.tracing import INSTANCE_ATTRIBUTE, span

    request: dict[str, Any] = {"http.method": "POST", "http.target": "/compute/v2.1/servers",
                               "openstack.global_request_id": None}
    for n in range(count):
        message = f"m{n}"

        def sent(message: str = message) -> dict[str, Any]:
            return {"openstack.request_id": "req-1", "openstack.global_request_id": None,
                    "messaging.system": "memory", "messaging.destination.name": "scheduler",
                    "messaging.message.id": message}

        handled: dict[str, Any] = {
            "openstack.global_request_id": None, "messaging.system": "memory",
            "messaging.destination.name": "scheduler", "messaging.message.id": message,
            "messaging.operation": "process"}
        with span("compute POST", SpanKind.SERVER, **request) as server:
            with _sending("bus.cast scheduler.schedule_and_build", SpanKind.PRODUCER,
                          sent) as carrier:
                pass
            server.set_attribute("http.status_code", 202)
            server.set_attribute("http.route", "/v2.1/servers")
            server.set_attribute(INSTANCE_ATTRIBUTE, "9a5e7c5e-1e55-4f52-8a3b-1b8d5c1f3f00")
        parent = otel_context.attach(propagate.extract(carrier))
        try:
            with span("bus.cast scheduler.schedule_and_build", SpanKind.CONSUMER, **handled):
                with span("scheduler.select_and_claim", step="19-24"):
                    pass
        finally:
            otel_context.detach(parent)


def main(groups: int, profile: Path | None) -> dict[str, Any]:
    from opentelemetry import trace

    from stratus.core.context import set_instance, set_request_id
    from stratus.core.spanstore import enable_span_store, set_process_units
    from stratus.core.tracing import setup_tracing

    with tempfile.TemporaryDirectory(prefix="bench-spans-") as tmp:
        setup_tracing("stratus", None)
        enable_span_store(Path(tmp), max_age=86400.0, max_spans=200_000)
        set_process_units(["compute-api", "scheduler"])
        set_request_id("req-4d6c1f0e-0b7e-4c55-9a43-7f1d2d1bd7a1")
        set_instance("9a5e7c5e-1e55-4f52-8a3b-1b8d5c1f3f00")
        provider: Any = trace.get_tracer_provider()
        _groups(200)  # warm-up: imports, caches, the store's file
        provider.force_flush()
        cpu = time.process_time()
        _groups(groups)
        provider.force_flush()  # the store's writes of these spans, counted
        cpu = time.process_time() - cpu
        spans = groups * SPANS_PER_GROUP
        calls = None
        if profile != Path("-"):
            profiler = cProfile.Profile()
            profiler.enable()
            _groups(groups)
            profiler.disable()
            provider.force_flush()
            if profile is not None:
                profiler.dump_stats(profile)
            calls = pstats.Stats(profiler).total_calls / spans  # type: ignore[attr-defined]
        return {"groups": groups, "spans": spans,
                "python_calls_per_span": calls,
                "cpu_us_per_span": 1e6 * cpu / spans,
                "load_average": os.getloadavg()[0]}


if __name__ == "__main__":
    groups = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    print(json.dumps(main(groups, out)))
