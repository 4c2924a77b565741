"""The service REST client base: error bodies decoded into their types, the Keystone auth
flow (user + service token, one refresh on a 401, never a loop), the catalog lookup, and a
safe request sent again when its pooled connection was closed under it (an unsafe one never
is)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from stratus.core.clients.base import (
    KeystoneAuth,
    ServiceClient,
    catalog_endpoint,
    decode_error,
)
from stratus.core.clients.compute import ComputeClient
from stratus.core.clients.image import ImageClient
from stratus.core.clients.network import NetworkClient
from stratus.core.clients.volume import VolumeClient
from stratus.core.context import RequestContext
from stratus.core.exceptions import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    ServiceUnavailable,
    StratusError,
    Unauthorized,
)
from stratus.core.http import service_http_client
from stratus.core.web.errors import ErrorStyle

CATALOG = [
    {"type": "image", "endpoints": [
        {"interface": "internal", "url": "http://internal/image"},
        {"interface": "public", "url": "http://cloud/image/"}]},
    {"type": "network", "endpoints": [{"interface": "public", "url": "http://cloud/network"}]},
    {"type": "compute", "endpoints": [{"interface": "public", "url": "http://cloud/compute"}]},
]


class Tokens:
    """A service's credentials: hands out ``service-1``, then ``service-2`` once refreshed."""

    def __init__(self) -> None:
        self.issued = 1
        self.refreshes = 0

    async def token(self, refresh: bool = False) -> str:
        if refresh:
            self.refreshes += 1
            self.issued += 1
        return f"service-{self.issued}"

    async def find_endpoint(self, service_type: str,
                            interface: str = "public") -> str | None:
        return catalog_endpoint(CATALOG, service_type, interface)


@pytest.fixture
def tokens() -> Tokens:
    return Tokens()


class Recorder:
    """Answers each request with the next of ``answers`` (the last one repeats); keeps a
    copy of each request as sent (an auth flow resends the same request object)."""

    def __init__(self, *answers: tuple[int, Any]) -> None:
        self.answers = list(answers) or [(200, {})]
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(httpx.Request(request.method, request.url,
                                           headers=request.headers.copy(),
                                           content=request.read()))
        status, body = self.answers[min(len(self.requests), len(self.answers)) - 1]
        return httpx.Response(status, json=body)


def _sent(recorder: Recorder, header: str) -> list[str | None]:
    """``header`` of each request sent, in order."""
    return [r.headers.get(header) for r in recorder.requests]


def _client(recorder: Recorder) -> httpx.AsyncClient:
    return service_http_client(transport=httpx.MockTransport(recorder))


def _user(**kwargs: Any) -> RequestContext:
    return RequestContext(user_id="u", project_id="p", auth_token="user-token",
                          token={"catalog": CATALOG}, **kwargs)


# Error bodies -------------------------------------------------------------------------------

@pytest.mark.parametrize(("style", "status", "expected"), [
    (ErrorStyle.NETWORK, 409, Conflict),
    (ErrorStyle.COMPUTE, 400, BadRequest),
    (ErrorStyle.COMPUTE, 404, NotFound),
    (ErrorStyle.IDENTITY, 401, Unauthorized),
    (ErrorStyle.PLAIN, 403, Forbidden),
    (ErrorStyle.PLAIN, 503, ServiceUnavailable),
])
def test_each_style_decodes_into_its_type(style: ErrorStyle, status: int,
                                          expected: type[StratusError]) -> None:
    """What ``ErrorStyle.body`` writes, ``decode_error`` reads back: type and message."""
    response = httpx.Response(status, json=style.body(status, "the reason"))
    error = decode_error(response, style, "some service")
    assert type(error) is expected
    assert error.message == "the reason"
    assert error.status == status


def test_a_neutron_conflict_is_a_conflict_with_its_message() -> None:
    response = httpx.Response(409, json={"NeutronError": {
        "type": "IpAddressInUse", "message": "IP 10.0.0.5 is in use.", "detail": ""}})
    error = decode_error(response, ErrorStyle.NETWORK, "network service")
    assert isinstance(error, Conflict)
    assert error.message == "IP 10.0.0.5 is in use."


