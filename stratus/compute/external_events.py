"""Events other services report about servers (``os-server-external-events``), passed on to
the servers' compute hosts.

Each event names a server and gets a code: 200 accepted (and handed to the server's host),
404 no such server, 422 the server has no host yet. The events of one server go to its host
in one cast on the host's events topic (``ComputeAgentAPI.external_instance_event`` says
why), after the lookup's transaction ended; the servers' casts are sent at once. A cast
returns once the broker holds it, so a dead or busy host never holds the answer (its events
wait in its queue). None accepted is a 404; a cast the broker did not take a 503, so the
sender tries again rather than believe it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from stratus.compute.objects import ExternalEvent
from stratus.compute.servers import Servers
from stratus.compute.service import ComputeRuntime
from stratus.core.bus import MessagingError
from stratus.core.context import RequestContext
from stratus.core.exceptions import NotFound, ServiceUnavailable


@dataclass(frozen=True)
class ServerEvent:
    """One reported event and the server it is about."""

    server_uuid: str
    event: ExternalEvent


async def deliver(rt: ComputeRuntime, context: RequestContext,
                  reported: list[ServerEvent]) -> list[int]:
    """Pass the events on to their servers' hosts; each event's code, in order."""
    async with rt.service() as svc:
        hosts = await Servers.of(svc).hosts_of({r.server_uuid for r in reported})
    codes: list[int] = []
    accepted: dict[str, list[ExternalEvent]] = {}
    for r in reported:
        if r.server_uuid not in hosts:
            codes.append(404)
        elif hosts[r.server_uuid] is None:
            codes.append(422)
        else:
            codes.append(200)
            accepted.setdefault(r.server_uuid, []).append(r.event)
    async def hand_over(uuid: str, events: list[ExternalEvent]) -> None:
        host = hosts[uuid]
        assert host is not None
        try:
            await rt.clients.agents.external_instance_event(context, host, uuid, events)
        except MessagingError as exc:
            raise ServiceUnavailable(f"Could not queue the events for compute host {host}: "
                                     f"{exc}") from exc

    # Each hand-over is a cast the broker confirms: all at once, so a batch waits for one
    # confirmation round, not for one per server.
    results = await asyncio.gather(*(hand_over(u, e) for u, e in accepted.items()),
                                   return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    if not accepted:
        raise NotFound("No instances found for any event.")
    return codes
