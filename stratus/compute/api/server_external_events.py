"""``/os-server-external-events``: other services report events about servers.

The network service says a port was plugged, unplugged or changed; each event names a
server. Per event the answer carries a ``code``: 200 accepted (and cast to the server's
compute host), 404 no such server, 422 the server has no host yet. The whole answer is 200
when every event was accepted, 207 when some were, and a 404 error when none was.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import Field

from stratus.compute.api.deps import Authorize, Context, Runtime, ServersDep, Version
from stratus.compute.api.schemas import _Strict
from stratus.compute.objects import ExternalEvent
from stratus.core.bus import MessagingError
from stratus.core.exceptions import BadRequest, NotFound, ServiceUnavailable

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


@router.post("")
async def create(body: EventsBody, rt: Runtime, servers: ServersDep, context: Context,
                 authorize: Authorize, version: Version) -> JSONResponse:
    authorize("os_compute_api:os-server-external-events:create", {})
    for event in body.events:
        minimum = EVENT_NAMES.get(event.name)
        if minimum is None or not version.at_least(minimum):
            raise BadRequest(f"Invalid input for field 'name': {event.name!r} is not an "
                             "event name this microversion knows.")
    hosts = await servers.hosts_of({e.server_uuid for e in body.events})
    answers: list[dict[str, Any]] = []
    accepted: dict[str, list[ExternalEvent]] = {}
    for event in body.events:
        answer: dict[str, Any] = {"name": event.name, "server_uuid": event.server_uuid,
                                  "status": event.status}
        if event.tag is not None:
            answer["tag"] = event.tag
        if event.server_uuid not in hosts:
            answer["code"] = 404
        elif hosts[event.server_uuid] is None:
            answer["code"] = 422
        else:
            answer["code"] = 200
            accepted.setdefault(event.server_uuid, []).append(
                ExternalEvent(name=event.name, tag=event.tag, status=event.status))
        answers.append(answer)
    agents = rt.clients.agents
    for uuid, events in accepted.items():
        host = hosts[uuid]
        assert host is not None
        try:
            await agents.external_instance_event(context, host, uuid, events)
        except MessagingError as exc:
            # Undelivered: say so, so the sender can try again rather than believe it.
            raise ServiceUnavailable(f"Could not pass the events on to compute host {host}: "
                                     f"{exc}") from exc
    if not accepted:
        raise NotFound("No instances found for any event.")
    status = 207 if len(answers) > sum(len(e) for e in accepted.values()) else 200
    return JSONResponse({"events": answers}, status_code=status)
