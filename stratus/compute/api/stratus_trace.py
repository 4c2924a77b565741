"""``/os-stratus-trace/{key}``, a Stratus extension for operators: the path of a request (a
request id) or of every request about a server (its id), as the seeds' step table, from
the span store of the host that answers (``stratus trace --os-cloud`` reads it)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from stratus.compute.api.deps import CallerDep, Runtime

router = APIRouter(prefix="/v2.1")


@router.get("/os-stratus-trace/{key}")
async def show_trace(key: str, runtime: Runtime, caller: CallerDep) -> dict[str, Any]:
    caller.authorize("os_compute_api:os-stratus-trace:show")
    return {"trace": await runtime.traces.table(key)}
