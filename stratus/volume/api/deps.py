"""Request-scoped dependencies of block storage's routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request

from stratus.core.auth import require_context
from stratus.core.context import RequestContext
from stratus.core.exceptions import BadRequest
from stratus.core.policy import Caller
from stratus.core.web.app import api_root
from stratus.core.web.deps import duplicates_as_conflict
from stratus.core.web.microversions import APIVersion, api_version
from stratus.volume.service import VolumeRuntime, VolumeService


def runtime(request: Request) -> VolumeRuntime:
    rt: VolumeRuntime = request.app.state.volume
    return rt


async def service(request: Request) -> AsyncIterator[VolumeService]:
    """One transaction per request, committed before the response is sent."""
    async with duplicates_as_conflict("The request conflicts with a concurrent change."), \
            runtime(request).service() as svc:
        yield svc


async def project_context(request: Request, project_id: str) -> RequestContext:
    """The caller, who must be scoped to the project the URL names (as Cinder checks);
    an admin (a service acting for a user) may name any project."""
    context = await require_context(request)
    if context.project_id != project_id and not context.is_admin:
        raise BadRequest("Malformed request url")
    return context


Service = Annotated[VolumeService, Depends(service, scope="function")]
Context = Annotated[RequestContext, Depends(project_context)]
Version = Annotated[APIVersion, Depends(api_version)]


async def caller(request: Request, context: Context) -> Caller:
    """Core's ``Caller`` for the project-scoped caller (``project_context``)."""
    return Caller(context, runtime(request).enforcer)


CallerDep = Annotated[Caller, Depends(caller)]


class Links:
    """Cinder's link pair: ``self`` under ``/v3/<project>`` and ``bookmark`` without v3."""

    def __init__(self, request: Request, project_id: str) -> None:
        self.root = api_root(request)
        self.project_id = project_id

    def pair(self, path: str) -> list[dict[str, str]]:
        return [{"rel": "self", "href": f"{self.root}/v3/{self.project_id}/{path}"},
                {"rel": "bookmark", "href": f"{self.root}/{self.project_id}/{path}"}]

    def url(self, path: str) -> str:
        return f"{self.root}/v3/{self.project_id}/{path}"


async def links(request: Request, project_id: str) -> Links:
    return Links(request, project_id)


# Every dependency here is ``async``: FastAPI runs a plain ``def`` dependency in a worker
# thread, a hop per dependency per request.
URLs = Annotated[Links, Depends(links)]

