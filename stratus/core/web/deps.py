"""Request-scoped pieces every service's ``api/deps.py`` builds on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.exc import IntegrityError

from stratus.core.context import RequestContext
from stratus.core.exceptions import Conflict
from stratus.core.policy import Enforcer


class Authorizer:
    """``authorize("service:rule", target)`` raises Forbidden unless the caller may."""

    def __init__(self, enforcer: Enforcer, context: RequestContext) -> None:
        self.enforcer = enforcer
        self.context = context

    def __call__(self, rule: str, target: dict[str, Any] | None = None) -> None:
        self.enforcer.authorize(rule, target, self.context)

    def allows(self, rule: str, target: dict[str, Any] | None = None) -> bool:
        return self.enforcer.allowed(rule, target, self.context)


@asynccontextmanager
async def duplicates_as_conflict(message: str) -> AsyncIterator[None]:
    """A unique constraint the database caught (two requests raced past the service's own
    duplicate check) is the client's 409, not a 500."""
    try:
        yield
    except IntegrityError as exc:
        raise Conflict(message) from exc
