"""Compute v2.1 HTTP API."""

from __future__ import annotations

from fastapi import FastAPI

from stratus.compute.api import (
    aggregates,
    availability_zones,
    flavors,
    hosts,
    images,
    interfaces,
    ips,
    keypairs,
    migrations,
    quotas,
    remote_consoles,
    server_external_events,
    server_groups,
    server_metadata,
    server_password,
    server_security_groups,
    server_tags,
    servers,
    stratus_trace,
    usage,
    versions,
    volume_attachments,
)
from stratus.compute.api.legacy_v2 import LegacyV2Middleware
from stratus.compute.service import ComputeRuntime
from stratus.core.auth import TokenValidator
from stratus.core.web import ErrorStyle, create_app
from stratus.core.web.microversions import APIVersion, VersionRange

#: The microversions served. Only versions whose formats are implemented are advertised.
VERSIONS = VersionRange("compute", APIVersion(2, 1), APIVersion(2, 96),
                        legacy_header="X-OpenStack-Nova-API-Version")


def create_compute_app(runtime: ComputeRuntime, validator: TokenValidator) -> FastAPI:
    """The Compute API over ``runtime``, which holds its clients (``ComputeRuntime.connect``)."""
    app = create_app(
        service="compute",
        style=ErrorStyle.COMPUTE,
        routers=[versions.router, flavors.router, keypairs.router, servers.router,
                 hosts.router, quotas.router, server_metadata.router, server_groups.router,
                 server_external_events.router, availability_zones.router,
                 server_password.router, volume_attachments.router, interfaces.router,
                 server_security_groups.router, remote_consoles.router, migrations.router,
                 server_tags.router, usage.router, images.router,
                 ips.router, aggregates.router, stratus_trace.router],
        max_body_size=runtime.settings.max_request_body_size,
        openapi=runtime.settings.serve_openapi,
        extra_request_id_headers=("x-compute-request-id",),
        versions=VERSIONS,
        state={"compute": runtime, "token_validator": validator, "versions": VERSIONS},
    )
    app.add_middleware(LegacyV2Middleware)  # outermost: /v2/... is /v2.1/... at 2.1
    return app
