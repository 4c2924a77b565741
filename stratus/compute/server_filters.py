"""The filters and sort keys of ``GET /servers`` and ``/servers/detail``.

As the api-ref has them: everyone may filter by name (a regular expression), status,
image, flavor, reservation, ip/ip6 (regular expressions over the addresses), changes-since,
changes-before (2.66), tags (2.26), locked (2.73); from 2.83 also by availability zone,
key name, config drive, user, vm/task/power state and progress, which before 2.83 are the
admins'. Admins alone filter by host, node, project and ``deleted``. A filter a caller may
not use is ignored, as Nova ignores it. Several ``sort_key``/``sort_dir`` pairs may be
given; non-admins cannot sort by host or node (those keys are dropped).

The query arrives parsed (``core.web.listing.NOVA``: a ``ListRequest``). ``apply_sql`` puts
the filters the database can apply into the query; the rest (regular expressions, status,
tags) are ``python_filter``'s, applied to the pages the database returns.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

from sqlalchemy import Select

from stratus.compute import states
from stratus.compute.models import Instance
from stratus.core.exceptions import BadRequest
from stratus.core.web import params
from stratus.core.web.listing import ListRequest
from stratus.core.web.microversions import APIVersion

#: API sort key → column.
SORT_COLUMNS: dict[str, Any] = {
    "access_ip_v4": Instance.access_ip_v4, "access_ip_v6": Instance.access_ip_v6,
    "availability_zone": Instance.availability_zone, "config_drive": Instance.config_drive,
    "created_at": Instance.created_at, "display_description": Instance.display_description,
    "display_name": Instance.display_name, "host": Instance.host,
    "hostname": Instance.hostname, "image_ref": Instance.image_ref,
    "instance_type_id": Instance.flavor_id, "key_name": Instance.key_name,
    "launch_index": Instance.launch_index, "launched_at": Instance.launched_at,
    "locked": Instance.locked, "node": Instance.node, "power_state": Instance.power_state,
    "progress": Instance.progress, "project_id": Instance.project_id,
    "task_state": Instance.task_state, "terminated_at": Instance.terminated_at,
    "updated_at": Instance.updated_at, "user_id": Instance.user_id, "uuid": Instance.uuid,
    "vm_state": Instance.vm_state,
}
ADMIN_SORT_KEYS = ("host", "node")

#: Equality filters anyone may use from 2.83 (admins at any version): param → column.
_EXTENDED: dict[str, Any] = {
    "availability_zone": Instance.availability_zone, "key_name": Instance.key_name,
    "user_id": Instance.user_id, "vm_state": Instance.vm_state,
    "task_state": Instance.task_state, "config_drive": Instance.config_drive,
}
_EXTENDED_INT: dict[str, Any] = {"power_state": Instance.power_state,
                                 "progress": Instance.progress}
_ADMIN: dict[str, Any] = {"node": Instance.node, "hostname": Instance.hostname,
                          "access_ip_v4": Instance.access_ip_v4,
                          "access_ip_v6": Instance.access_ip_v6}


def parse_time(value: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadRequest(f"Invalid timestamp {value!r}.") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _regex(name: str, value: str) -> re.Pattern[str]:
    try:
        return re.compile(value)
    except re.error as exc:
        raise BadRequest(f"Invalid {name} filter: {exc}.") from exc


def apply_sql(query: Select[Any], req: ListRequest, version: APIVersion,
              admin: bool) -> Select[Any]:
    """The filters the database applies: time window, deleted, equality filters."""
    get = req.filter
    since = get("changes-since") or get("changes_since")
    before = get("changes-before") if version.at_least("2.66") else None
    changed = Instance.updated_at.is_not(None)
    if since:
        start = parse_time(since)
        query = query.where((Instance.updated_at >= start) |
                            (~changed & (Instance.created_at >= start)))
    if before:
        end = parse_time(before)
        if since and parse_time(since) > end:
            raise BadRequest("The value of changes-since must be less than or equal to "
                             "changes-before.")
        query = query.where((Instance.updated_at <= end) |
                            (~changed & (Instance.created_at <= end)))
    deleted = get("deleted")
    if admin and deleted is not None and params.NOVA.boolean("deleted", deleted):
        query = query.where(Instance.deleted_at.is_not(None))
    elif not (since or before):
        # Deleted servers show only in a changes-since/before window, or to admins asking.
        query = query.where(Instance.deleted_at.is_(None))
    for key, column in (("image", Instance.image_ref), ("flavor", Instance.flavor_id),
                        ("reservation_id", Instance.reservation_id)):
        if value := get(key):
            query = query.where(column == value)
    if version.at_least("2.73") and (locked := get("locked")) is not None:
        query = query.where(Instance.locked == params.NOVA.boolean("locked", locked))
    if admin or version.at_least("2.83"):
        for key, column in _EXTENDED.items():
            if (value := get(key)) is not None:
                query = query.where(column == value)
        for key, column in _EXTENDED_INT.items():
            if (value := get(key)) is not None:
                if not value.isdigit():
                    raise BadRequest(f"Invalid value {value!r} for the '{key}' "
                                     "filter: an integer.")
                query = query.where(column == int(value))
    if admin:
        if host := get("host"):
            query = query.where(Instance.host == host)
        for key, column in _ADMIN.items():
            if value := get(key):
                query = query.where(column == value)
    return query


def narrow_by_status(query: Select[Any], req: ListRequest) -> Select[Any]:
    """Only the rows a ``status`` filter may keep: those whose vm_state can show it
    (``python_filter`` still decides each row by its task state too). Not part of
    ``apply_sql``: a page's marker is looked up without it, as the server it names may
    have changed status since the page before."""
    if status := req.filter("status"):
        showing = states.vm_states_showing(status.upper())
        if showing is not None:
            query = query.where(Instance.vm_state.in_(sorted(showing)))
    return query


def _addresses(instance: Instance, version: int) -> list[str]:
    found = []
    for vif in instance.network_info or []:
        for ip in vif.get("ips") or []:
            if int(ip.get("version", 4)) == version:
                found.append(str(ip.get("address", "")))
    return found


def _tag_list(value: str) -> set[str]:
    return {t.strip() for t in value.split(",") if t.strip()}


def python_filter(req: ListRequest, version: APIVersion,
                  ) -> Callable[[list[Instance]], list[Instance]] | None:
    """The filters done here rather than in SQL (regular expressions, status, tags) as one
    function over a page of rows; None when the request has none of them. Its arguments
    are checked now (a bad regular expression is a 400 before any row is read)."""
    get = req.filter
    checks: list[Callable[[Instance], bool]] = []
    if name := get("name"):
        pattern = _regex("name", name)
        checks.append(lambda i: bool(pattern.search(i.display_name)))
    if status := get("status"):
        wanted = status.upper()
        checks.append(lambda i: states.status(i.vm_state, i.task_state) == wanted)
    for key, ip_version in (("ip", 4), ("ip6", 6)):
        if value := get(key):
            checks.append(_address_check(_regex(key, value), ip_version))
    if version.at_least("2.26"):
        if tags := get("tags"):
            wanted_all = _tag_list(tags)
            checks.append(lambda i: wanted_all <= set(i.tags or []))
        if tags_any := get("tags-any"):
            wanted_any = _tag_list(tags_any)
            checks.append(lambda i: bool(wanted_any & set(i.tags or [])))
        if not_tags := get("not-tags"):
            excluded_all = _tag_list(not_tags)
            checks.append(lambda i: not excluded_all <= set(i.tags or []))
        if not_tags_any := get("not-tags-any"):
            excluded_any = _tag_list(not_tags_any)
            checks.append(lambda i: not excluded_any & set(i.tags or []))
    if not checks:
        return None
    return lambda rows: [i for i in rows if all(check(i) for check in checks)]


def _address_check(pattern: re.Pattern[str], ip_version: int) -> Callable[[Instance], bool]:
    return lambda i: any(pattern.search(a) for a in _addresses(i, ip_version))
