"""The contract between a typed bus client (an ``RPCAPI``) and the manager that serves it.

``check(api, manager)`` lists every way the two disagree, without a broker: each public
async method of ``api`` is run against a recording client, which notes what the method sends
(``call``, ``cast`` or ``fanout``, the method name, the keyword arguments, and the server
and timeout given to ``prepare``). Then, for each message:

* the method is on the manager's allow-list (``manager.METHODS``) and the allow-list names
  exactly the methods the client sends (nothing served that no client sends);
* the manager's method is an async method the dispatcher accepts (context first, named and
  resolvable parameters);
* every argument sent is a parameter of the manager's method, and every parameter is sent
  (one with a default too: a parameter no client can set is dead, or a forgotten argument);
* an argument's annotation is the same on both sides (the client's parameter whose value
  is sent under that name);
* every parameter of the client's method goes somewhere: an argument, or ``prepare``'s
  ``server`` (compute's and volume's ``host``) or ``timeout`` (``wait_for``);
* the client's method has the remote method's name, and the arguments sent under their own
  names come in the order of the server's parameters (so the two read alike);
* for a ``call``, the client's return annotation is the manager's;
* ``api.ERRORS`` (the remote errors re-raised by type) holds ``StratusError`` types only.

An empty list means the pair agrees.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stratus.core.bus.dispatcher import _endpoint
from stratus.core.bus.rpcapi import RPCAPI
from stratus.core.context import RequestContext
from stratus.core.exceptions import StratusError


@dataclass(frozen=True)
class _Arg:
    """The value passed for the client parameter ``name`` (recognised where it ends up)."""

    name: str


@dataclass
class Sent:
    """One message a client method sent."""

    kind: str
    method: str
    kwargs: dict[str, Any]
    prepared: dict[str, Any] = field(default_factory=dict)


class _Recorder:
    """Stands in for ``RPCClient``: records instead of sending."""

    def __init__(self, sent: list[Sent], prepared: dict[str, Any] | None = None) -> None:
        self.sent = sent
        self.prepared = prepared or {}

    def prepare(self, **changes: Any) -> _Recorder:
        return _Recorder(self.sent, {**self.prepared, **changes})

    def _record(self, kind: str, method: str, kwargs: dict[str, Any]) -> None:
        self.sent.append(Sent(kind, method, kwargs, self.prepared))

    async def call(self, ctx: RequestContext, method: str, /, **kwargs: Any) -> Any:
        self._record("call", method, kwargs)
        return _NoResult()

    async def cast(self, ctx: RequestContext, method: str, /, **kwargs: Any) -> None:
        self._record("fanout" if self.prepared.get("fanout") else "cast", method, kwargs)

    async def fanout(self, ctx: RequestContext, method: str, /, **kwargs: Any) -> None:
        self._record("fanout", method, kwargs)


class _NoResult:
    """What a recorded call returns; converting it to the client's result type fails,
    which is expected (the message was already recorded)."""


def client_methods(api: type[RPCAPI]) -> dict[str, Callable[..., Any]]:
    """The public async methods of ``api`` (the remote methods it offers)."""
    return {name: func for name, func in inspect.getmembers(api, inspect.iscoroutinefunction)
            if not name.startswith("_")}


async def record(api: type[RPCAPI], name: str) -> tuple[list[Sent], inspect.Signature]:
    """What ``api.name`` sends when each parameter is given a recognisable value."""
    instance = object.__new__(api)
    sent: list[Sent] = []
    instance.client = _Recorder(sent)  # type: ignore[assignment]
    method = getattr(instance, name)
    signature = inspect.signature(method)
    params = list(signature.parameters.values())
    args = {p.name: _Arg(p.name) for p in params[1:]}
    try:
        await method(RequestContext.for_service("contract-check"), **args)
    except Exception:  # the result conversion of a recorded call fails: expected
        if not sent:
            raise
    return sent, signature


def _hints(func: Callable[..., Any]) -> dict[str, Any]:
    return typing.get_type_hints(func, include_extras=True)


def _served(manager: type, name: str) -> Callable[..., Any] | None:
    func = getattr(manager, name, None)
    if func is None or not inspect.iscoroutinefunction(func):
        return None
    # Bound to a stand-in instance: the dispatcher sees it as it sees a live manager's.
    return types.MethodType(func, object())


async def check(api: type[RPCAPI], manager: type) -> list[str]:
    """Every disagreement between ``api`` (client) and ``manager`` (server)."""
    problems: list[str] = []
    owner = f"{api.__name__} -> {manager.__name__}"
    allowed = set(getattr(manager, "METHODS", ()))
    clients = client_methods(api)
    sent_names: set[str] = set()
    for name, func in sorted(clients.items()):
        messages, signature = await record(api, name)
        client_hints = _hints(func)
        for message in messages:
            sent_names.add(message.method)
            problems.extend(_check_message(owner, name, message, signature, client_hints,
                                           manager, allowed))
        used = {v.name for m in messages for v in (*m.kwargs.values(), *m.prepared.values())
                if isinstance(v, _Arg)}
        for param in list(signature.parameters)[1:]:
            if param not in used:
                problems.append(f"{owner}: {name}: parameter {param!r} is never sent")
        if not messages:
            problems.append(f"{owner}: {name} sends nothing")
    for kind in api.ERRORS:
        if not (isinstance(kind, type) and issubclass(kind, StratusError)):
            problems.append(f"{owner}: ERRORS holds {kind!r}, not a StratusError type")
    for extra in sorted(allowed - sent_names):
        problems.append(f"{owner}: {extra} is served but no client method sends it")
    return problems


def _check_message(owner: str, name: str, message: Sent, signature: inspect.Signature,
                   client_hints: dict[str, Any], manager: type,
                   allowed: set[str]) -> list[str]:
    where = f"{owner}: {name} sends {message.kind} {message.method!r}"
    if message.method != name:
        return [f"{where}: a client method has the name of the remote method it sends"]
    if message.method not in allowed:
        return [f"{where}, which is not on {manager.__name__}.METHODS"]
    served = _served(manager, message.method)
    if served is None:
        return [f"{where}, which is not an async method of {manager.__name__}"]
    try:
        _endpoint(manager.__name__, message.method, served)
    except ValueError as exc:
        return [f"{where}: the dispatcher refuses it: {exc}"]
    problems = []
    params = list(inspect.signature(served).parameters.values())[1:]
    server_hints = _hints(served)
    by_name = {p.name: p for p in params}
    for arg, value in message.kwargs.items():
        if arg not in by_name:
            problems.append(f"{where} with argument {arg!r}, which the server does not take")
            continue
        source = value.name if isinstance(value, _Arg) else None
        if source is not None and client_hints.get(source) != server_hints.get(arg):
            problems.append(f"{where}: argument {arg!r} is {client_hints.get(source)} on the "
                            f"client and {server_hints.get(arg)} on the server")
    same_named = [p for p in list(signature.parameters)[1:]
                  if message.kwargs.get(p) == _Arg(p)]
    if same_named != [p.name for p in params if p.name in same_named]:
        problems.append(f"{where}: arguments in the order {same_named}, the server's "
                        f"order is {[p.name for p in params]}")
    for param in params:
        if param.name in message.kwargs:
            continue
        if param.default is inspect.Parameter.empty:
            problems.append(f"{where} without {param.name!r}, which the server requires")
        else:
            problems.append(f"{where} without {param.name!r}: a parameter no client sets")
    if message.kind == "call":
        theirs, ours = server_hints.get("return"), client_hints.get("return")
        if ours is not type(None) and theirs != ours:
            problems.append(f"{where}: the client expects {ours}, the server returns {theirs}")
    return problems
