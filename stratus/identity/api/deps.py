"""Request-scoped dependencies of identity's routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request

from stratus.core.auth import require_context
from stratus.core.context import RequestContext
from stratus.core.web.app import api_root
from stratus.core.web.deps import Authorizer, duplicates_as_conflict
from stratus.identity.service import IdentityRuntime, IdentityService


def runtime(request: Request) -> IdentityRuntime:
    rt: IdentityRuntime = request.app.state.identity
    return rt


async def service(request: Request) -> AsyncIterator[IdentityService]:
    """One transaction per request, committed before the response is sent."""
    async with duplicates_as_conflict("Conflict occurred attempting to store the resource: "
                                      "duplicate entry."), runtime(request).service() as svc:
        yield svc


Service = Annotated[IdentityService, Depends(service, scope="function")]
Context = Annotated[RequestContext, Depends(require_context)]


def policy(request: Request, context: Context) -> Authorizer:
    return Authorizer(runtime(request).enforcer, context)


Authorize = Annotated[Authorizer, Depends(policy)]


def base_url(request: Request) -> str:
    """This API's root as the client reached it, e.g. ``http://h:8080/identity``."""
    return api_root(request)


BaseURL = Annotated[str, Depends(base_url)]
