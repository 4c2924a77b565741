"""Identity v3 HTTP API.

The routers are imported by the functions that build an app, not here: ``stratus up``
builds only the token app at start (``create_token_app``: the first token needs it), and
the whole API (``create_identity_app``) at the first request for anything else; the
modules of the other routers (their request schemas and the routes their import makes)
are imported then.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from stratus.core.auth import TokenValidator
from stratus.core.web import ErrorStyle, create_app
from stratus.identity.service import IdentityRuntime


def token_routers() -> list[APIRouter]:
    """The routers of version discovery and ``/v3/auth`` (tokens, the token's catalog and
    scopes): what a client calls first, and what the rest of the cloud validates with."""
    from stratus.identity.api import auth, versions

    return [versions.router, auth.router]


def create_identity_app(runtime: IdentityRuntime, validator: TokenValidator) -> FastAPI:
    """The Identity API. ``validator`` checks callers' tokens (usually cached, in-process)."""
    from stratus.identity.api import app_credentials, catalog, resources, roles, users

    return _create(runtime, validator,
                   [*token_routers(), resources.router, users.router, roles.router,
                    catalog.router, app_credentials.router],
                   openapi=runtime.settings.serve_openapi)


def create_token_app(runtime: IdentityRuntime, validator: TokenValidator) -> FastAPI:
    """The Identity API's ``token_routers`` alone, answering their requests exactly as the
    whole API does (its routers come first in the whole API, and no other router takes
    their paths: ``tests/integration/identity/test_token_app.py``). No OpenAPI document: the
    whole API serves it."""
    return _create(runtime, validator, token_routers(), openapi=False)


def _create(runtime: IdentityRuntime, validator: TokenValidator, routers: list[APIRouter], *,
            openapi: bool) -> FastAPI:
    return create_app(
        service="identity",
        style=ErrorStyle.IDENTITY,
        routers=routers,
        max_body_size=runtime.settings.max_request_body_size,
        openapi=openapi,
        state={"identity": runtime, "token_validator": validator},
    )
