"""Dispatch: from a validated request to one allow-listed async method of a manager.

A manager exposes only the methods named in its server's allow-list, each an ``async def``
whose first parameter (after ``self``) is the :class:`~stratus.core.context.RequestContext`
and whose other parameters are named, annotated arguments::

    async def build_instance(self, ctx: RequestContext, instance_id: str,
                             request: BuildRequest, attempt: int = 1) -> None: ...

Arguments are validated against those annotations on receipt (pydantic, strictly: unknown or
missing arguments fail); the result is converted to JSON through its return annotation.
A message that fails validation, names a method outside the allow-list or an API version the
server cannot serve is an error of the sender: it is never retried.

A server checks its methods' signatures and annotations when it starts; the pydantic model
of a method's arguments and its result's adapter are built by the method's first message
(a process with every unit serves ~85 methods, most of which a start never calls).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model
from pydantic_core import to_jsonable_python

from stratus.core.bus.envelope import Request, validation_summary
from stratus.core.bus.errors import InvalidMessage, UnknownMethod, UnsupportedVersion
from stratus.core.bus.target import parse_version, version_compatible
from stratus.core.context import RequestContext

_NO_RESULT = (inspect.Signature.empty, None, type(None), Any)


@dataclass(frozen=True)
class Endpoint:
    """One exposed method: its arguments' model and how its result is dumped (both made
    on first use)."""

    name: str
    func: Callable[..., Awaitable[Any]]
    #: ``{owner}_{name}``: the arguments model's name.
    qualified: str
    #: Field name in ``arguments`` → (its type, its pydantic ``Field``).
    definitions: dict[str, Any]
    #: Parameter name → field name in ``arguments`` (fields are prefixed so that argument
    #: names never clash with pydantic's own attributes).
    fields: tuple[tuple[str, str], ...]
    returns: Any

    @cached_property
    def arguments(self) -> type[BaseModel]:
        return create_model(
            f"{self.qualified}_arguments",
            __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True,
                                  populate_by_name=False),
            **self.definitions)

    @cached_property
    def result(self) -> TypeAdapter[Any] | None:
        return None if self.returns in _NO_RESULT else TypeAdapter(self.returns)

    def bind(self, args: dict[str, Any]) -> dict[str, Any]:
        try:
            model = self.arguments.model_validate(args)
        except ValidationError as exc:
            raise InvalidMessage(f"arguments of {self.name}: {validation_summary(exc)}") from None
        return {param: getattr(model, field) for param, field in self.fields}

    def dump(self, result: Any) -> Any:
        if self.result is not None:
            return self.result.dump_python(result, mode="json")
        return to_jsonable_python(result)


def _endpoint(owner: str, name: str, func: Callable[..., Awaitable[Any]]) -> Endpoint:
    signature = inspect.signature(func)
    params = list(signature.parameters.values())
    if not params or params[0].kind not in (inspect.Parameter.POSITIONAL_ONLY,
                                            inspect.Parameter.POSITIONAL_OR_KEYWORD):
        raise ValueError(f"{owner}.{name}: the first parameter must be the request context")
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception as exc:
        raise ValueError(f"{owner}.{name}: cannot resolve its annotations: {exc}") from None
    definitions: dict[str, Any] = {}
    fields: list[tuple[str, str]] = []
    for param in params[1:]:
        if param.kind not in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                              inspect.Parameter.KEYWORD_ONLY):
            raise ValueError(f"{owner}.{name}: parameter {param.name} must be a named "
                             "argument (no *args, **kwargs or positional-only)")
        field_name = f"arg_{param.name}"
        default = ... if param.default is inspect.Parameter.empty else param.default
        definitions[field_name] = (hints.get(param.name, Any),
                                   Field(default, alias=param.name))
        fields.append((param.name, field_name))
    returns = hints.get("return", inspect.Signature.empty)
    return Endpoint(name=name, func=func, qualified=f"{owner}_{name}", definitions=definitions,
                    fields=tuple(fields), returns=returns)


class Dispatcher:
    """The allow-list of one manager, and the way in to it."""

    def __init__(self, manager: object, methods: Iterable[str], *, version: str = "1.0"):
        parse_version(version)
        self.version = version
        self.manager = manager
        owner = type(manager).__name__
        self.endpoints: dict[str, Endpoint] = {}
        for name in methods:
            if not name.isidentifier() or name.startswith("_"):
                raise ValueError(f"{owner}.{name}: only public methods can be exposed")
            func = getattr(manager, name, None)
            if func is None or not inspect.iscoroutinefunction(func):
                raise ValueError(f"{owner}.{name} is not an async method")
            self.endpoints[name] = _endpoint(owner, name, func)
        if not self.endpoints:
            raise ValueError(f"{owner}: the allow-list is empty")

    def endpoint(self, request: Request) -> Endpoint:
        if not version_compatible(self.version, request.version):
            raise UnsupportedVersion(
                f"{request.method} sent for API version {request.version}; this server "
                f"serves {self.version}")
        endpoint = self.endpoints.get(request.method)
        if endpoint is None:
            raise UnknownMethod(f"{request.method} is not a method of this server")
        return endpoint

    async def dispatch(self, request: Request, ctx: RequestContext) -> Any:
        """Validate and run; returns the result as JSON types."""
        endpoint = self.endpoint(request)
        result = await endpoint.func(ctx, **endpoint.bind(request.args))
        return endpoint.dump(result) if request.kind == "call" else None
