"""``stratus.core.retry``: a call tried again while its service fails transiently (a 503,
no answer, a timeout, also when wrapped), at once given up on a refusal, and given up
after the last try with the last failure."""

from __future__ import annotations

import httpx
import pytest

from stratus.compute.agent.network import NetworkError
from stratus.core import retry
from stratus.core.clients.base import ServiceClient, decode_error
from stratus.core.exceptions import BadRequest, ServiceUnavailable
from stratus.core.retry import Backoff, transient, with_backoff
from stratus.core.web.errors import ErrorStyle


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(retry.asyncio, "sleep", sleep)
    return slept


class Flaky:
    """Fails with each of ``failures`` in turn, then answers "done"."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "done"


def _answer(status: int) -> Exception:
    return decode_error(httpx.Response(status, json={"serviceUnavailable": {
        "code": status, "message": "busy"}}), ErrorStyle.COMPUTE, "block storage service")


async def test_a_503_is_tried_again_until_it_answers(waits: list[float]) -> None:
    call = Flaky(_answer(503), _answer(503))
    assert await with_backoff(call, what="x", backoff=Backoff(tries=4, first=1, cap=8)) \
        == "done"
    assert call.calls == 3 and len(waits) == 2
    assert 0.75 <= waits[0] <= 1.25 and 1.5 <= waits[1] <= 2.5  # doubling, with jitter


async def test_no_answer_at_all_is_transient_as_the_clients_raise_it(
        waits: list[float]) -> None:
    def failing(exc: Exception) -> httpx.MockTransport:
        def handler(request: httpx.Request) -> httpx.Response:
            raise exc
        return httpx.MockTransport(handler)

    for exc in (httpx.ConnectError("refused"), httpx.ReadTimeout("slow"),
                httpx.RemoteProtocolError("closed")):
        client = ServiceClient(httpx.AsyncClient(transport=failing(exc)))
        client.service_name = "block storage service"  # type: ignore[misc]
        client.style = ErrorStyle.COMPUTE  # type: ignore[misc]
        with pytest.raises(ServiceUnavailable) as raised:
            await client.request("DELETE", "http://h/v3/p/volumes/v", auth=httpx.Auth())
        assert transient(raised.value)
    assert transient(_answer(500)) and transient(_answer(502))


async def test_a_wrapped_transient_failure_is_transient(waits: list[float]) -> None:
    try:
        try:
            raise _answer(503)
        except ServiceUnavailable as exc:
            raise NetworkError("Could not release port p: busy") from exc
    except NetworkError as wrapped:
        assert transient(wrapped)
        call = Flaky(wrapped)
    assert await with_backoff(call, what="x", backoff=Backoff(tries=2)) == "done"


async def test_a_refusal_is_not_tried_again(waits: list[float]) -> None:
    call = Flaky(BadRequest("Invalid volume"), _answer(503))
    with pytest.raises(BadRequest):
        await with_backoff(call, what="x")
    assert call.calls == 1 and waits == []
    assert not transient(NetworkError("Could not release port p: refused"))


async def test_after_the_last_try_the_last_failure_is_raised(waits: list[float]) -> None:
    told: list[BaseException] = []
    call = Flaky(*[_answer(503) for _ in range(10)])
    with pytest.raises(ServiceUnavailable, match="busy"):
        await with_backoff(call, what="x", backoff=Backoff(tries=5, first=1, cap=4),
                           on_retry=told.append)
    assert call.calls == 5 and len(told) == 4
    assert Backoff(tries=5, first=1, cap=4).delays() == [1, 2, 4, 4]
    assert Backoff(tries=1).delays() == []
    assert sum(Backoff().delays()) == 91  # the default: through a restart under load
