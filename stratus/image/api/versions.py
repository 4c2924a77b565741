"""Version discovery: ``GET /`` (and ``/versions``) lists the Image API versions.

Glance's catalog URL is unversioned; clients fetch it, pick the newest ``v2.x`` and use that
entry's ``self`` link (``<root>/v2/``). We advertise up to v2.7 (hidden images, multihash),
the newest version whose behaviour this service implements.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from stratus.image.api.deps import BaseURL

router = APIRouter()

CURRENT = 7


def versions_document(base: str) -> dict[str, Any]:
    link = [{"rel": "self", "href": f"{base}/v2/"}]
    return {"versions": [
        {"id": f"v2.{minor}", "status": "CURRENT" if minor == CURRENT else "SUPPORTED",
         "links": link}
        for minor in range(CURRENT, -1, -1)
    ]}


@router.get("/")
@router.get("/v2")
@router.get("/v2/")
async def versions(base: BaseURL) -> JSONResponse:
    return JSONResponse(versions_document(base), status_code=300)


@router.get("/versions")
async def versions_ok(base: BaseURL) -> JSONResponse:
    return JSONResponse(versions_document(base))
