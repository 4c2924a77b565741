"""Block Storage v3 HTTP API (volume-api)."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from stratus.core.auth import TokenValidator
from stratus.core.web import ErrorStyle, create_app
from stratus.core.web.microversions import APIVersion, VersionRange
from stratus.volume.api import (
    attachments,
    discovery,
    quotas,
    snapshots,
    transfers,
    types,
    versions,
    volumes,
)
from stratus.volume.service import VolumeRuntime

#: The microversions served; only versions whose formats are implemented are advertised.
VERSIONS = VersionRange("volume", APIVersion(3, 0), APIVersion(3, 60))


def create_volume_app(runtime: VolumeRuntime, validator: TokenValidator, *,
                      http_client: httpx.AsyncClient) -> FastAPI:
    """``http_client`` reaches other services (the image service, for ``imageRef``)."""
    return create_app(
        service="volume",
        # Cinder's error bodies are Nova's: {"badRequest": {"message", "code"}}.
        style=ErrorStyle.COMPUTE,
        routers=[versions.router, volumes.router, snapshots.router, types.router,
                 attachments.router, quotas.router, discovery.router, transfers.router],
        max_body_size=runtime.settings.max_request_body_size,
        openapi=runtime.settings.serve_openapi,
        versions=VERSIONS,
        state={"volume": runtime, "token_validator": validator, "versions": VERSIONS,
               "http_client": http_client},
    )
