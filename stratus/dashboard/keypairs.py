"""Key pairs: the list, create (the compute API generates the pair and hands the private
key back once), import (a public key given), delete.

Contracts:

* The list is one call (``GET /os-keypairs``).
* A generated private key goes from the API's answer into the page that answers the form,
  and nowhere else: not the session, not a log line, not a later page. That page is
  ``no-store`` like every page, so the browser keeps no copy either.
* The API's 4xx (a name taken, a public key it cannot read) is shown at the form with the
  values given; a 5xx or an unreachable service is a banner naming it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from stratus.dashboard.client import ApiError, gather
from stratus.dashboard.web import Page, current, field, form_of, redirect, render

router = APIRouter()


async def _page(request: Request, page: Page, *, status_code: int = 200,
                error: str | None = None, error_field: str | None = None,
                values: dict[str, str] | None = None, row_error: str | None = None,
                created: dict[str, Any] | None = None) -> Response:
    (listed,) = await gather(page.api.get("compute", "/os-keypairs"))
    banners = []
    keypairs: list[dict[str, Any]] = []
    if isinstance(listed, ApiError):
        banners.append(listed.banner)
    else:
        keypairs = sorted((k["keypair"] for k in listed.get("keypairs", [])),
                          key=lambda k: k.get("name", ""))
    return render(request, "keypairs.html", status_code=status_code,
                  banners=banners, keypairs=keypairs, listed=not isinstance(listed, ApiError),
                  error=error, error_field=error_field, row_error=row_error,
                  values=values or {"name": "", "public_key": ""}, created=created)


@router.get("/keypairs")
async def keypairs(request: Request, page: Page = Depends(current)) -> Response:
    return await _page(request, page)


@router.post("/keypairs")
async def create(request: Request, page: Page = Depends(current)) -> Response:
    """Create (no public key: the API generates one) or import a key pair."""
    form = await form_of(request)
    name = field(form, "name")
    public_key = field(form, "public_key")
    values = {"name": name, "public_key": public_key}
    if not name:
        return await _page(request, page, status_code=400, error="Give the key pair a name.",
                           error_field="name", values=values)
    body: dict[str, Any] = {"name": name}
    if public_key:
        body["public_key"] = public_key
    try:
        answer = await page.api.post("compute", "/os-keypairs", {"keypair": body})
    except ApiError as exc:
        if not exc.is_client_error:
            return await _page(request, page, status_code=exc.status, error=exc.banner,
                               values=values)
        where = "public_key" if "key" in exc.message.lower().replace("key pair", "") \
            else "name"
        return await _page(request, page, status_code=exc.status, error=exc.message,
                           error_field=where, values=values)
    keypair = (answer or {}).get("keypair", {})
    if keypair.get("private_key"):
        # Shown once, in this answer only.
        return await _page(request, page, status_code=201, created={
            "name": keypair.get("name", name), "fingerprint": keypair.get("fingerprint", ""),
            "private_key": keypair["private_key"]})
    return redirect(request, "/keypairs")


@router.post("/keypairs/delete")
async def delete(request: Request, page: Page = Depends(current)) -> Response:
    name = field(await form_of(request), "name")
    try:
        await page.api.request("compute", "DELETE", f"/os-keypairs/{quote(name, safe='')}")
    except ApiError as exc:
        return await _page(request, page, status_code=exc.status, row_error=exc.banner)
    return redirect(request, "/keypairs")
