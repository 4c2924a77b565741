"""Version discovery: ``GET /`` lists the versions, ``GET /v3`` describes v3."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from stratus.identity.api.deps import BaseURL

router = APIRouter()


def v3_document(base: str) -> dict[str, Any]:
    return {
        "id": "v3.14",
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": f"{base}/v3/"}],
        "media-types": [{"base": "application/json",
                         "type": "application/vnd.openstack.identity-v3+json"}],
    }


@router.get("/")
async def versions(base: BaseURL) -> JSONResponse:
    return JSONResponse({"versions": {"values": [v3_document(base)]}}, status_code=300)


@router.get("/v3")
@router.get("/v3/")
async def version_v3(base: BaseURL) -> dict[str, Any]:
    return {"version": v3_document(base)}
