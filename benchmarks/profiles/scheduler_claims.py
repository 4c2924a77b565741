"""``python benchmarks/profiles/scheduler_claims.py [DATABASE_URL] [N] [HOSTS]``: what the
scheduler's part of a boot (``SchedulerManager.schedule_and_build`` of one instance: the
decision, the claim transaction with the placement and its event) costs, counted where the
machine's load does not reach: SQL statements per boot (every statement the engine sent; a
driver's own ``BEGIN``/``COMMIT`` are not among them) and the process's CPU per boot.

A compute runtime in this process (SQLite in a temporary directory unless ``DATABASE_URL``
names another database, e.g. a fresh PostgreSQL one), ``HOSTS`` fake hosts (default 30),
``N`` instances waiting for a host (default 300, each with its create action), then each
scheduled in turn on the manager (no bus: the build's cast to the host is a no-op), the
host view loaded by one boot first. Prints one JSON line. Another tree's code is measured
with ``PYTHONPATH=<tree>`` (the script's directory is not that tree).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import event

from stratus.compute import states
from stratus.compute.hosts import COMPUTE_BINARY
from stratus.compute.models import ComputeServiceRecord, Instance
from stratus.compute.objects import BuildRequest, FlavorInfo
from stratus.compute.placement import (
    DISK_GB,
    MEMORY_MB,
    VCPU,
    InventorySpec,
    Placement,
    provider_uuid,
)
from stratus.compute.scheduler.manager import SchedulerManager
from stratus.compute.scheduler.selector import HostSelector
from stratus.compute.service import ComputeRuntime
from stratus.core.config import Settings
from stratus.core.context import RequestContext
from stratus.core.db import utcnow

FLAVOR = FlavorInfo(id="1", name="m1.tiny", vcpus=1, ram=512, disk=1)


class NoHosts:
    """The agents' side of the bus, doing nothing with the builds cast to it."""

    async def build_and_run_instance(self, *_args: Any, **_kwargs: Any) -> None:
        return None


async def main(url: str | None, boots: int, hosts: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        runtime = ComputeRuntime(Settings(
            data_dir=Path(tmp),
            database_url=url or f"sqlite+aiosqlite:///{tmp}/stratus.sqlite"))
        await runtime.start()
        try:
            ctx = RequestContext(user_id="u", project_id="p", roles=["admin"],
                                 request_id="req-claims")
            async with runtime.db.session() as session:
                for n in range(hosts):
                    name = f"host-{n}"
                    await Placement(session).ensure_provider(provider_uuid(name), name, {
                        VCPU: InventorySpec(1000), MEMORY_MB: InventorySpec(10 ** 6),
                        DISK_GB: InventorySpec(10 ** 5)})
                    session.add(ComputeServiceRecord(
                        uuid=str(uuid.uuid4()), host=name, binary=COMPUTE_BINARY,
                        topic=f"compute.{name}", last_seen_up=utcnow()))
            waiting = [str(uuid.uuid4()) for _ in range(boots + 1)]
            async with runtime.service() as svc:
                for instance_uuid in waiting:
                    svc.session.add(Instance(
                        uuid=instance_uuid, display_name="vm", hostname="vm", project_id="p",
                        user_id="u", reservation_id="r-1", flavor_id="1",
                        vm_state=states.BUILDING, task_state=states.SCHEDULING,
                        flavor=FLAVOR.model_dump()))
                await svc.session.flush()
                for instance_uuid in waiting:
                    await svc.instances.start_action(ctx, instance_uuid, "create")
            manager = SchedulerManager(runtime, HostSelector(runtime.db),
                                       NoHosts())  # type: ignore[arg-type]

            async def schedule(instance_uuid: str) -> None:
                await manager.schedule_and_build(ctx, BuildRequest(
                    instance_uuids=[instance_uuid], project_id="p", flavor=FLAVOR))

            await schedule(waiting[0])  # the host view is loaded from here on
            seen: list[str] = []

            def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
                seen.append(" ".join(statement.split())[:80])

            engine = runtime.db.engine.sync_engine
            event.listen(engine, "before_cursor_execute", count)
            started = time.process_time()
            for instance_uuid in waiting[1:]:
                await schedule(instance_uuid)
            cpu = time.process_time() - started
            event.remove(engine, "before_cursor_execute", count)
        finally:
            await runtime.db.dispose()
    return {"statements_per_boot": len(seen) / boots,
            "cpu_ms_per_boot": round(cpu / boots * 1000, 3),
            "statements": seen[:len(seen) // boots]}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else None,
                                      int(sys.argv[2]) if len(sys.argv) > 2 else 300,
                                      int(sys.argv[3]) if len(sys.argv) > 3 else 30))))
