"""Request-scoped pieces of the Network API's routes: the caller and the transaction.

Routes say whether they write: ``Service`` opens a reading transaction, ``WriteService`` a
writing one (on SQLite it waits for the process's one writer lock)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, Request

from stratus.core.policy import Caller
from stratus.core.web.deps import caller_dependency, duplicates_as_conflict
from stratus.network.caller import denial
from stratus.network.service import NetworkRuntime, NetworkService


def runtime(request: Request) -> NetworkRuntime:
    rt: NetworkRuntime = request.app.state.network
    return rt


caller = caller_dependency(lambda request: runtime(request).enforcer, denial=denial)


@asynccontextmanager
async def _transaction(request: Request, write: bool) -> AsyncIterator[NetworkService]:
    async with duplicates_as_conflict("The request conflicts with a concurrent change."), \
            runtime(request).service(write=write) as svc:
        yield svc


async def read_service(request: Request,
                       _: Annotated[Caller, Depends(caller)]) -> AsyncIterator[NetworkService]:
    """One reading transaction per request: it does not take the (SQLite) writers' lock."""
    async with _transaction(request, write=False) as svc:
        yield svc


async def write_service(request: Request,
                        _: Annotated[Caller, Depends(caller)]) -> AsyncIterator[NetworkService]:
    """One writing transaction per request, committed before the response is sent. The
    token is checked and the body read before the transaction starts, so neither happens
    while holding the writers' lock."""
    await request.body()  # cached by the request for the route to parse
    async with _transaction(request, write=True) as svc:
        yield svc


#: For routes that only read.
Service = Annotated[NetworkService, Depends(read_service, scope="function")]
#: For routes that write, and for reads that may write (security group reads make the
#: project's default group).
WriteService = Annotated[NetworkService, Depends(write_service, scope="function")]
CallerDep = Annotated[Caller, Depends(caller)]
async def _runtime(request: Request) -> NetworkRuntime:
    return runtime(request)


Runtime = Annotated[NetworkRuntime, Depends(_runtime)]
