"""Request-scoped dependencies of the Image API's routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request

from stratus.core.auth import require_context
from stratus.core.context import RequestContext
from stratus.core.web.app import api_root
from stratus.image.caller import Caller
from stratus.image.service import ImageRuntime, ImageService


def runtime(request: Request) -> ImageRuntime:
    rt: ImageRuntime = request.app.state.image
    return rt


def caller(request: Request,
           context: Annotated[RequestContext, Depends(require_context)]) -> Caller:
    return runtime(request).caller(context)


async def service(request: Request) -> AsyncIterator[ImageService]:
    """One transaction per request, committed before the response is sent."""
    async with runtime(request).service() as svc:
        yield svc


Runtime = Annotated[ImageRuntime, Depends(runtime)]
CallerDep = Annotated[Caller, Depends(caller)]
Service = Annotated[ImageService, Depends(service, scope="function")]


def base_url(request: Request) -> str:
    """This API's root as the client reached it, e.g. ``http://h:8080/image``."""
    return api_root(request)


BaseURL = Annotated[str, Depends(base_url)]
