"""What the pages show of a server: one row's values from the server body alone.

The server body at ``COMPUTE_VERSION`` embeds its flavor and carries its addresses, so a row
needs no other call but the image names (one list per page).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

#: Statuses a server passes through on its way to a stable one: their rows poll.
TRANSITIONAL = frozenset({"BUILD", "REBOOT", "HARD_REBOOT", "RESIZE", "REVERT_RESIZE",
                          "MIGRATING", "REBUILD", "PASSWORD"})

#: The actions a row or the detail page offers: name → (label, the API call's body; None:
#: DELETE), and the statuses it is offered in.
ACTIONS: dict[str, tuple[str, dict[str, Any] | None, frozenset[str]]] = {
    "start": ("Start", {"os-start": None}, frozenset({"SHUTOFF"})),
    "stop": ("Stop", {"os-stop": None}, frozenset({"ACTIVE", "ERROR"})),
    "reboot": ("Reboot", {"reboot": {"type": "SOFT"}}, frozenset({"ACTIVE"})),
    "delete": ("Delete", None, frozenset({"ACTIVE", "SHUTOFF", "ERROR", "BUILD", "PAUSED",
                                          "SUSPENDED", "SHELVED", "SHELVED_OFFLOADED",
                                          "RESCUE", "VERIFY_RESIZE"})),
}


def is_transitional(server: dict[str, Any]) -> bool:
    return (server.get("status") in TRANSITIONAL
            or bool(server.get("OS-EXT-STS:task_state")))


@dataclass
class Row:
    """One server as a table row or the detail page show it."""

    id: str
    name: str
    status: str
    task: str | None
    image: str
    flavor: str
    flavor_sizes: str
    addresses: list[tuple[str, list[str]]]
    transitional: bool
    actions: list[tuple[str, str]] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)


def row_of(server: dict[str, Any], image_names: dict[str, str]) -> Row:
    flavor = server.get("flavor") or {}
    image = server.get("image") or {}
    image_id = image.get("id", "") if isinstance(image, dict) else ""
    status = str(server.get("status", ""))
    task = server.get("OS-EXT-STS:task_state")
    transitional = is_transitional(server)
    sizes = ""
    if flavor.get("vcpus") is not None:
        sizes = f"{flavor['vcpus']} vCPU, {flavor.get('ram')} MiB RAM, {flavor.get('disk')} GB"
    addresses = [(network, [str(a.get("addr")) for a in entries])
                 for network, entries in sorted((server.get("addresses") or {}).items())]
    actions = [] if transitional else [
        (name, label) for name, (label, _, statuses) in ACTIONS.items() if status in statuses]
    return Row(id=server["id"], name=server.get("name") or server["id"], status=status,
               task=task, image=image_names.get(image_id, image_id) if image_id
               else "(volume)", flavor=flavor.get("original_name") or flavor.get("id", ""),
               flavor_sizes=sizes, addresses=addresses, transitional=transitional,
               actions=actions, raw=server)


def image_names(body: Any) -> dict[str, str]:
    """id → name from an image list (an empty map when the list failed)."""
    if not isinstance(body, dict):
        return {}
    return {image["id"]: image.get("name") or image["id"] for image in body.get("images", [])}


def since_of(response: httpx.Response) -> str:
    """The ``changes-since`` of the next poll: the API's clock at this answer (its ``Date``,
    else ours), a second early, so no change between two polls is missed (a change seen
    twice is harmless)."""
    date = response.headers.get("date")
    try:
        when = parsedate_to_datetime(date) if date else dt.datetime.now(dt.UTC)
    except (TypeError, ValueError):
        when = dt.datetime.now(dt.UTC)
    return (when - dt.timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
