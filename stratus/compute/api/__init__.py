"""Compute v2.1 HTTP API."""

from __future__ import annotations

from fastapi import FastAPI

from stratus.compute.api import flavors, keypairs, versions
from stratus.compute.service import ComputeRuntime
from stratus.core.auth import TokenValidator
from stratus.core.web import ErrorStyle, create_app
from stratus.core.web.microversions import APIVersion, VersionRange

#: The microversions served. Only versions whose formats are implemented are advertised.
VERSIONS = VersionRange("compute", APIVersion(2, 1), APIVersion(2, 96),
                        legacy_header="X-OpenStack-Nova-API-Version")


def create_compute_app(runtime: ComputeRuntime, validator: TokenValidator) -> FastAPI:
    return create_app(
        service="compute",
        style=ErrorStyle.COMPUTE,
        routers=[versions.router, flavors.router, keypairs.router],
        max_body_size=runtime.settings.max_request_body_size,
        extra_request_id_headers=("x-compute-request-id",),
        versions=VERSIONS,
        state={"compute": runtime, "token_validator": validator, "versions": VERSIONS},
    )
