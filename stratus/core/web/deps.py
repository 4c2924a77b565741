"""Request-scoped pieces every service's ``api/deps.py`` builds on.

Authorization has one object, ``stratus.core.policy.Caller``; ``caller_dependency`` makes
the FastAPI dependency that builds it per request::

    CallerDep = Annotated[Caller, Depends(caller_dependency(lambda r: runtime(r).enforcer))]
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import Request
from sqlalchemy.exc import IntegrityError

from stratus.core.auth import require_context
from stratus.core.exceptions import Conflict
from stratus.core.policy import Caller, Denial, Enforcer, denied


def caller_dependency(enforcer: Callable[[Request], Enforcer], *,
                      denial: Denial = denied) -> Callable[..., Awaitable[Caller]]:
    """A FastAPI dependency: the request's ``Caller`` (the token is required), checked
    against the enforcer ``enforcer(request)`` returns, refusing with ``denial``."""

    async def caller(request: Request) -> Caller:
        # ``require_context`` called, not declared as a dependency of this one: FastAPI
        # solves each declared dependency on every request (~30 Python calls), and the
        # context is kept on the request (``request.state.context``) either way.
        return Caller(await require_context(request), enforcer(request), denial=denial)

    return caller


@asynccontextmanager
async def duplicates_as_conflict(message: str) -> AsyncIterator[None]:
    """A unique constraint the database caught (two requests raced past the service's own
    duplicate check) is the client's 409, not a 500."""
    try:
        yield
    except IntegrityError as exc:
        raise Conflict(message) from exc


def duplicate_as_conflict(exc: BaseException | None, message: str) -> Conflict | None:
    """``duplicates_as_conflict`` for code that catches for itself (an API module does not
    import SQLAlchemy): the client's 409 when ``exc`` is a unique constraint the database
    caught, else None."""
    return Conflict(message) if isinstance(exc, IntegrityError) else None
