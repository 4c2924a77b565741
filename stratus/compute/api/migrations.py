"""``/os-migrations`` (every move, admins only) and ``/servers/{id}/migrations`` (a server's
live migrations under way: list, show, ``force_complete``, abort), as Nova serves them per
microversion: ``migration_type`` and links from 2.23, ``uuid``, paging and changes-since
from 2.59, changes-before from 2.66, ``user_id``/``project_id`` from 2.80."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response

from stratus.compute import live_migration
from stratus.compute.api.deps import CallerDep, Links, Runtime, Service, URLs, Version
from stratus.compute.api.server_views import action_timestamp
from stratus.compute.server_filters import parse_time
from stratus.compute.server_migrations import IN_PROGRESS_LIVE, LIVE, TYPES, MigrationFilter
from stratus.core.exceptions import BadRequest, NotFound
from stratus.core.web.microversions import APIVersion

router = APIRouter(prefix="/v2.1")

#: Nova's ``osapi_max_limit``.
MAX_LIMIT = 1000


def _flavor_id(value: Any) -> Any:
    """Nova's flavor ids here are integers (its table's); a string id stays a string."""
    text = str(value) if value is not None else None
    return int(text) if text is not None and text.isdigit() else text


def _links(m: Any, urls: Links) -> list[dict[str, str]]:
    return urls.pair(f"servers/{m.instance_uuid}/migrations/{m.id}")


def migration_view(m: Any, urls: Links, version: APIVersion) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": m.id, "source_node": m.source_node, "dest_node": m.dest_node,
        "source_compute": m.source_compute, "dest_compute": m.dest_compute,
        "dest_host": m.dest_host, "status": m.status, "instance_uuid": m.instance_uuid,
        "old_instance_type_id": _flavor_id(m.old_flavor.get("id")),
        "new_instance_type_id": _flavor_id(m.new_flavor.get("id")),
        "created_at": action_timestamp(m.created_at),
        "updated_at": action_timestamp(m.updated_at),
    }
    if version.at_least("2.23"):
        body["migration_type"] = m.migration_type
        if m.migration_type == LIVE and m.status in IN_PROGRESS_LIVE:
            body["links"] = _links(m, urls)
    if version.at_least("2.59"):
        body["uuid"] = m.uuid
    if version.at_least("2.80"):
        body["user_id"], body["project_id"] = m.user_id, m.project_id
    return body


def live_view(m: Any, version: APIVersion) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": m.id, "server_uuid": m.instance_uuid, "status": m.status,
        "source_compute": m.source_compute, "source_node": m.source_node,
        "dest_compute": m.dest_compute, "dest_node": m.dest_node, "dest_host": m.dest_host,
        "memory_total_bytes": m.memory_total, "memory_processed_bytes": m.memory_processed,
        "memory_remaining_bytes": m.memory_remaining, "disk_total_bytes": m.disk_total,
        "disk_processed_bytes": m.disk_processed, "disk_remaining_bytes": m.disk_remaining,
        "created_at": action_timestamp(m.created_at),
        "updated_at": action_timestamp(m.updated_at),
    }
    if version.at_least("2.59"):
        body["uuid"] = m.uuid
    if version.at_least("2.80"):
        body["user_id"], body["project_id"] = m.user_id, m.project_id
    return body


def _filter(request: Request, version: APIVersion) -> MigrationFilter:
    q = request.query_params
    kind = q.get("migration_type") or None
    if kind is not None and kind not in TYPES:
        raise BadRequest(f"Invalid migration_type {kind!r}: one of {', '.join(TYPES)}.")
    since = q.get("changes-since") if version.at_least("2.59") else None
    before = q.get("changes-before") if version.at_least("2.66") else None
    start = parse_time(since) if since else None
    end = parse_time(before) if before else None
    if start is not None and end is not None and start > end:
        raise BadRequest("The value of changes-since must be less than or equal to "
                         "changes-before.")
    newer = version.at_least("2.80")
    return MigrationFilter(
        instance_uuid=q.get("instance_uuid") or None, status=q.get("status") or None,
        host=q.get("host") or None, source_compute=q.get("source_compute") or None,
        migration_type=kind, changes_since=start, changes_before=end,
        user_id=(q.get("user_id") or None) if newer else None,
        project_id=(q.get("project_id") or None) if newer else None)


def _limit(request: Request, version: APIVersion) -> int:
    raw = request.query_params.get("limit") if version.at_least("2.59") else None
    if raw is None:
        return MAX_LIMIT
    try:
        limit = int(raw)
    except ValueError as exc:
        raise BadRequest(f"Invalid input for query parameters limit. Value: {raw}.") from exc
    if limit < 0:
        raise BadRequest("limit must be a positive integer.")
    return min(limit, MAX_LIMIT)


@router.get("/os-migrations")
async def list_migrations(request: Request, svc: Service, caller: CallerDep, urls: URLs,
                          version: Version) -> dict[str, Any]:
    caller.authorize("os_compute_api:os-migrations:index")
    wanted = _filter(request, version)
    limit = _limit(request, version)
    marker = request.query_params.get("marker") if version.at_least("2.59") else None
    rows, more = await svc.migrations.page(wanted, marker=marker, limit=limit)
    body: dict[str, Any] = {"migrations": [migration_view(m, urls, version) for m in rows]}
    if version.at_least("2.59") and more and rows:
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "marker"]
        query.append(("marker", rows[-1].uuid))
        body["migrations_links"] = [{"rel": "next",
                                     "href": f"{urls.url('os-migrations')}?{urlencode(query)}"}]
    return body


def _require(version: APIVersion, minimum: str) -> None:
    if not version.at_least(minimum):
        raise NotFound("The resource could not be found.")


@router.get("/servers/{server_id}/migrations")
async def list_server_migrations(server_id: str, rt: Runtime, caller: CallerDep,
                                 version: Version) -> dict[str, Any]:
    _require(version, "2.23")
    rows = await live_migration.in_progress(rt, caller, server_id)
    return {"migrations": [live_view(m, version) for m in rows]}


@router.get("/servers/{server_id}/migrations/{migration_id}")
async def show_server_migration(server_id: str, migration_id: str, rt: Runtime,
                                caller: CallerDep, version: Version) -> dict[str, Any]:
    _require(version, "2.23")
    migration = await live_migration.show_in_progress(rt, caller, server_id, migration_id)
    return {"migration": live_view(migration, version)}


@router.post("/servers/{server_id}/migrations/{migration_id}/action", status_code=202)
async def server_migration_action(server_id: str, migration_id: str, body: dict[str, Any],
                                  rt: Runtime, caller: CallerDep,
                                  version: Version) -> Response:
    _require(version, "2.22")
    if list(body) != ["force_complete"] or body["force_complete"] is not None:
        raise BadRequest("The only migration action is {\"force_complete\": null}.")
    await live_migration.force_complete(rt, caller, server_id, migration_id)
    return Response(status_code=202)


@router.delete("/servers/{server_id}/migrations/{migration_id}", status_code=202)
async def abort_server_migration(server_id: str, migration_id: str, rt: Runtime,
                                 caller: CallerDep, version: Version) -> Response:
    _require(version, "2.24")
    await live_migration.abort(rt, caller, server_id, migration_id, version)
    return Response(status_code=202)
