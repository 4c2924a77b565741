"""Identity's unit: ``identity-api``, and the runtime it shares with the other units of the
process (token validation, bootstrap)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.types import ASGIApp

from stratus.stack import Stack, Unit

if TYPE_CHECKING:
    from stratus.identity.service import IdentityRuntime


async def identity_runtime(stack: Stack) -> IdentityRuntime:
    from stratus.identity.service import IdentityRuntime

    return await stack.runtime("identity", lambda: IdentityRuntime(stack.settings))


async def build_api(stack: Stack) -> ASGIApp:
    from stratus.identity.api import create_identity_app

    runtime = await identity_runtime(stack)
    return create_identity_app(runtime, stack.token_validator())


UNITS = (
    Unit("identity-api", "/identity", build_api, ("identity", "keystone", "/v3")),
)
