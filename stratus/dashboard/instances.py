"""The instances table with live status, the launch form, instance detail and actions.

Every page is one parallel round of calls (``client.gather``), never one call per row:
the instances table is ``servers/detail`` plus the image list (for names); a status poll
is one ``servers/detail?changes-since=T`` for all the rows in transition.

Polling: rows in a transitional state carry a hidden ``id`` input; one poller element asks
``POST /instances/poll`` with those ids (a POST: hundreds of ids do not fit a URL) and
swaps, out of band, the cells of the rows that changed (a deleted server's row is removed).
While rows stay in transition it answers a new poller, sooner when something changed, later
(times 1.5 up to ``poll_max_interval``) when nothing did.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import escape

from stratus.dashboard.boot_sources import (
    SOURCES,
    SourceInvalid,
    available_snapshots,
    boot_lists,
    bootable_volumes,
    server_source,
)
from stratus.dashboard.cache import active_images, image_list
from stratus.dashboard.cache import flavors as flavors_of
from stratus.dashboard.client import ApiError, gather
from stratus.dashboard.forms import banners, items
from stratus.dashboard.instance_detail import (
    VOLUMES_ATTACHED,
    attached_volumes,
    launch_trace,
    volume_list,
)
from stratus.dashboard.servers import ACTIONS, Row, image_names, row_of, since_of
from stratus.dashboard.web import Page, current, dashboard_of, field, form_of, redirect, render

LOG = logging.getLogger(__name__)
router = APIRouter()

#: Launch form fields, for messages placed beside the field they are about (the first
#: word found in the API's message wins).
FIELD_WORDS = (("key pair", "key_name"), ("keypair", "key_name"),
               ("security group", "security_groups"), ("network", "network"),
               ("flavor", "flavor"), ("volume size", "volume_size"),
               ("volume_size", "volume_size"), ("snapshot", "snapshot"),
               ("block device", "source"), ("volume", "volume"), ("image", "image"),
               ("quota", "count"), ("count", "count"), ("name", "name"))


def _poller(since: str | None, delay: float) -> dict[str, Any]:
    return {"since": since, "delay": round(delay, 1)}


def _fragment(request: Request, mode: str, *, rows: list[Row] | None = None,
              deleted: list[str] | None = None, poller: dict[str, Any] | None = None,
              banner: str | None = None, row_error: str | None = None) -> Response:
    return render(request, "poll.html", mode=mode, rows=rows or [], deleted=deleted or [],
                  poller=poller, banner=banner, row_error=row_error)


# The table --------------------------------------------------------------------------------


@router.get("/")
async def home(request: Request) -> Response:
    return redirect(request, "/instances")


@router.get("/instances")
async def instances(request: Request, page: Page = Depends(current)) -> Response:
    options = dashboard_of(request).options
    params: dict[str, Any] = {"limit": options.page_size}
    if marker := request.query_params.get("marker"):
        params["marker"] = marker
    servers, images = await gather(
        page.api.request("compute", "GET", "/servers/detail", params=params),
        image_list(page))
    rows: list[Row] = []
    since = None
    next_marker = None
    if not isinstance(servers, ApiError):
        body = servers.json()
        names = image_names(images)
        rows = [row_of(server, names) for server in body.get("servers", [])]
        since = since_of(servers)
        if body.get("servers_links") and rows:
            next_marker = rows[-1].id
    poller = _poller(since, options.poll_interval) if any(
        r.transitional for r in rows) else None
    return render(request, "instances.html", rows=rows, banners=banners(servers, images),
                  poller=poller, next_marker=next_marker,
                  listed=not isinstance(servers, ApiError))


@router.post("/instances/poll")
async def poll(request: Request, page: Page = Depends(current)) -> Response:
    """The rows in transition (``id`` fields), from one changes-since call."""
    options = dashboard_of(request).options
    form = await form_of(request)
    ids = list(dict.fromkeys(form.get("id", [])))
    since = request.query_params.get("since")
    try:
        delay = float(request.query_params.get("delay", options.poll_interval))
    except ValueError:
        delay = options.poll_interval
    if not ids or not since:
        return _fragment(request, "poll", poller=None)
    try:
        response = await page.api.request("compute", "GET", "/servers/detail",
                                          params={"changes-since": since})
    except ApiError as exc:
        # Keep polling, later: the service may come back; say so in the banner area.
        return _fragment(request, "poll", banner=exc.banner,
                         poller=_poller(since, min(delay * 2, options.poll_max_interval)))
    changed = {s["id"]: s for s in response.json().get("servers", []) if s["id"] in ids}
    deleted = [i for i, s in changed.items() if s.get("status") == "DELETED"]
    rows = [row_of(s, {}) for i, s in changed.items() if i not in deleted]
    still = [i for i in ids if i not in deleted and (
        i not in changed or any(r.id == i and r.transitional for r in rows))]
    poller = None
    if still:
        delay = options.poll_interval if changed else min(delay * 1.5,
                                                          options.poll_max_interval)
        poller = _poller(since_of(response), delay)
    return _fragment(request, "poll", rows=rows, deleted=deleted, poller=poller)


# Actions ----------------------------------------------------------------------------------


@router.post("/instances/{server_id}")
async def act_from_row(request: Request, server_id: str,
                       page: Page = Depends(current)) -> Response:
    """The table row's one form: the button pressed names the action (``action``)."""
    action = field(await form_of(request), "action")
    return await act(request, server_id, action or "none", page)


