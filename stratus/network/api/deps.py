"""Request-scoped pieces of the Network API's routes: the caller, the transaction, bodies.

Routes say whether they write: ``Service`` opens a reading transaction, ``WriteService`` a
writing one (on SQLite it waits for the process's one writer lock)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, Request

from stratus.core.auth import require_context
from stratus.core.context import RequestContext
from stratus.core.web.app import api_root
from stratus.core.web.deps import duplicates_as_conflict
from stratus.network.api.schemas import Model, parse
from stratus.network.caller import Caller
from stratus.network.errors import InvalidInput
from stratus.network.service import NetworkRuntime, NetworkService


def runtime(request: Request) -> NetworkRuntime:
    rt: NetworkRuntime = request.app.state.network
    return rt


def caller(request: Request,
           context: Annotated[RequestContext, Depends(require_context)]) -> Caller:
    return runtime(request).caller(context)


@asynccontextmanager
async def _transaction(request: Request, write: bool) -> AsyncIterator[NetworkService]:
    async with duplicates_as_conflict("The request conflicts with a concurrent change."), \
            runtime(request).service(write=write) as svc:
        yield svc


async def read_service(request: Request,
                       _: Annotated[Caller, Depends(caller)]) -> AsyncIterator[NetworkService]:
    """One reading transaction per request: it does not take the (SQLite) writers' lock."""
    async with _transaction(request, write=False) as svc:
        yield svc


async def write_service(request: Request,
                        _: Annotated[Caller, Depends(caller)]) -> AsyncIterator[NetworkService]:
    """One writing transaction per request, committed before the response is sent. The
    token is checked and the body read before the transaction starts, so neither happens
    while holding the writers' lock."""
    await request.body()  # cached by the request for the route to parse
    async with _transaction(request, write=True) as svc:
        yield svc


#: For routes that only read.
Service = Annotated[NetworkService, Depends(read_service, scope="function")]
#: For routes that write, and for reads that may write (security group reads make the
#: project's default group).
WriteService = Annotated[NetworkService, Depends(write_service, scope="function")]
CallerDep = Annotated[Caller, Depends(caller)]
Runtime = Annotated[NetworkRuntime, Depends(runtime)]


def collection_url(request: Request) -> str:
    return f"{api_root(request)}{request.url.path[len(request.scope.get('root_path', '')):]}"


# Bodies -----------------------------------------------------------------------------------

async def json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw or b"null")
    except ValueError as exc:
        raise InvalidInput("Malformed request body: the body is not valid JSON.") from exc


async def single_or_bulk(request: Request, singular: str, plural: str,
                         model: type[Model]) -> tuple[list[Model], bool]:
    """The items of a create body, ``{singular: {...}}`` or ``{plural: [...]}`` (bulk),
    each checked against ``model``."""
    body = await json_body(request)
    if isinstance(body, dict) and set(body) == {singular}:
        return [parse(model, body[singular], singular)], False
    if isinstance(body, dict) and set(body) == {plural} and isinstance(body[plural], list):
        if not body[plural]:
            raise InvalidInput(f"Invalid input: '{plural}' is empty.")
        return [parse(model, item, singular) for item in body[plural]], True
    raise InvalidInput(f"Unable to find '{singular}' in request body")


async def update_body(request: Request, singular: str, model: type[Model]) -> Model:
    body = await json_body(request)
    if not isinstance(body, dict) or set(body) != {singular}:
        raise InvalidInput(f"Unable to find '{singular}' in request body")
    return parse(model, body[singular], singular)
