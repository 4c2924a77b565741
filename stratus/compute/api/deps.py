"""Request-scoped dependencies of compute's routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request

from stratus.compute.servers import Servers
from stratus.compute.service import ComputeRuntime, ComputeService
from stratus.core.auth import require_context
from stratus.core.context import RequestContext
from stratus.core.policy import Caller
from stratus.core.web.app import api_root
from stratus.core.web.deps import caller_dependency, duplicates_as_conflict
from stratus.core.web.microversions import APIVersion, api_version


def runtime(request: Request) -> ComputeRuntime:
    rt: ComputeRuntime = request.app.state.compute
    return rt


async def _runtime(request: Request) -> ComputeRuntime:
    return runtime(request)


# Every dependency here is ``async``: FastAPI runs a plain ``def`` dependency in a worker
# thread, a hop per dependency per request that costs more than the work it does.
Runtime = Annotated[ComputeRuntime, Depends(_runtime)]


async def service(request: Request) -> AsyncIterator[ComputeService]:
    """One transaction per request, committed before the response is sent."""
    async with duplicates_as_conflict("The request conflicts with a concurrent change."), \
            runtime(request).service() as svc:
        yield svc


Service = Annotated[ComputeService, Depends(service, scope="function")]


async def read_service(request: Request) -> AsyncIterator[ComputeService]:
    """One reading transaction per request: on SQLite it does not queue with the writers
    (list polls during a burst of boots would wait behind every boot's writes)."""
    async with runtime(request).service(write=False) as svc:
        yield svc


#: For routes that only read.
ReadService = Annotated[ComputeService, Depends(read_service, scope="function")]


async def servers(svc: Service) -> Servers:
    """The API's reads and edits of servers, in the request's transaction."""
    return Servers.of(svc)


async def read_servers(svc: ReadService) -> Servers:
    """The API's reads of servers, in the request's reading transaction."""
    return Servers.of(svc)


ServersDep = Annotated[Servers, Depends(servers)]
ReadServersDep = Annotated[Servers, Depends(read_servers)]
Context = Annotated[RequestContext, Depends(require_context)]
Version = Annotated[APIVersion, Depends(api_version)]


#: The request's one ``Caller`` (core's), checked against compute's policy.
CallerDep = Annotated[Caller, Depends(caller_dependency(lambda r: runtime(r).enforcer))]


class Links:
    """Nova's two link forms: ``self`` under ``/v2.1`` and ``bookmark`` without it."""

    def __init__(self, request: Request) -> None:
        self.root = api_root(request)

    def pair(self, path: str) -> list[dict[str, str]]:
        return [{"rel": "self", "href": f"{self.root}/v2.1/{path}"},
                {"rel": "bookmark", "href": f"{self.root}/{path}"}]

    def url(self, path: str) -> str:
        return f"{self.root}/v2.1/{path}"


async def links(request: Request) -> Links:
    return Links(request)


URLs = Annotated[Links, Depends(links)]
