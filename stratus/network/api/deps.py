"""Request-scoped pieces of the Network API's routes: the caller and the transaction.

Routes say whether they write: ``Service`` opens a reading transaction, ``WriteService`` a
writing one (on SQLite it waits for the process's one writer lock); the collections' routes
(``resources``) open theirs themselves (``Transaction``), after the caller is known."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType
from typing import Annotated

from fastapi import Depends, Request

from stratus.core.policy import Caller
from stratus.core.web.deps import caller_dependency, duplicate_as_conflict
from stratus.network.caller import denial
from stratus.network.service import NetworkRuntime, NetworkService, ServiceTransaction


def runtime(request: Request) -> NetworkRuntime:
    rt: NetworkRuntime = request.app.state.network
    return rt


caller = caller_dependency(lambda request: runtime(request).enforcer, denial=denial)


#: What a unique constraint the database caught says (two requests raced past the
#: service's own duplicate check).
CONFLICT = "The request conflicts with a concurrent change."


class Transaction:
    """The request's transaction (``NetworkRuntime.service``) for a route that opens it
    itself: ``async with Transaction(request, write=True) as svc``. A writing one reads
    the body first, so that is not done while holding the (SQLite) writers' lock; a unique
    constraint the database caught is the client's 409 (``duplicates_as_conflict``).

    A plain context manager over the runtime's (``ServiceTransaction``) rather than
    generator layers (the body read, the 409) under a FastAPI generator dependency: each
    such layer cost ~10 Python calls a request, the dependency's exit stack and cancel
    scopes ~60 more (a port create made ~3,300 in all)."""

    __slots__ = ("_request", "_scope", "_write")

    def __init__(self, request: Request, *, write: bool) -> None:
        self._request = request
        self._write = write
        self._scope: ServiceTransaction | None = None

    async def __aenter__(self) -> NetworkService:
        if self._write:
            await self._request.body()  # cached by the request for the route to parse
        self._scope = runtime(self._request).service(write=self._write)
        return await self._scope.__aenter__()  # BEGIN: no constraint to catch yet

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> bool | None:
        assert self._scope is not None
        try:
            suppressed = await self._scope.__aexit__(exc_type, exc, tb)
        except Exception as error:  # at the commit
            conflict = duplicate_as_conflict(error, CONFLICT)
            if conflict is None:
                raise
            raise conflict from error
        conflict = None if suppressed else duplicate_as_conflict(exc, CONFLICT)
        if conflict is not None:  # in the route's work
            raise conflict from exc
        return suppressed


async def read_service(request: Request,
                       _: Annotated[Caller, Depends(caller)]) -> AsyncIterator[NetworkService]:
    """One reading transaction per request: it does not take the (SQLite) writers' lock."""
    async with Transaction(request, write=False) as svc:
        yield svc


async def write_service(request: Request,
                        _: Annotated[Caller, Depends(caller)]) -> AsyncIterator[NetworkService]:
    """One writing transaction per request, committed before the response is sent. The
    token is checked and the body read before the transaction starts, so neither happens
    while holding the writers' lock."""
    async with Transaction(request, write=True) as svc:
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
