"""Images: the list, create with an upload streamed straight into the image API, delete.

Upload, in two requests so a refused name or format shows before any byte is sent:

1. ``POST /images`` (the form's fields) creates the image (``POST /v2/images``) and
   answers JSON ``{"id", "upload"}``; a 4xx answers ``{"error", "field"}`` with the API's
   message, a 5xx ``{"error"}`` naming the service.
2. The page's script sends the file as the body of ``PUT /images/{id}/file`` (reporting
   progress as it goes); the dashboard passes the body on to ``PUT /v2/images/{id}/file``
   chunk by chunk as it arrives: no temporary file, no whole file in memory, and the
   browser never talks to the image API (no CORS).

The image list is asked every time (its statuses change); only its names are cached
elsewhere (``cache.image_list``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from stratus.dashboard.client import ApiError, gather
from stratus.dashboard.web import (
    Page,
    current,
    dashboard_of,
    field,
    form_of,
    redirect,
    render,
)

router = APIRouter()

DISK_FORMATS = ("raw", "qcow2", "iso", "vmdk", "vdi", "vhd", "vhdx", "ami", "ari", "aki")


@router.get("/images")
async def images(request: Request, page: Page = Depends(current)) -> Response:
    return await _page(request, page)


async def _page(request: Request, page: Page, *, status_code: int = 200,
                row_error: str | None = None) -> Response:
    (listed,) = await gather(page.api.get("image", "/v2/images", params={"limit": 1000}))
    rows: list[dict[str, Any]] = []
    banners = []
    if isinstance(listed, ApiError):
        banners.append(listed.banner)
    else:
        rows = sorted(listed.get("images", []), key=lambda i: (i.get("name") or "", i["id"]))
    return render(request, "images.html", status_code=status_code, banners=banners,
                  rows=rows, listed=not isinstance(listed, ApiError), row_error=row_error,
                  disk_formats=DISK_FORMATS)


def _refused(exc: ApiError) -> JSONResponse:
    if not exc.is_client_error:
        return JSONResponse({"error": exc.banner}, status_code=exc.status)
    lowered = exc.message.lower()
    where = "disk_format" if "format" in lowered else "name"
    return JSONResponse({"error": exc.message, "field": where}, status_code=exc.status)


@router.post("/images")
async def create(request: Request, page: Page = Depends(current)) -> Response:
    form = await form_of(request)
    name = field(form, "name")
    disk_format = field(form, "disk_format", "raw")
    if not name:
        return JSONResponse({"error": "Give the image a name.", "field": "name"},
                            status_code=400)
    try:
        image = await page.api.post("image", "/v2/images", {
            "name": name, "disk_format": disk_format, "container_format": "bare"})
    except ApiError as exc:
        return _refused(exc)
    image_id = image["id"]
    return JSONResponse({"id": image_id, "upload": f"{page.base}/images/{image_id}/file"},
                        status_code=201)


@router.put("/images/{image_id}/file")
async def upload(request: Request, image_id: str, page: Page = Depends(current)) -> Response:
    """Pass the request's body on to the image API as it arrives."""
    headers = {"Content-Type": "application/octet-stream"}
    if length := request.headers.get("content-length"):
        headers["Content-Length"] = length  # a plain upload, not chunked
    try:
        await page.api.request("image", "PUT", f"/v2/images/{image_id}/file",
                               content=request.stream(), headers=headers,
                               bound=dashboard_of(request).options.upload_timeout)
    except ApiError as exc:
        return _refused(exc)
    return Response(status_code=204)


@router.post("/images/delete")
async def delete(request: Request, page: Page = Depends(current)) -> Response:
    image_id = field(await form_of(request), "id")
    try:
        await page.api.request("image", "DELETE", f"/v2/images/{image_id}")
    except ApiError as exc:
        return await _page(request, page, status_code=exc.status, row_error=exc.banner)
    return redirect(request, "/images")
