"""Volume transfers: ``/v3/{project_id}/os-volume-transfer`` (every microversion) and
``/v3/{project_id}/volume-transfers`` (3.55+, with ``no_snapshots``; the projects and
``accepted`` from 3.57): create (the auth key is shown only then), list, detail, show,
accept (by any project with the key), delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from stratus.core.exceptions import BadRequest, NotFound
from stratus.core.web.microversions import APIVersion
from stratus.volume.api import views
from stratus.volume.api.deps import CallerDep, Context, Service, URLs, Version
from stratus.volume.api.params import parse_bool
from stratus.volume.api.schemas import TransferAcceptBody, TransferCreateBody

LEGACY = "os-volume-transfer"
CURRENT = "volume-transfers"

router = APIRouter(prefix="/v3/{project_id}")


def _api(request: Request, version: APIVersion) -> tuple[str, bool]:
    """Which of the two paths was asked (its name, and whether it is the versioned one);
    ``volume-transfers`` exists from 3.55, as in Cinder."""
    versioned = f"/{CURRENT}" in request.url.path
    if versioned and not version.at_least("3.55"):
        raise NotFound("The resource could not be found.")
    return (CURRENT if versioned else LEGACY), versioned


def _project(context: Any) -> str | None:
    return None if context.is_admin else context.project_id


@router.post(f"/{LEGACY}", status_code=202)
@router.post(f"/{CURRENT}", status_code=202)
async def create_transfer(body: TransferCreateBody, request: Request, svc: Service,
                          context: Context, caller: CallerDep, urls: URLs,
                          version: Version) -> JSONResponse:
    path, versioned = _api(request, version)
    caller.authorize("volume:create_transfer", {"project_id": context.project_id})
    t = body.transfer
    if t.no_snapshots and not versioned:
        raise BadRequest("Invalid input received: no_snapshots needs the volume-transfers "
                         "API (microversion 3.55).")
    try:
        volume = await svc.volumes.get_visible(context, t.volume_id)
    except NotFound:
        raise NotFound(f"Volume {t.volume_id} could not be found.") from None
    transfer, key = await svc.transfers.create(context, volume.id, name=t.name,
                                               no_snapshots=t.no_snapshots)
    shown = views.transfer_view(transfer, urls, path, version=version, versioned=versioned)
    return JSONResponse({"transfer": {**shown, "auth_key": key}}, status_code=202)


@router.get(f"/{LEGACY}")
@router.get(f"/{CURRENT}")
@router.get(f"/{LEGACY}/detail")
@router.get(f"/{CURRENT}/detail")
async def list_transfers(request: Request, svc: Service, context: Context,
                         caller: CallerDep, urls: URLs, version: Version) -> dict[str, Any]:
    path, versioned = _api(request, version)
    caller.authorize("volume:get_all_transfers", {"project_id": context.project_id})
    everyone = parse_bool(request.query_params.get("all_tenants", "false"), "all_tenants")
    detail = request.url.path.endswith("/detail")
    rows = await svc.transfers.list(None if everyone and context.is_admin
                                    else context.project_id)
    return {"transfers": [views.transfer_view(t, urls, path, version=version, detail=detail,
                                              versioned=versioned) for t in rows]}


@router.get(f"/{LEGACY}/{{transfer_id}}")
@router.get(f"/{CURRENT}/{{transfer_id}}")
async def show_transfer(transfer_id: str, request: Request, svc: Service, context: Context,
                        caller: CallerDep, urls: URLs, version: Version) -> dict[str, Any]:
    path, versioned = _api(request, version)
    transfer = await svc.transfers.get(transfer_id, _project(context))
    caller.authorize("volume:get_transfer", {"project_id": transfer.source_project_id})
    return {"transfer": views.transfer_view(transfer, urls, path, version=version,
                                            versioned=versioned)}


@router.post(f"/{LEGACY}/{{transfer_id}}/accept", status_code=202)
@router.post(f"/{CURRENT}/{{transfer_id}}/accept", status_code=202)
async def accept_transfer(transfer_id: str, body: TransferAcceptBody, request: Request,
                          svc: Service, context: Context, caller: CallerDep, urls: URLs,
                          version: Version) -> JSONResponse:
    path, versioned = _api(request, version)
    caller.authorize("volume:accept_transfer", {"project_id": context.project_id})
    transfer = await svc.transfers.accept(context, transfer_id, body.accept.auth_key)
    return JSONResponse({"transfer": views.transfer_view(
        transfer, urls, path, version=version, detail=False, versioned=versioned)},
        status_code=202)


@router.delete(f"/{LEGACY}/{{transfer_id}}", status_code=202)
@router.delete(f"/{CURRENT}/{{transfer_id}}", status_code=202)
async def delete_transfer(transfer_id: str, request: Request, svc: Service, context: Context,
                          caller: CallerDep, version: Version) -> Response:
    _api(request, version)
    transfer = await svc.transfers.get(transfer_id, _project(context))
    caller.authorize("volume:delete_transfer", {"project_id": transfer.source_project_id})
    await svc.transfers.delete(transfer.id, None)
    return Response(status_code=202)
