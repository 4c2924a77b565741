"""The wire format: a small, versioned JSON envelope around every message.

A request (cast, call or fanout)::

    {"v": 1, "id": "<32 hex>", "kind": "cast", "method": "build_instance", "version": "1.0",
     "args": {...}, "context": {"request_id": "req-...", "user_id": ..., "roles": [...], ...},
     "reply_to": "stratus.reply.<id>", "expires": 1700000000.5, "trace": {"traceparent": ...}}

and a reply to a call::

    {"v": 1, "id": "<the call's id>", "ok": true, "result": ...}
    {"v": 1, "id": "<the call's id>", "ok": false, "error": {"type": "NotFound", "message": ...}}

Contracts:

* ``v`` is the envelope version. A receiver rejects a version it does not know (the message is
  dead-lettered, or a call answered with an error); fields it does not know are ignored, so
  adding an optional field does not need a new version.
* Everything is validated on receipt (pydantic); a message that fails validation raises
  :class:`~stratus.core.bus.errors.InvalidMessage` and is never retried.
* The context carries the caller's request ids, identity and roles, and the caller's token and
  service token where present (a handler may need them to call other services on the user's
  behalf). Tokens are :class:`pydantic.SecretStr` once decoded and never appear in
  :func:`describe`, ``repr()`` or any log line the bus writes.
* ``expires`` (calls only) is a Unix time after which nobody waits for the answer; servers skip
  expired calls.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_core import PydanticSerializationError, to_json

from stratus.core.bus.errors import InvalidMessage, MessagingError
from stratus.core.context import RequestContext

ENVELOPE_VERSION = 1
#: Largest encoded message either side accepts.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
#: A remote error's message is cut to this many characters.
MAX_ERROR_MESSAGE = 2000

Kind = Literal["cast", "call", "fanout"]


def new_message_id() -> str:
    """32 random hex digits."""
    return os.urandom(16).hex()


class WireContext(BaseModel):
    """The request context as it travels (no validated token body)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    request_id: str = Field(min_length=1, max_length=128)
    global_request_id: str | None = Field(default=None, max_length=128)
    user_id: str | None = None
    user_name: str | None = None
    user_domain_id: str | None = None
    project_id: str | None = None
    project_name: str | None = None
    project_domain_id: str | None = None
    domain_id: str | None = None
    system_scope: str | None = None
    roles: list[str] = Field(default_factory=list)
    service_roles: list[str] = Field(default_factory=list)
    service_user_id: str | None = None
    auth_token: SecretStr | None = None
    service_token: SecretStr | None = None

    def to_context(self) -> RequestContext:
        """The handler's context: same request ids, identity, roles and tokens."""
        fields = self.model_dump(exclude={"auth_token", "service_token"})
        return RequestContext(**fields, auth_token=_reveal(self.auth_token),
                              service_token=_reveal(self.service_token))


def _reveal(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret else None


def context_to_wire(ctx: RequestContext) -> dict[str, Any]:
    """The JSON form of a context (fields that are set; tokens only when present). Not for
    logging."""
    wire: dict[str, Any] = {"request_id": ctx.request_id}
    for name in _OPTIONAL_CONTEXT_FIELDS:
        value = getattr(ctx, name)
        if value:
            wire[name] = value
    return wire


#: What a context sends besides its request id: every field the wire form reads back.
_OPTIONAL_CONTEXT_FIELDS = tuple(name for name in WireContext.model_fields if name != "request_id")


class Request(BaseModel):
    """A cast, call or fanout as received."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    v: Literal[1]
    id: str = Field(min_length=1, max_length=64)
    kind: Kind
    method: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,127}$")
    version: str = Field(default="1.0", pattern=r"^\d{1,4}\.\d{1,4}$")
    args: dict[str, Any] = Field(default_factory=dict)
    context: WireContext
    reply_to: str | None = Field(default=None, max_length=255)
    expires: float | None = None
    trace: dict[str, str] = Field(default_factory=dict)


class ErrorInfo(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    type: str = Field(max_length=256)
    message: str = ""


class Reply(BaseModel):
    """The answer to a call."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    v: Literal[1]
    id: str
    ok: bool
    result: Any = None
    error: ErrorInfo | None = None


def _dump(doc: dict[str, Any], what: str) -> bytes:
    try:
        data = to_json(doc)
    except PydanticSerializationError as exc:
        raise TypeError(f"{what} cannot be sent as JSON: {exc}") from None
    if len(data) > MAX_MESSAGE_BYTES:
        raise MessagingError(f"{what} is {len(data)} bytes; the bus carries at most "
                             f"{MAX_MESSAGE_BYTES}")
    return data


def encode_request(*, kind: Kind, msg_id: str, method: str, version: str,
                   args: dict[str, Any], context: RequestContext, reply_to: str | None = None,
                   expires: float | None = None, trace: dict[str, str] | None = None) -> bytes:
    """The bytes of one request. Raises ``TypeError`` for arguments JSON cannot carry."""
    doc: dict[str, Any] = {
        "v": ENVELOPE_VERSION, "id": msg_id, "kind": kind, "method": method,
        "version": version, "args": args, "context": context_to_wire(context),
    }
    if reply_to is not None:
        doc["reply_to"] = reply_to
    if expires is not None:
        doc["expires"] = expires
    if trace:
        doc["trace"] = trace
    return _dump(doc, f"{kind} {method}")


def decode_request(body: bytes) -> Request:
    """The validated request in ``body``; :class:`InvalidMessage` when it is not one."""
    if len(body) > MAX_MESSAGE_BYTES:
        raise InvalidMessage(f"message of {len(body)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        return Request.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidMessage(validation_summary(exc)) from None


def encode_result(msg_id: str, result: Any) -> bytes:
    return _dump({"v": ENVELOPE_VERSION, "id": msg_id, "ok": True, "result": result},
                 "call result")


def encode_error(msg_id: str, exc_type: str, message: str) -> bytes:
    return _dump({"v": ENVELOPE_VERSION, "id": msg_id, "ok": False,
                  "error": {"type": exc_type, "message": message[:MAX_ERROR_MESSAGE]}},
                 "call error")


def decode_reply(body: bytes) -> Reply:
    try:
        reply = Reply.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidMessage(f"invalid reply: {validation_summary(exc)}") from None
    if not reply.ok and reply.error is None:
        raise InvalidMessage("invalid reply: ok is false but no error")
    return reply


def describe(request: Request) -> str:
    """One line naming a request for logs: kind, method, id, request ids and argument
    *names* (never values, which may hold secrets, and never tokens)."""
    ctx = request.context
    glob = f" global={ctx.global_request_id}" if ctx.global_request_id else ""
    return (f"{request.kind} {request.method} v{request.version} id={request.id} "
            f"request={ctx.request_id}{glob} args=[{', '.join(sorted(request.args))}]")


def validation_summary(exc: ValidationError) -> str:
    """Where validation failed, without echoing the input (which may hold secrets)."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False)[:5]:
        loc = ".".join(str(p) for p in error["loc"]) or "message"
        parts.append(f"{loc}: {error['msg']}")
    more = f" (+{exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
    return "; ".join(parts) + more