def test_a_cinder_body_names_its_kind_in_the_key() -> None:
    response = httpx.Response(404, json={"itemNotFound": {
        "message": "Volume v1 could not be found.", "code": 404}})
    error = decode_error(response, ErrorStyle.COMPUTE, "block storage service")
    assert isinstance(error, NotFound)
    assert error.message == "Volume v1 could not be found."


def test_bodies_not_of_the_style_still_give_the_type() -> None:
    html = httpx.Response(502, text="<html>Bad Gateway</html>")
    error = decode_error(html, ErrorStyle.NETWORK, "network service")
    assert isinstance(error, ServiceUnavailable)
    assert error.message == "The network service answered 502."
    teapot = decode_error(httpx.Response(418, json={}), ErrorStyle.COMPUTE, "x")
    assert type(teapot) is StratusError
    assert teapot.status == 418


def test_a_5xx_message_is_not_passed_on() -> None:
    response = httpx.Response(500, json=ErrorStyle.COMPUTE.body(500, "Traceback: db down"))
    error = decode_error(response, ErrorStyle.COMPUTE, "compute service")
    assert isinstance(error, ServiceUnavailable)
    assert "Traceback" not in error.message


async def test_a_client_raises_the_decoded_type() -> None:
    recorder = Recorder((409, {"NeutronError": {"type": "MacAddressInUse",
                                                "message": "MAC in use.", "detail": ""}}))
    async with _client(recorder) as http:
        client = NetworkClient(http, Tokens())
        base = await client.find_base()
        assert base == "http://cloud/network/v2.0"
        with pytest.raises(Conflict, match="MAC in use"):
            await client.create_port(_user(), base, {"network_id": "n"})


async def test_unreachable_is_service_unavailable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with service_http_client(transport=httpx.MockTransport(refuse)) as http:
        with pytest.raises(ServiceUnavailable, match="image service is unreachable"):
            await ImageClient(http).get(_user(), "img")


# Auth ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("ctx", "auth_token"), [
    (_user(), "user-token"),  # acting for a user: the user's token, and the service's
    (RequestContext(), "service-1"),  # on its own: the service token acts alone
])
async def test_user_and_service_tokens(ctx: RequestContext, auth_token: str) -> None:
    recorder = Recorder((200, {"networks": []}))
    async with _client(recorder) as http:
        await NetworkClient(http, Tokens()).list_networks(ctx, "http://n/v2.0", ["id"])
    (sent,) = recorder.requests
    assert sent.headers["x-auth-token"] == auth_token
    assert sent.headers["x-service-token"] == "service-1"


async def test_a_401_refreshes_the_service_token_once_and_resends(tokens: Tokens) -> None:
    recorder = Recorder((401, {}), (200, {"ports": []}))
    async with _client(recorder) as http:
        ports = await NetworkClient(http, tokens).list_ports(
            _user(), "http://cloud/network/v2.0", {"device_id": "i"})
    assert (ports, tokens.refreshes) == ([], 1)
    assert _sent(recorder, "x-service-token") == ["service-1", "service-2"]
    assert _sent(recorder, "x-auth-token") == ["user-token", "user-token"]


async def test_a_second_401_is_the_answer_not_a_loop(tokens: Tokens) -> None:
    recorder = Recorder((401, ErrorStyle.NETWORK.body(401, "Authentication required")))
    async with _client(recorder) as http:
        with pytest.raises(Unauthorized, match="Authentication required"):
            await NetworkClient(http, tokens).show_port(_user(), "http://n/v2.0", "p")
    assert len(recorder.requests) == 2
    assert tokens.refreshes == 1


async def test_a_body_is_sent_again_unchanged_after_a_refresh() -> None:
    recorder = Recorder((401, {}), (201, {"port": {"id": "p"}}))
    async with _client(recorder) as http:
        await NetworkClient(http, Tokens()).create_port(_user(), "http://n/v2.0",
                                                        {"network_id": "n"})
    assert [r.method for r in recorder.requests] == ["POST", "POST"]
    assert recorder.requests[0].content == recorder.requests[1].content


