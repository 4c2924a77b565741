"""Identity v3 HTTP API."""

from __future__ import annotations

from fastapi import FastAPI

from stratus.core.auth import TokenValidator
from stratus.core.web import ErrorStyle, create_app
from stratus.identity.api import app_credentials, auth, catalog, resources, roles, users, versions
from stratus.identity.service import IdentityRuntime


def create_identity_app(runtime: IdentityRuntime, validator: TokenValidator) -> FastAPI:
    """The Identity API. ``validator`` checks callers' tokens (usually cached, in-process)."""
    return create_app(
        service="identity",
        style=ErrorStyle.IDENTITY,
        routers=[versions.router, auth.router, resources.router, users.router, roles.router,
                 catalog.router, app_credentials.router],
        max_body_size=runtime.settings.max_request_body_size,
        openapi=runtime.settings.serve_openapi,
        state={"identity": runtime, "token_validator": validator},
    )
