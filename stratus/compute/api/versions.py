"""Version discovery: ``GET /`` lists the versions, ``GET /v2.1`` describes v2.1.

Only v2.1 is served (the legacy v2.0 API is not), so only v2.1 is listed.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from stratus.core.web.app import api_root
from stratus.core.web.microversions import VersionRange

router = APIRouter()

MEDIA_TYPES = [{"base": "application/json",
                "type": "application/vnd.openstack.compute+json;version=2.1"}]


def documents(request: Request) -> list[dict[str, Any]]:
    root = api_root(request)
    versions: VersionRange = request.app.state.versions
    return [
        {"id": "v2.1", "status": "CURRENT", "version": str(versions.maximum),
         "min_version": str(versions.minimum), "updated": "2013-07-23T11:33:21Z",
         "links": [{"rel": "self", "href": f"{root}/v2.1/"}]},
    ]


@router.get("/")
async def versions(request: Request) -> dict[str, Any]:
    return {"versions": documents(request)}


@router.get("/v2.1")
@router.get("/v2.1/")
async def version_v21(request: Request) -> dict[str, Any]:
    return {"version": {**documents(request)[0], "media-types": MEDIA_TYPES}}
