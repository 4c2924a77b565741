"""Identity's unit: ``identity-api``, and the runtime it shares with the other units of the
process (token validation, bootstrap)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.types import ASGIApp

from stratus.core.web.lazy import EagerRoutes, LazyApp
from stratus.stack import Stack, Unit

if TYPE_CHECKING:
    from stratus.identity.service import IdentityRuntime


async def identity_runtime(stack: Stack) -> IdentityRuntime:
    from stratus.identity.service import IdentityRuntime

    return await stack.runtime("identity", lambda: IdentityRuntime(stack.settings))


async def build_api(stack: Stack) -> ASGIApp:
    """The Identity API: its token routes (a start's first token, every service's token
    checks) built now, the rest of it (users, projects, roles, the catalog's records,
    application credentials: ~100 routes and their schemas, a tenth of a start's CPU) by
    its first request, as the other APIs are."""
    from stratus.identity.api import create_identity_app, create_token_app, token_routers

    runtime = await identity_runtime(stack)
    validator = stack.token_validator()
    return EagerRoutes(
        create_token_app(runtime, validator),
        [route for router in token_routers() for route in router.routes],
        LazyApp(lambda: create_identity_app(runtime, validator)))


UNITS = (
    Unit("identity-api", "/identity", build_api, ("identity", "keystone", "/v3")),
)
