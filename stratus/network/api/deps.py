"""Request-scoped pieces of the Network API's routes: the service, the caller, bodies."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any

from fastapi import Depends, Request

from stratus.core.auth import require_context
from stratus.core.context import RequestContext
from stratus.core.web.app import api_root
from stratus.core.web.deps import duplicates_as_conflict
from stratus.network.caller import Caller
from stratus.network.errors import InvalidInput
from stratus.network.service import NetworkRuntime, NetworkService


def runtime(request: Request) -> NetworkRuntime:
    rt: NetworkRuntime = request.app.state.network
    return rt


def caller(request: Request,
           context: Annotated[RequestContext, Depends(require_context)]) -> Caller:
    return runtime(request).caller(context)


async def _transaction(request: Request, write: bool) -> AsyncIterator[NetworkService]:
    async with duplicates_as_conflict("The request conflicts with a concurrent change."), \
            runtime(request).service(write=write) as svc:
        yield svc


async def read_service(request: Request,
                       _: Annotated[Caller, Depends(caller)]) -> AsyncIterator[NetworkService]:
    """One reading transaction per request: it does not take the (SQLite) writers' lock."""
    async for svc in _transaction(request, write=False):
        yield svc


async def write_service(request: Request,
                        _: Annotated[Caller, Depends(caller)]) -> AsyncIterator[NetworkService]:
    """One writing transaction per request, committed before the response is sent. The
    token is checked and the body read before the transaction starts, so neither happens
    while holding the writers' lock."""
    await request.body()  # cached by the request for the route to parse
    async for svc in _transaction(request, write=True):
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

#: Attribute type names: how a JSON value is checked (and, for booleans, normalised).
Spec = Mapping[str, str]


async def json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw or b"null")
    except ValueError as exc:
        raise InvalidInput("Malformed request body: the body is not valid JSON.") from exc


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise InvalidInput(f"Invalid input for {name}. Reason: '{value}' is not a valid "
                       "boolean value.")


def check_attrs(attrs: Any, spec: Spec, resource: str) -> dict[str, Any]:
    """``attrs`` checked against ``spec`` (attribute → kind); unknown attributes are a 400,
    as Neutron answers them."""
    if not isinstance(attrs, dict):
        raise InvalidInput(f"Invalid input: the '{resource}' body must be an object.")
    unknown = sorted(set(attrs) - set(spec))
    if unknown:
        raise InvalidInput(f"Unrecognized attribute(s) '{', '.join(unknown)}'")
    result: dict[str, Any] = {}
    for name, value in attrs.items():
        kind = spec[name]
        nullable = kind.endswith("?")
        kind = kind.rstrip("?")
        if value is None and nullable:
            result[name] = None
            continue
        if kind == "bool":
            result[name] = _bool(name, value)
        elif kind == "str":
            if not isinstance(value, str):
                raise InvalidInput(f"Invalid input for {name}. Reason: '{value}' is not a "
                                   "valid string.")
            if len(value) > 255:
                raise InvalidInput(f"Invalid input for {name}. Reason: '{value[:20]}...' "
                                   "exceeds maximum length of 255.")
            result[name] = value
        elif kind == "int":
            if isinstance(value, str) and value.lstrip("-").isdigit():
                value = int(value)
            if not isinstance(value, int) or isinstance(value, bool):
                raise InvalidInput(f"Invalid input for {name}. Reason: '{value}' is not an "
                                   "integer.")
            result[name] = value
        elif kind == "list":
            if not isinstance(value, list):
                raise InvalidInput(f"Invalid input for {name}. Reason: '{value}' is not a "
                                   "list.")
            result[name] = value
        elif kind == "dict":
            if not isinstance(value, dict):
                raise InvalidInput(f"Invalid input for {name}. Reason: '{value}' is not a "
                                   "dictionary.")
            result[name] = value
        else:
            result[name] = value
    if "tenant_id" in result:
        tenant = result.pop("tenant_id")
        if result.get("project_id", tenant) != tenant:
            raise InvalidInput("'project_id' and 'tenant_id' do not match")
        result["project_id"] = tenant
    return result


async def single_or_bulk(request: Request, singular: str, plural: str, spec: Spec,
                         ) -> tuple[list[dict[str, Any]], bool]:
    """The items of a create body: ``{singular: {...}}`` or ``{plural: [...]}`` (bulk)."""
    body = await json_body(request)
    if isinstance(body, dict) and set(body) == {singular}:
        return [check_attrs(body[singular], spec, singular)], False
    if isinstance(body, dict) and set(body) == {plural} and isinstance(body[plural], list):
        if not body[plural]:
            raise InvalidInput(f"Invalid input: '{plural}' is empty.")
        return [check_attrs(item, spec, singular) for item in body[plural]], True
    raise InvalidInput(f"Unable to find '{singular}' in request body")


async def update_body(request: Request, singular: str, spec: Spec) -> dict[str, Any]:
    body = await json_body(request)
    if not isinstance(body, dict) or set(body) != {singular}:
        raise InvalidInput(f"Unable to find '{singular}' in request body")
    return check_attrs(body[singular], spec, singular)
