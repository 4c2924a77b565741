"""The filters and sort keys of ``GET /servers`` and ``/servers/detail``.

As the api-ref has them: everyone may filter by name (a regular expression), status,
image, flavor, reservation, ip/ip6 (regular expressions over the addresses), changes-since,
changes-before (2.66), tags (2.26), locked (2.73); from 2.83 also by availability zone,
key name, config drive, user, vm/task/power state and progress, which before 2.83 are the
admins'. Admins alone filter by host, node, project and ``deleted``. A filter a caller may
not use is ignored, as Nova ignores it. Several ``sort_key``/``sort_dir`` pairs may be
given; non-admins cannot sort by host or node (those keys are dropped).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from sqlalchemy import Select
from starlette.datastructures import QueryParams

from stratus.compute import states
from stratus.compute.models import Instance
from stratus.core.exceptions import BadRequest
from stratus.core.web.microversions import APIVersion

SORT_KEYS: dict[str, Any] = {
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
_TRUE = ("true", "1", "yes", "on", "t", "y")
_FALSE = ("false", "0", "no", "off", "f", "n")


def parse_time(value: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadRequest(f"Invalid timestamp {value!r}.") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _bool(name: str, value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise BadRequest(f"Invalid value {value!r} for the '{name}' filter: true or false.")


def _regex(name: str, value: str) -> re.Pattern[str]:
    try:
        return re.compile(value)
    except re.error as exc:
        raise BadRequest(f"Invalid {name} filter: {exc}.") from exc


def apply_sql(query: Select[Any], params: QueryParams, version: APIVersion,
              admin: bool) -> Select[Any]:
    """The filters the database applies: time window, deleted, equality filters."""
    since = params.get("changes-since") or params.get("changes_since")
    before = params.get("changes-before") if version.at_least("2.66") else None
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
    deleted = params.get("deleted")
    if admin and deleted is not None and _bool("deleted", deleted):
        query = query.where(Instance.deleted_at.is_not(None))
    elif not (since or before):
        # Deleted servers show only in a changes-since/before window, or to admins asking.
        query = query.where(Instance.deleted_at.is_(None))
    for key, column in (("image", Instance.image_ref), ("flavor", Instance.flavor_id),
                        ("reservation_id", Instance.reservation_id)):
        if params.get(key):
            query = query.where(column == params[key])
    if version.at_least("2.73") and params.get("locked") is not None:
        query = query.where(Instance.locked == _bool("locked", params["locked"]))
    if admin or version.at_least("2.83"):
        for key, column in _EXTENDED.items():
            if params.get(key) is not None:
                query = query.where(column == params[key])
        for key, column in _EXTENDED_INT.items():
            if params.get(key) is not None:
                if not params[key].isdigit():
                    raise BadRequest(f"Invalid value {params[key]!r} for the '{key}' "
                                     "filter: an integer.")
                query = query.where(column == int(params[key]))
    if admin:
        if params.get("host"):
            query = query.where(Instance.host == params["host"])
        for key, column in _ADMIN.items():
            if params.get(key):
                query = query.where(column == params[key])
    return query


def sort_order(params: QueryParams, admin: bool) -> list[Any]:
    """ORDER BY clauses for the ``sort_key``/``sort_dir`` pairs (default created_at desc)."""
    keys = params.getlist("sort_key") or ["created_at"]
    dirs = params.getlist("sort_dir")
    if len(dirs) > len(keys):
        raise BadRequest("There are more sort_dir than sort_key values.")
    order = []
    for index, key in enumerate(keys):
        direction = dirs[index] if index < len(dirs) else (dirs[0] if dirs else "desc")
        if direction not in ("asc", "desc"):
            raise BadRequest(f"Invalid sort_dir {direction!r}.")
        if key not in SORT_KEYS:
            raise BadRequest(f"Invalid sort_key {key!r}.")
        if key in ADMIN_SORT_KEYS and not admin:
            continue
        column = SORT_KEYS[key]
        order.append(column.desc() if direction == "desc" else column.asc())
    order.append(Instance.uuid.desc())
    return order


def _addresses(instance: Instance, version: int) -> list[str]:
    found = []
    for vif in instance.network_info or []:
        for ip in vif.get("ips") or []:
            if int(ip.get("version", 4)) == version:
                found.append(str(ip.get("address", "")))
    return found


def _tag_list(value: str) -> set[str]:
    return {t.strip() for t in value.split(",") if t.strip()}


def apply_python(instances: list[Instance], params: QueryParams,
                 version: APIVersion) -> list[Instance]:
    """The filters done here rather than in SQL: regular expressions, status, tags."""
    if params.get("name"):
        pattern = _regex("name", params["name"])
        instances = [i for i in instances if pattern.search(i.display_name)]
    if params.get("status"):
        wanted = params["status"].upper()
        instances = [i for i in instances if states.status(i.vm_state, i.task_state) == wanted]
    for key, ip_version in (("ip", 4), ("ip6", 6)):
        if params.get(key):
            pattern = _regex(key, params[key])
            instances = [i for i in instances
                         if any(pattern.search(a) for a in _addresses(i, ip_version))]
    if version.at_least("2.26"):
        if params.get("tags"):
            wanted_all = _tag_list(params["tags"])
            instances = [i for i in instances if wanted_all <= set(i.tags or [])]
        if params.get("tags-any"):
            wanted_any = _tag_list(params["tags-any"])
            instances = [i for i in instances if wanted_any & set(i.tags or [])]
        if params.get("not-tags"):
            excluded_all = _tag_list(params["not-tags"])
            instances = [i for i in instances if not excluded_all <= set(i.tags or [])]
        if params.get("not-tags-any"):
            excluded_any = _tag_list(params["not-tags-any"])
            instances = [i for i in instances if not excluded_any & set(i.tags or [])]
    return instances
