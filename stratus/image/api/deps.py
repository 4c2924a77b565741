"""Request-scoped dependencies of the Image API's routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request

from stratus.core.policy import Caller
from stratus.core.web.app import api_root
from stratus.core.web.deps import caller_dependency
from stratus.image.service import ImageRuntime, ImageService


def runtime(request: Request) -> ImageRuntime:
    rt: ImageRuntime = request.app.state.image
    return rt


async def service(request: Request) -> AsyncIterator[ImageService]:
    """One transaction per request, committed before the response is sent."""
    async with runtime(request).service() as svc:
        yield svc


async def _runtime(request: Request) -> ImageRuntime:
    return runtime(request)


# Every dependency here is ``async``: FastAPI runs a plain ``def`` dependency in a worker
# thread, a hop per dependency per request.
Runtime = Annotated[ImageRuntime, Depends(_runtime)]
CallerDep = Annotated[Caller, Depends(caller_dependency(lambda r: runtime(r).enforcer))]
Service = Annotated[ImageService, Depends(service, scope="function")]


async def base_url(request: Request) -> str:
    """This API's root as the client reached it, e.g. ``http://h:8080/image``."""
    return api_root(request)


BaseURL = Annotated[str, Depends(base_url)]
