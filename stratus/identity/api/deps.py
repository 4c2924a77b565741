"""Request-scoped dependencies of identity's routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.exc import IntegrityError

from stratus.core.auth import require_context
from stratus.core.context import RequestContext
from stratus.core.exceptions import Conflict
from stratus.core.web.app import api_root
from stratus.identity.service import IdentityRuntime, IdentityService


def runtime(request: Request) -> IdentityRuntime:
    rt: IdentityRuntime = request.app.state.identity
    return rt


async def service(request: Request) -> AsyncIterator[IdentityService]:
    """One transaction per request, committed before the response is sent."""
    try:
        async with runtime(request).service() as svc:
            yield svc
    except IntegrityError as exc:
        # Two requests raced past our duplicate checks; the database caught the second.
        raise Conflict("Conflict occurred attempting to store the resource: "
                       "duplicate entry.") from exc


Service = Annotated[IdentityService, Depends(service, scope="function")]
Context = Annotated[RequestContext, Depends(require_context)]


class Policy:
    """``policy("identity:get_user", target)``: raises Forbidden unless the caller may."""

    def __init__(self, request: Request, context: RequestContext) -> None:
        self.enforcer = runtime(request).enforcer
        self.context = context

    def __call__(self, rule: str, target: dict[str, Any] | None = None) -> None:
        self.enforcer.authorize(rule, target, self.context)


def policy(request: Request, context: Context) -> Policy:
    return Policy(request, context)


Authorize = Annotated[Policy, Depends(policy)]


def base_url(request: Request) -> str:
    """This API's root as the client reached it, e.g. ``http://h:8080/identity``."""
    return api_root(request)


BaseURL = Annotated[str, Depends(base_url)]