@router.post("/instances/{server_id}/{action}")
async def act(request: Request, server_id: str, action: str,
              page: Page = Depends(current)) -> Response:
    """Start, stop, reboot or delete. From the table (htmx): the row's cells and a poller;
    from a plain form: back to where it came from."""
    form = await form_of(request)
    if action not in ACTIONS:
        return render(request, "message.html", status_code=404,
                      message=f"No action {action!r}.")
    _, body, _ = ACTIONS[action]
    error = None
    try:
        if body is None:
            await page.api.request("compute", "DELETE", f"/servers/{server_id}")
        else:
            await page.api.request("compute", "POST", f"/servers/{server_id}/action",
                                   json=body)
    except ApiError as exc:
        error = exc
    back = field(form, "next") == "detail"
    if request.headers.get("HX-Request") != "true":
        if error is not None:
            return render(request, "message.html", status_code=error.status,
                          message=error.banner)
        return redirect(request, f"/instances/{server_id}" if back and action != "delete"
                        else "/instances")
    try:
        response = await page.api.request("compute", "GET", f"/servers/{server_id}")
    except ApiError as exc:
        if exc.status == 404:  # deleted at once
            return _fragment(request, "action", deleted=[server_id])
        return _fragment(request, "action", banner=exc.banner)
    row = row_of(response.json()["server"], {})
    options = dashboard_of(request).options
    # The poller this one replaces may be watching other rows since earlier: keep the
    # earlier time, or their changes in between would be missed.
    since = min(filter(None, (since_of(response), field(form, "poll_since"))))
    poller = _poller(since, options.poll_interval) if row.transitional else None
    return _fragment(request, "action", rows=[row], poller=poller,
                     row_error=error.banner if error is not None else None)


# Detail -----------------------------------------------------------------------------------


async def _console(page: Page, server_id: str) -> Any:
    body = await page.api.post("compute", f"/servers/{server_id}/action",
                               {"os-getConsoleOutput": {"length": 100}})
    return (body or {}).get("output", "")


@router.get("/instances/{server_id}")
async def detail(request: Request, server_id: str, page: Page = Depends(current)) -> Response:
    server, console, actions, images, volumes, trace = await gather(
        page.api.get("compute", f"/servers/{server_id}"),
        _console(page, server_id),
        page.api.get("compute", f"/servers/{server_id}/os-instance-actions"),
        image_list(page),
        volume_list(page),
        launch_trace(page, server_id))
    if isinstance(server, ApiError):
        return render(request, "message.html", status_code=server.status,
                      message=server.banner)
    body = server["server"]
    row = row_of(body, image_names(images))
    failed = [actions, images]
    if body.get(VOLUMES_ATTACHED):
        failed.append(volumes)
    return render(request, "detail.html", row=row, banners=banners(*failed),
                  console=console if isinstance(console, str) else None,
                  console_error=console.banner if isinstance(console, ApiError) else None,
                  actions=[] if isinstance(actions, ApiError) else
                  actions.get("instanceActions", []),
                  volumes=attached_volumes(body, volumes), trace=trace)


