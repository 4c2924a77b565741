"""Version discovery: ``GET /`` lists the versions, ``GET /v2.1`` describes v2.1 and
``GET /v2`` v2.0.

As Nova, both are listed, v2.0 first: v2.0 (``SUPPORTED``, no microversions) is the v2.1
API at its base microversion under ``/v2`` (``legacy_v2``); v2.1 is ``CURRENT``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from stratus.core.web.app import api_root
from stratus.core.web.microversions import VersionRange

router = APIRouter()

MEDIA_TYPES = {
    "v2.0": [{"base": "application/json",
              "type": "application/vnd.openstack.compute+json;version=2"}],
    "v2.1": [{"base": "application/json",
              "type": "application/vnd.openstack.compute+json;version=2.1"}],
}


def documents(request: Request) -> list[dict[str, Any]]:
    root = api_root(request)
    versions: VersionRange = request.app.state.versions
    return [
        {"id": "v2.0", "status": "SUPPORTED", "version": "", "min_version": "",
         "updated": "2011-01-21T11:33:21Z",
         "links": [{"rel": "self", "href": f"{root}/v2/"}]},
        {"id": "v2.1", "status": "CURRENT", "version": str(versions.maximum),
         "min_version": str(versions.minimum), "updated": "2013-07-23T11:33:21Z",
         "links": [{"rel": "self", "href": f"{root}/v2.1/"}]},
    ]


@router.get("/")
async def versions(request: Request) -> dict[str, Any]:
    return {"versions": documents(request)}


def _one(request: Request, version_id: str) -> dict[str, Any]:
    (document,) = (d for d in documents(request) if d["id"] == version_id)
    return {"version": {**document, "media-types": MEDIA_TYPES[version_id]}}


@router.get("/v2")
@router.get("/v2/")
async def version_v20(request: Request) -> dict[str, Any]:
    return _one(request, "v2.0")


@router.get("/v2.1")
@router.get("/v2.1/")
async def version_v21(request: Request) -> dict[str, Any]:
    return _one(request, "v2.1")
