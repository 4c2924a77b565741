"""Version discovery: ``GET /`` (300, every version) and ``GET /v3/`` (200, v3 only).

Cinder answers a list under ``versions`` even at ``/v3/``; keystoneauth reads the range
from ``version`` and ``min_version``. Discovery needs no token.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from stratus.core.web.app import api_root
from stratus.core.web.microversions import VersionRange

router = APIRouter()

MEDIA_TYPES = [{"base": "application/json",
                "type": "application/vnd.openstack.volume+json;version=3"}]


def v3_document(request: Request) -> dict[str, Any]:
    root = api_root(request)
    versions: VersionRange = request.app.state.versions
    return {"id": "v3.0", "status": "CURRENT", "version": str(versions.maximum),
            "min_version": str(versions.minimum), "updated": "2023-08-31T00:00:00Z",
            "links": [{"rel": "describedby", "type": "text/html",
                       "href": "https://docs.openstack.org/"},
                      {"rel": "self", "href": f"{root}/v3/"}],
            "media-types": MEDIA_TYPES}


@router.get("/")
async def versions(request: Request) -> JSONResponse:
    return JSONResponse({"versions": [v3_document(request)]}, status_code=300)


@router.get("/v3")
@router.get("/v3/")
async def version_v3(request: Request) -> dict[str, Any]:
    return {"versions": [v3_document(request)]}