@router.get("/instances/{server_id}/console")
async def console(request: Request, server_id: str, page: Page = Depends(current)) -> Response:
    try:
        output = await _console(page, server_id)
    except ApiError as exc:
        # Not yet (a 409 while it builds) or the service is away: ask again; gone: stop.
        return render(request, "console.html", server_id=server_id, console=None,
                      console_error=exc.banner, refresh=exc.status != 404)
    return render(request, "console.html", server_id=server_id, console=output,
                  console_error=None, refresh=True)


@router.get("/instances/{server_id}/summary")
async def summary(request: Request, server_id: str, page: Page = Depends(current)) -> Response:
    try:
        server = await page.api.get("compute", f"/servers/{server_id}")
    except ApiError as exc:
        return HTMLResponse(f'<p role="alert">{escape(exc.banner)}</p>')
    return render(request, "summary.html", row=row_of(server["server"], {}),
                  image_name=request.query_params.get("image", ""))


# Launch -----------------------------------------------------------------------------------


async def _launch_lists(page: Page) -> tuple[dict[str, Any], list[str]]:
    flavors, images, networks, groups, keypairs, volumes, snapshots = await gather(
        flavors_of(page),
        active_images(page),
        page.api.get("network", "/v2.0/networks"),
        page.api.get("network", "/v2.0/security-groups",
                     params={"project_id": page.session.project["id"]}),
        page.api.get("compute", "/os-keypairs"),
        bootable_volumes(page),
        available_snapshots(page))

    lists = {
        "flavors": sorted(items(flavors, "flavors"), key=lambda f: (f.get("ram", 0),
                                                                    f.get("name", ""))),
        "images": sorted(items(images, "images"), key=lambda i: i.get("name") or ""),
        "networks": sorted(items(networks, "networks"), key=lambda n: (
            bool(n.get("router:external")), n.get("name") or "")),
        "groups": sorted(items(groups, "security_groups"), key=lambda g: g.get("name", "")),
        "keypairs": [k["keypair"] for k in items(keypairs, "keypairs")],
        "boot": boot_lists(volumes, snapshots), "sources": SOURCES,
        "block_storage": page.api.offers("block-storage"),
    }
    return lists, banners(flavors, images, networks, groups, keypairs, volumes, snapshots)


def _field_of(message: str) -> str | None:
    lowered = message.lower()
    for word, name in FIELD_WORDS:
        if word in lowered:
            return name
    return None


@router.get("/launch")
async def launch_form(request: Request, page: Page = Depends(current)) -> Response:
    lists, banners = await _launch_lists(page)
    return render(request, "launch.html", banners=banners, error=None, error_field=None,
                  values={"count": "1", "security_groups": ["default"], "source": "image"},
                  **lists)


@router.post("/launch")
async def launch(request: Request, page: Page = Depends(current)) -> Response:
    form = await form_of(request)
    values: dict[str, Any] = {key: field(form, key) for key in (
        "name", "image", "flavor", "network", "key_name", "count", "source", "volume",
        "snapshot", "volume_size", "delete_on_termination")}
    values["security_groups"] = form.get("security_groups", [])
    error: str | None = None
    error_field: str | None = None
    status = 400
    count = 0
    source: dict[str, Any] = {}
    try:
        count = int(values["count"] or "1")
    except ValueError:
        pass
    if not 1 <= count <= 100:
        error, error_field = "Count: a whole number from 1 to 100.", "count"
    elif not values["name"]:
        error, error_field = "Give the server a name.", "name"
    else:
        try:
            source = server_source(values)
        except SourceInvalid as exc:
            error, error_field = str(exc), exc.field
    if error is None:
        server: dict[str, Any] = {
            "name": values["name"], **source, "flavorRef": values["flavor"],
            "min_count": count, "max_count": count,
            "networks": [{"uuid": values["network"]}] if values["network"] not in ("", "none")
            else "none"}
        if values["security_groups"]:
            server["security_groups"] = [{"name": g} for g in values["security_groups"]]
        if values["key_name"]:
            server["key_name"] = values["key_name"]
        try:
            await page.api.post("compute", "/servers", {"server": server})
        except ApiError as exc:
            status = exc.status
            if exc.is_client_error:
                error, error_field = exc.message, _field_of(exc.message)
            else:
                error = exc.banner
        else:
            return redirect(request, "/instances")
    lists, banners = await _launch_lists(page)
    return render(request, "launch.html", status_code=status, banners=banners, error=error,
                  error_field=error_field, values=values, **lists)
