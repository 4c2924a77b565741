"""Network v2.0 HTTP API (Neutron compatible)."""

from __future__ import annotations

from fastapi import FastAPI

from stratus.core.auth import TokenValidator
from stratus.core.web import ErrorStyle, create_app
from stratus.network.api import core, extra, floating_ips, routers, tags, versions
from stratus.network.service import NetworkRuntime


def create_network_app(runtime: NetworkRuntime, validator: TokenValidator) -> FastAPI:
    """The Network API. Errors are Neutron's ``{"NeutronError": {"type", "message",
    "detail"}}`` (``NETWORK``), the type naming the error (``PortNotFound``)."""
    return create_app(
        service="network",
        style=ErrorStyle.NETWORK,
        routers=[versions.router, core.router, extra.router, tags.router, routers.router,
                 floating_ips.router],
        max_body_size=runtime.settings.max_request_body_size,
        openapi=runtime.settings.serve_openapi,
        state={"network": runtime, "token_validator": validator},
        server_routes=False,  # no route names a server
    )
