"""Identity's request dependencies: one transaction per request (``Reader``: read-only, so
logins and reads never queue behind SQLite's one writer), core's ``Caller``, the context."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request

from stratus.core.auth import require_context
from stratus.core.context import RequestContext
from stratus.core.policy import Caller
from stratus.core.web.app import api_root_dependency
from stratus.core.web.deps import caller_dependency, duplicates_as_conflict
from stratus.identity.service import IdentityRuntime, IdentityService

DUPLICATE = "Conflict occurred attempting to store the resource: duplicate entry."


def runtime(request: Request) -> IdentityRuntime:
    rt: IdentityRuntime = request.app.state.identity
    return rt


async def _write(request: Request) -> AsyncIterator[IdentityService]:
    async with duplicates_as_conflict(DUPLICATE), runtime(request).service() as svc:
        yield svc


async def _read(request: Request) -> AsyncIterator[IdentityService]:
    async with runtime(request).service(write=False) as svc:
        yield svc


Service = Annotated[IdentityService, Depends(_write, scope="function")]
Reader = Annotated[IdentityService, Depends(_read, scope="function")]
Context = Annotated[RequestContext, Depends(require_context)]
CallerDep = Annotated[Caller, Depends(caller_dependency(lambda r: runtime(r).enforcer))]
BaseURL = Annotated[str, Depends(api_root_dependency)]