async def test_a_token_passed_along_is_not_refreshed() -> None:
    """compute-api holds no credentials: the caller's service token goes as it came."""
    recorder = Recorder((401, {}))
    async with _client(recorder) as http:
        with pytest.raises(BadRequest):  # the volume client's contract: no 401 passed on
            await VolumeClient(http).get_attachment(
                _user(service_token="brought-along"), "http://cloud/volume/v3/p", "a")
    (sent,) = recorder.requests
    assert sent.headers["x-auth-token"] == "user-token"
    assert sent.headers["x-service-token"] == "brought-along"
    assert sent.headers["openstack-api-version"] == "volume 3.44"


async def test_a_service_calling_as_itself_sends_one_token(tokens: Tokens) -> None:
    recorder = Recorder((401, {}), (200, {"events": []}))
    async with _client(recorder) as http:
        status = await ComputeClient(http, tokens).server_external_events(
            [{"name": "network-vif-plugged", "server_uuid": "s", "tag": "p"}])
    assert status == 200
    assert recorder.requests[0].url == "http://cloud/compute/os-server-external-events"
    assert _sent(recorder, "x-auth-token") == ["service-1", "service-2"]
    assert _sent(recorder, "x-service-token") == [None, None]


def test_the_auth_is_async_only() -> None:
    with httpx.Client(transport=httpx.MockTransport(Recorder())) as client:
        with pytest.raises(RuntimeError):
            client.get("http://x/", auth=KeystoneAuth(user_token="t"))


# Endpoints ----------------------------------------------------------------------------------

def test_catalog_lookup_picks_the_interface_and_drops_the_slash() -> None:
    assert catalog_endpoint(CATALOG, "image") == "http://cloud/image"
    assert catalog_endpoint(CATALOG, "image", "internal") == "http://internal/image"
    assert catalog_endpoint(CATALOG, "block-storage") is None
    assert catalog_endpoint(None, "image") is None


async def test_endpoint_from_the_callers_catalog_without_credentials() -> None:
    client: ServiceClient = ImageClient(service_http_client())
    try:
        assert await client.endpoint(_user()) == "http://cloud/image"
        with pytest.raises(ServiceUnavailable, match="No block-storage endpoint"):
            await VolumeClient(client.client).endpoint(_user())
    finally:
        await client.client.aclose()


# Stale keep-alive ---------------------------------------------------------------------------

class ClosesOnce(httpx.AsyncBaseTransport):
    """Fails the first request as a keep-alive connection the server just closed would."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request.method)
        if len(self.sent) == 1:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        return httpx.Response(200, json={"ok": True, "network": {"id": "n"}})


async def test_a_get_is_sent_again_on_a_stale_connection() -> None:
    transport = ClosesOnce()
    async with service_http_client(transport=transport) as client:
        response = await client.get("http://service/v2/images/x")
    assert response.status_code == 200
    assert transport.sent == ["GET", "GET"]


async def test_a_post_is_not_sent_twice() -> None:
    transport = ClosesOnce()
    async with service_http_client(transport=transport) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post("http://service/v2.0/ports", json={})
    assert transport.sent == ["POST"]


async def test_a_client_resends_a_get_on_a_stale_connection_not_a_post() -> None:
    transport = ClosesOnce()
    async with service_http_client(transport=transport) as http:
        client = NetworkClient(http, Tokens())
        assert (await client.show_network(_user(), "http://n/v2.0", "n"))["id"] == "n"
    assert transport.sent == ["GET", "GET"]

    transport = ClosesOnce()
    async with service_http_client(transport=transport) as http:
        client = NetworkClient(http, Tokens())
        with pytest.raises(ServiceUnavailable):
            await client.create_port(_user(), "http://n/v2.0", {"network_id": "n"})
    assert transport.sent == ["POST"]
