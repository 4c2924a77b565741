"""``python benchmarks/profiles/host_reports.py [DATABASE_URL] [N]``: what one compute host's
periodic report (the conductor's ``host_report``) costs, counted where the machine's load
does not reach: SQL statements per report (every statement the engine sent; a driver's own
``BEGIN``/``COMMIT`` are not among them) and the process's CPU per report.

A conductor-only stack in this process (SQLite in a temporary directory unless
``DATABASE_URL`` names another database, e.g. a fresh PostgreSQL one), a known host (one
report first), then ``N`` unchanged reports (default 200), called on the manager directly
(no bus). Prints one JSON line. Another tree's code is measured with
``PYTHONPATH=<tree>`` (the script's directory is not that tree).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event

from stratus.compute.conductor.manager import ConductorManager
from stratus.compute.objects import HostReport
from stratus.core.config import Settings
from stratus.core.context import RequestContext
from stratus.stack import Stack
from stratus.units import root_app


async def main(url: str | None, reports: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp),
                            database_url=url or f"sqlite+aiosqlite:///{tmp}/stratus.sqlite",
                            compute={"fake_hosts": 1, "host": "node", "virt_driver": "fake"})
        stack = Stack(settings)
        try:
            await root_app(stack, ["conductor"])
            assert stack.compute is not None
            conductor = ConductorManager(stack.compute, None)  # type: ignore[arg-type]
            ctx = RequestContext.for_service("compute")
            report = HostReport(host="reporter", hypervisor_type="fake", hypervisor_version=1,
                                vcpus=8, memory_mb=8192, local_gb=100)
            await conductor.host_report(ctx, report)  # the host is known from here on
            seen: list[str] = []

            def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
                seen.append(" ".join(statement.split())[:80])

            engine = stack.compute.db.engine.sync_engine
            event.listen(engine, "before_cursor_execute", count)
            started = time.process_time()
            for _ in range(reports):
                await conductor.host_report(ctx, report)
            cpu = time.process_time() - started
            event.remove(engine, "before_cursor_execute", count)
        finally:
            await stack.aclose()
    return {"statements_per_report": len(seen) / reports,
            "cpu_ms_per_report": round(cpu / reports * 1000, 3),
            "statements": seen[:len(seen) // reports]}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else None,
                                      int(sys.argv[2]) if len(sys.argv) > 2 else 200))))
