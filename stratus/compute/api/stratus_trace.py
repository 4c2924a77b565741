"""Stratus extensions for operators (admin only by default):

* ``/os-stratus-trace/{key}``: the path of a request (a request id) or of every request
  about a server (its id), as the seeds' step table, from the span store of the host that
  answers (``stratus trace --os-cloud`` reads it);
* ``/os-stratus-why/{server_id}``: why a server is in ERROR or stuck in a task: the failed
  step, its error, the host and the evidence (``stratus why --os-cloud`` reads it)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from stratus.compute.api.deps import CallerDep, Runtime

router = APIRouter(prefix="/v2.1")


@router.get("/os-stratus-trace/{key}")
async def show_trace(key: str, runtime: Runtime, caller: CallerDep) -> dict[str, Any]:
    caller.authorize("os_compute_api:os-stratus-trace:show")
    return {"trace": await runtime.traces.table(key)}


@router.get("/os-stratus-why/{server_id}")
async def show_why(server_id: str, runtime: Runtime, caller: CallerDep) -> dict[str, Any]:
    caller.authorize("os_compute_api:os-stratus-why:show")
    return {"why": await runtime.traces.why(server_id)}
