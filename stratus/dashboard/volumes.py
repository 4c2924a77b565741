"""Volumes and volume snapshots: the lists with live status, create (blank or from an
image), delete, attach to and detach from a server, extend; snapshots create and delete.

Contracts:

* The page is one round: ``volumes/detail``, ``snapshots/detail``, the project's servers
  (``GET /servers``: ids and names, for the attach choice and the "attached to" column) and
  the active images (for "from an image", the cached list).
* Rows in a transitional state (creating, attaching, extending, deleting…) poll: one
  ``POST /volumes/poll`` for all of them, one round of the page's lists (no per-row call),
  answering the changed rows out of band, removing the gone ones, and the next poller while
  some are still in transition, backing off (times 1.5 up to ``poll_max_interval``) while
  nothing changes. A volume's status is never cached.
* Attach and detach go through the compute API (``os-volume_attachments``), as the CLI's
  ``server add volume`` does; the volume API's refusal (a size not larger, a volume in use)
  shows beside the row or form it came from.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from stratus.dashboard.cache import active_images
from stratus.dashboard.client import ApiError, gather
from stratus.dashboard.forms import Refusal, banners, items, names, placed, refuse, submit
from stratus.dashboard.web import Page, current, dashboard_of, field, form_of, render

router = APIRouter()

#: Statuses on the way to a stable one: their rows poll.
TRANSITIONAL = frozenset({"creating", "attaching", "detaching", "deleting", "extending",
                          "downloading", "uploading", "reserved", "backing-up",
                          "restoring-backup", "retyping", "reverting", "maintenance"})
ATTACHABLE = frozenset({"available"})


def _choices(servers: Any) -> list[tuple[str, str]]:
    """The attach choice: (id, name) of each server, by name."""
    return sorted(names(servers, "servers").items(), key=lambda s: s[1])


def volume_row(volume: dict[str, Any], servers: dict[str, str]) -> dict[str, Any]:
    status = volume.get("status", "")
    return {
        "id": volume["id"], "name": volume.get("name") or volume["id"],
        "size": volume.get("size"), "status": status,
        "type": volume.get("volume_type") or "—",
        "bootable": volume.get("bootable") == "true",
        "attachments": [{"server_id": a.get("server_id"),
                         "server": servers.get(a.get("server_id", ""), a.get("server_id")),
                         "device": a.get("device") or ""}
                        for a in volume.get("attachments") or []],
        "transitional": status in TRANSITIONAL, "attachable": status in ATTACHABLE,
    }


def snapshot_row(snapshot: dict[str, Any], volumes: dict[str, str]) -> dict[str, Any]:
    status = snapshot.get("status", "")
    return {"id": snapshot["id"], "name": snapshot.get("name") or snapshot["id"],
            "size": snapshot.get("size"), "status": status,
            "volume": volumes.get(snapshot.get("volume_id", ""), snapshot.get("volume_id")),
            "transitional": status in TRANSITIONAL}


async def _round(page: Page, *, with_images: bool) -> list[Any]:
    calls = [page.api.get("block-storage", "/volumes/detail"),
             page.api.get("block-storage", "/snapshots/detail"),
             page.api.get("compute", "/servers")]
    if with_images:
        calls.append(active_images(page))
    return await gather(*calls)


def _rows(volumes: Any, snapshots: Any, servers: Any) -> tuple[list[dict[str, Any]],
                                                               list[dict[str, Any]]]:
    server_names = names(servers, "servers")
    volume_rows = sorted((volume_row(v, server_names) for v in items(volumes, "volumes")),
                         key=lambda r: (r["name"], r["id"]))
    volume_names = {r["id"]: r["name"] for r in volume_rows}
    snapshot_rows = sorted((snapshot_row(s, volume_names)
                            for s in items(snapshots, "snapshots")),
                           key=lambda r: (r["name"], r["id"]))
    return volume_rows, snapshot_rows


async def _page(request: Request, page: Page, *, status_code: int = 200,
                error: Refusal | None = None, values: dict[str, str] | None = None
                ) -> Response:
    volumes, snapshots, servers, images = await _round(page, with_images=True)
    volume_rows, snapshot_rows = _rows(volumes, snapshots, servers)
    transitional = any(r["transitional"] for r in (*volume_rows, *snapshot_rows))
    return render(request, "volumes.html", status_code=status_code,
                  banners=banners(volumes, snapshots, servers, images),
                  volumes=volume_rows, snapshots=snapshot_rows,
                  listed=not isinstance(volumes, ApiError),
                  servers=_choices(servers),
                  images=sorted(items(images, "images"), key=lambda i: i.get("name") or ""),
                  error=placed(error, ["create", "snapshot",
                                       *(f"volume-{r['id']}" for r in volume_rows),
                                       *(f"snapshot-{r['id']}" for r in snapshot_rows)]),
                  values=values or {"size": "1", "source": "blank"},
                  delay=dashboard_of(request).options.poll_interval if transitional else None)


@router.get("/volumes")
async def volumes_page(request: Request, page: Page = Depends(current)) -> Response:
    return await _page(request, page)


@router.post("/volumes/poll")
async def poll(request: Request, page: Page = Depends(current)) -> Response:
    """The rows in transition (``id`` fields: ``volume:ID`` or ``snapshot:ID``)."""
    options = dashboard_of(request).options
    ids = set((await form_of(request)).get("id", []))
    try:
        delay = float(request.query_params.get("delay", options.poll_interval))
    except ValueError:
        delay = options.poll_interval
    if not ids:
        return render(request, "volume_poll.html", rows=[], gone=[], delay=None, banner=None,
                      servers=[])
    volumes, snapshots, servers = await _round(page, with_images=False)
    failed = next((r for r in (volumes, snapshots) if isinstance(r, ApiError)), None)
    if failed is not None:  # keep asking, later: the service may come back
        return render(request, "volume_poll.html", rows=[], gone=[], banner=failed.banner,
                      delay=round(min(delay * 2, options.poll_max_interval), 1), servers=[])
    volume_rows, snapshot_rows = _rows(volumes, snapshots, servers)
    current_rows = {f"volume:{r['id']}": ("volume", r) for r in volume_rows}
    current_rows.update({f"snapshot:{r['id']}": ("snapshot", r) for r in snapshot_rows})
    rows = [current_rows[i] for i in sorted(ids) if i in current_rows]
    gone = [i.replace(":", "-", 1) for i in sorted(ids) if i not in current_rows]
    changed = bool(gone) or any(not r["transitional"] for _, r in rows)
    next_delay = None
    if any(r["transitional"] for _, r in rows):
        next_delay = round(options.poll_interval if changed
                           else min(delay * 1.5, options.poll_max_interval), 1)
    return render(request, "volume_poll.html", rows=rows, gone=gone, delay=next_delay,
                  banner=None, servers=_choices(servers))


# Volumes ----------------------------------------------------------------------------------


@router.post("/volumes")
async def create(request: Request, page: Page = Depends(current)) -> Response:
    form = await form_of(request)
    values = {key: field(form, key) for key in ("name", "size", "source", "image",
                                                "description")}
    again = partial(_page, request, page, values=values)
    body: dict[str, Any] = {"name": values["name"], "description": values["description"]}
    try:
        body["size"] = int(values["size"])
    except ValueError:
        return await refuse(again, "create", "Size: a whole number of GiB.")
    if values["source"] == "image":
        if not values["image"]:
            return await refuse(again, "create", "Choose the image to copy.")
        body["imageRef"] = values["image"]
    return await submit(request, lambda: page.api.post("block-storage", "/volumes",
                                                       {"volume": body}),
                        where="create", again=again, back="/volumes")


@router.post("/volumes/{volume_id}/delete")
async def delete(request: Request, volume_id: str, page: Page = Depends(current)) -> Response:
    return await submit(request, lambda: page.api.request(
        "block-storage", "DELETE", f"/volumes/{volume_id}"),
        where=f"volume-{volume_id}", again=partial(_page, request, page), back="/volumes")


@router.post("/volumes/{volume_id}/extend")
async def extend(request: Request, volume_id: str, page: Page = Depends(current)) -> Response:
    again = partial(_page, request, page)
    where = f"volume-{volume_id}"
    try:
        new_size = int(field(await form_of(request), "size"))
    except ValueError:
        return await refuse(again, where, "New size: a whole number of GiB.")
    return await submit(request, lambda: page.api.post(
        "block-storage", f"/volumes/{volume_id}/action", {"os-extend": {"new_size": new_size}}),
        where=where, again=again, back="/volumes")


@router.post("/volumes/{volume_id}/attach")
async def attach(request: Request, volume_id: str, page: Page = Depends(current)) -> Response:
    server_id = field(await form_of(request), "server")
    again = partial(_page, request, page)
    where = f"volume-{volume_id}"
    if not server_id:
        return await refuse(again, where, "Choose the instance to attach to.")
    return await submit(request, lambda: page.api.post(
        "compute", f"/servers/{server_id}/os-volume_attachments",
        {"volumeAttachment": {"volumeId": volume_id}}),
        where=where, again=again, back="/volumes")


@router.post("/volumes/{volume_id}/detach")
async def detach(request: Request, volume_id: str, page: Page = Depends(current)) -> Response:
    server_id = field(await form_of(request), "server")
    return await submit(request, lambda: page.api.request(
        "compute", "DELETE", f"/servers/{server_id}/os-volume_attachments/{volume_id}"),
        where=f"volume-{volume_id}", again=partial(_page, request, page), back="/volumes")


# Snapshots --------------------------------------------------------------------------------


@router.post("/volume-snapshots")
async def create_snapshot(request: Request, page: Page = Depends(current)) -> Response:
    form = await form_of(request)
    values = {"snapshot_name": field(form, "name"), "snapshot_volume": field(form, "volume")}
    again = partial(_page, request, page, values=values)
    if not values["snapshot_volume"]:
        return await refuse(again, "snapshot", "Choose the volume to snapshot.")
    body = {"snapshot": {"volume_id": values["snapshot_volume"],
                         "name": values["snapshot_name"]}}
    return await submit(request, lambda: page.api.post("block-storage", "/snapshots", body),
                        where="snapshot", again=again, back="/volumes")


@router.post("/volume-snapshots/{snapshot_id}/delete")
async def delete_snapshot(request: Request, snapshot_id: str,
                          page: Page = Depends(current)) -> Response:
    return await submit(request, lambda: page.api.request(
        "block-storage", "DELETE", f"/snapshots/{snapshot_id}"),
        where=f"snapshot-{snapshot_id}", again=partial(_page, request, page),
        back="/volumes")
