"""What the instance detail page adds to the server's summary: its attached volumes and,
for admins, its launch trace.

Contracts:

* Attached volumes: the server body names them (``os-extended-volumes:volumes_attached``);
  one ``volumes/detail`` call in the page's round adds each one's name, size, status and
  device. Without the block storage service in the catalog, or when that call fails, the
  ids alone are listed (the failure a banner only when the server has volumes).
* Launch trace: the step table of ``GET /os-stratus-trace/{server_id}`` (compute's admin
  route), shown as the seeds' table. It is asked only for a session with the admin role;
  a member's page has no trace section and no error. A refusal (403) shows nothing either;
  no spans kept (404) says so, with the API's words; a failed service is a note in the
  section, not a banner over the page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stratus.dashboard.client import ApiError
from stratus.dashboard.forms import items
from stratus.dashboard.web import Page

VOLUMES_ATTACHED = "os-extended-volumes:volumes_attached"


@dataclass
class LaunchTrace:
    """The trace section: its rows (the route's ``steps``), or a note why there are none."""

    steps: list[dict[str, Any]] = field(default_factory=list)
    note: str | None = None
    seed_steps_seen: int = 0


async def volume_list(page: Page) -> Any:
    """The project's volumes (with their attachments), or None without block storage."""
    if not page.api.offers("block-storage"):
        return None
    return await page.api.get("block-storage", "/volumes/detail")


def attached_volumes(server: dict[str, Any], volumes: Any) -> list[dict[str, Any]]:
    """One entry per volume the server has: id, name, size, status, device. (Not whether it
    goes with the server: the compute API says false for every volume.)"""
    known = {v["id"]: v for v in items(volumes, "volumes") if "id" in v}
    rows = []
    for attached in server.get(VOLUMES_ATTACHED) or []:
        volume = known.get(attached.get("id", ""), {})
        device = next((a.get("device") for a in volume.get("attachments") or []
                       if a.get("server_id") == server["id"]), None)
        rows.append({"id": attached.get("id", ""),
                     "name": volume.get("name") or attached.get("id", ""),
                     "size": volume.get("size"), "status": volume.get("status"),
                     "device": device})
    return rows


async def launch_trace(page: Page, server_id: str) -> LaunchTrace | None:
    """The trace section of an admin's page; None for anyone else (nothing shown)."""
    if "admin" not in page.session.roles:
        return None
    try:
        body = await page.api.get("compute", f"/os-stratus-trace/{server_id}")
    except ApiError as exc:
        if exc.status == 403:
            return None
        if exc.status == 404:
            return LaunchTrace(note=exc.message)
        return LaunchTrace(note=exc.banner)
    trace = body.get("trace") or {}
    return LaunchTrace(steps=list(trace.get("steps") or []),
                       seed_steps_seen=len(trace.get("seed_steps_seen") or []))
