"""The bus envelope and dispatch to a manager's allow-list (pure logic, no transport)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest
from pydantic import BaseModel

from stratus.core.bus import dispatcher as dispatcher_module
from stratus.core.bus.dispatcher import Dispatcher
from stratus.core.bus.envelope import (
    MAX_MESSAGE_BYTES,
    decode_reply,
    decode_request,
    describe,
    encode_error,
    encode_request,
    encode_result,
)
from stratus.core.bus.errors import InvalidMessage, MessagingError, UnknownMethod
from stratus.core.context import RequestContext

TOKEN = "gAAAAAB-secret-token"


def _ctx() -> RequestContext:
    return RequestContext(global_request_id="req-00000000-0000-4000-8000-000000000002",
                          user_id="u", project_id="p", roles=["member"], auth_token=TOKEN,
                          service_token="svc-" + TOKEN)


def test_request_round_trip_keeps_context_and_hides_tokens() -> None:
    ctx = _ctx()
    body = encode_request(kind="call", msg_id="m1", method="build", version="1.2",
                          args={"when": datetime(2024, 1, 2, tzinfo=UTC),
                                "id": UUID(int=1)},
                          context=ctx, reply_to="stratus.reply.x", expires=10.0)
    doc = json.loads(body)
    assert doc["v"] == 1 and doc["args"]["when"] == "2024-01-02T00:00:00Z"
    request = decode_request(body)
    back = request.context.to_context()
    assert (back.request_id, back.global_request_id, back.user_id, back.project_id,
            back.roles) == (ctx.request_id, ctx.global_request_id, "u", "p", ["member"])
    assert (back.auth_token, back.service_token) == (TOKEN, "svc-" + TOKEN)
    for text in (describe(request), repr(request), str(request), repr(back)):
        assert TOKEN not in text
    assert ctx.request_id in describe(request) and "args=[id, when]" in describe(request)


@pytest.mark.parametrize("body", [
    b"", b"not json", b"[]", b'{"v": 2, "id": "x", "kind": "cast", "method": "m", '
    b'"context": {"request_id": "r"}}',
    b'{"v": 1, "id": "x", "kind": "shout", "method": "m", "context": {"request_id": "r"}}',
    b'{"v": 1, "id": "x", "kind": "cast", "method": "__init__", '
    b'"context": {"request_id": "r"}}',
    b'{"v": 1, "id": "x", "kind": "cast", "method": "m"}',
])
def test_invalid_requests_are_rejected(body: bytes) -> None:
    with pytest.raises(InvalidMessage):
        decode_request(body)


def test_validation_errors_do_not_echo_input() -> None:
    body = json.dumps({"v": 1, "id": "x", "kind": "cast", "method": "m",
                       "context": {"request_id": "r", "auth_token": 12345678}}).encode()
    with pytest.raises(InvalidMessage) as caught:
        decode_request(body)
    assert "12345678" not in str(caught.value)


def test_unknown_fields_are_ignored() -> None:
    body = json.dumps({"v": 1, "id": "x", "kind": "cast", "method": "m", "later": True,
                       "context": {"request_id": "r", "new_field": 1}}).encode()
    assert decode_request(body).method == "m"


def test_replies() -> None:
    assert decode_reply(encode_result("m1", {"a": [1]})).result == {"a": [1]}
    error = decode_reply(encode_error("m1", "NotFound", "x" * 5000)).error
    assert error is not None and error.type == "NotFound" and len(error.message) == 2000
    with pytest.raises(InvalidMessage):
        decode_reply(b'{"v": 1, "id": "m1", "ok": false}')


def test_limits_and_unserialisable_arguments() -> None:
    with pytest.raises(TypeError, match="JSON"):
        encode_request(kind="cast", msg_id="m", method="m", version="1.0",
                       args={"x": object()}, context=_ctx())
    with pytest.raises(MessagingError, match="at most"):
        encode_request(kind="cast", msg_id="m", method="m", version="1.0",
                       args={"x": "a" * MAX_MESSAGE_BYTES}, context=_ctx())
    with pytest.raises(InvalidMessage):
        decode_request(b" " * (MAX_MESSAGE_BYTES + 1))


class Spec(BaseModel):
    name: str
    vcpus: int


class Manager:
    async def build(self, ctx: RequestContext, spec: Spec, copy: int = 1,
                    *, model_config: str = "x") -> list[str]:
        return [f"{spec.name}-{i}" for i in range(copy)] + [model_config]

    async def untyped(self, ctx, value):  # type: ignore[no-untyped-def]
        return {"value": value, "ctx": ctx.request_id}

    def sync(self, ctx: RequestContext) -> None:
        pass

    async def _private(self, ctx: RequestContext) -> None:
        pass


async def _dispatch(dispatcher: Dispatcher, method: str, args: dict[str, Any],
                    kind: str = "call") -> Any:
    ctx = _ctx()
    body = encode_request(kind=kind, msg_id="m", method=method, version="1.0", args=args,
                          context=ctx)  # type: ignore[arg-type]
    return await dispatcher.dispatch(decode_request(body), ctx)


async def test_dispatch_validates_arguments_and_dumps_results() -> None:
    dispatcher = Dispatcher(Manager(), ["build", "untyped"])
    args = {"spec": {"name": "vm", "vcpus": "2"}, "copy": 2, "model_config": "y"}
    assert await _dispatch(dispatcher, "build", args) == ["vm-0", "vm-1", "y"]
    assert await _dispatch(dispatcher, "build", args, kind="cast") is None
    assert (await _dispatch(dispatcher, "untyped", {"value": [1]}))["value"] == [1]
    for bad in ({"spec": {"name": "vm"}}, {"spec": {"name": "vm", "vcpus": 1}, "extra": 1},
                {}):
        with pytest.raises(InvalidMessage):
            await _dispatch(dispatcher, "build", bad)
    with pytest.raises(UnknownMethod):
        await _dispatch(dispatcher, "sync", {})


async def test_a_methods_models_are_made_by_its_first_message_not_by_the_server() -> None:
    made: list[str] = []
    real = dispatcher_module.create_model

    def counting(name: str, **kwargs: Any) -> Any:
        made.append(name)
        return real(name, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dispatcher_module, "create_model", counting)
        dispatcher = Dispatcher(Manager(), ["build", "untyped"])
        assert made == []  # a start builds no model for methods nobody called yet
        await _dispatch(dispatcher, "untyped", {"value": 1})
        await _dispatch(dispatcher, "untyped", {"value": 2})
        assert made == ["Manager_untyped_arguments"]  # once, on its first message


def test_a_method_whose_annotations_do_not_resolve_is_refused_at_once() -> None:
    class Broken:
        async def method(self, ctx: RequestContext, value: NoSuchType) -> None:  # type: ignore[name-defined]  # noqa: F821
            pass

    with pytest.raises(ValueError, match="cannot resolve its annotations"):
        Dispatcher(Broken(), ["method"])


def test_only_public_async_methods_can_be_exposed() -> None:
    for methods in (["sync"], ["_private"], ["missing"], []):
        with pytest.raises(ValueError):
            Dispatcher(Manager(), methods)
