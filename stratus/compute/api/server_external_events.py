"""``/os-server-external-events``: other services report events about servers.

The network service says a port was plugged, unplugged or changed; each event names a
server. Per event the answer carries a ``code``: 200 accepted (and cast to the server's
compute host), 404 no such server, 422 the server has no host yet. The whole answer is 200
when every event was accepted, 207 when some were, and a 404 error when none was
(``stratus.compute.external_events`` delivers them).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import Field

from stratus.compute import external_events
from stratus.compute.api.deps import CallerDep, Runtime, Version
from stratus.compute.api.schemas import _Strict
from stratus.compute.external_events import ServerEvent
from stratus.compute.objects import ExternalEvent
from stratus.core.exceptions import BadRequest

router = APIRouter(prefix="/v2.1/os-server-external-events")

#: Event names and the microversion each needs.
EVENT_NAMES = {"network-changed": "2.1", "network-vif-plugged": "2.1",
               "network-vif-unplugged": "2.1", "network-vif-deleted": "2.1",
               "volume-extended": "2.51", "power-update": "2.76",
               "accelerator-request-bound": "2.82", "volume-reimaged": "2.93"}


class EventIn(_Strict):
    name: str
    server_uuid: str = Field(min_length=1, max_length=36)
    status: str = Field(default="completed", pattern="^(failed|completed|in-progress)$")
    tag: str | None = Field(default=None, max_length=255)


class EventsBody(_Strict):
    events: list[EventIn] = Field(min_length=1)


def _answer(event: EventIn, code: int) -> dict[str, Any]:
    answer: dict[str, Any] = {"name": event.name, "server_uuid": event.server_uuid,
                              "status": event.status}
    if event.tag is not None:
        answer["tag"] = event.tag
    return answer | {"code": code}


@router.post("")
async def create(body: EventsBody, rt: Runtime, caller: CallerDep,
                 version: Version) -> JSONResponse:
    caller.authorize("os_compute_api:os-server-external-events:create", {})
    for event in body.events:
        minimum = EVENT_NAMES.get(event.name)
        if minimum is None or not version.at_least(minimum):
            raise BadRequest(f"Invalid input for field 'name': {event.name!r} is not an "
                             "event name this microversion knows.")
    codes = await external_events.deliver(rt, caller.context, [
        ServerEvent(e.server_uuid, ExternalEvent(name=e.name, tag=e.tag, status=e.status))
        for e in body.events])
    status = 207 if any(code != 200 for code in codes) else 200
    return JSONResponse({"events": [_answer(e, code) for e, code in zip(body.events, codes,
                                                                        strict=True)]},
                        status_code=status)
