"""The one base of the service-to-service REST clients.

A ``ServiceClient`` subclass names its callee (``service_type`` in the catalog, the
``ErrorStyle`` its API answers errors in) and sends through one ``httpx.AsyncClient`` built on
``stratus.core.http.TracingTransport`` (a span and the request id per call; a GET/HEAD sent
again once when a stale keep-alive connection was reused).

Contracts:

* The endpoint comes from the catalog: the service credentials' own (``ServiceAuth``) when
  the client has them, else the calling user's token (``RequestContext.token``).
  ``catalog_endpoint`` is the one catalog lookup in the tree.
* ``request`` returns only 2xx/3xx answers. An answer of 400 or more is raised as the
  ``StratusError`` subclass of its status, with the message the callee's error body carries
  (``decode_error``), so callers catch types, not status numbers. A transport failure is
  ``ServiceUnavailable``.
* ``KeystoneAuth`` sets ``X-Auth-Token`` (the user's token when acting for a user, else the
  service token) and ``X-Service-Token``; on a 401 it refreshes a refreshable service token
  exactly once and resends. It never loops: the second answer is the answer.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Generator, Mapping
from typing import Any, ClassVar, Protocol

import httpx

from stratus.core.context import RequestContext
from stratus.core.exceptions import (
    BadRequest,
    Conflict,
    Forbidden,
    MethodNotAllowed,
    NotAcceptable,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    StratusError,
    Unauthorized,
    UnsupportedMediaType,
)
from stratus.core.http import service_http_client
from stratus.core.web.errors import ErrorStyle


def catalog_endpoint(catalog: list[dict[str, Any]] | None, service_type: str,
                     interface: str = "public") -> str | None:
    """The URL of ``service_type`` in a token's catalog (no trailing slash), or None."""
    for entry in catalog or []:
        if entry.get("type") != service_type:
            continue
        for ep in entry.get("endpoints") or []:
            if ep.get("interface") == interface:
                return str(ep["url"]).rstrip("/")
    return None


def endpoint(ctx: RequestContext, service_type: str, interface: str = "public") -> str:
    """The URL of ``service_type`` in the caller's token catalog; ``ServiceUnavailable``
    when the cloud has no such service."""
    url = catalog_endpoint((ctx.token or {}).get("catalog"), service_type, interface)
    if url is None:
        raise ServiceUnavailable(f"No {service_type} endpoint in the service catalog.")
    return url


#: ASCII control characters, which httpx refuses in a URL (``InvalidURL``, answered 500).
_CONTROLS = re.compile(r"[\x00-\x1f\x7f]")


def encode_controls(url: str) -> str:
    """``url`` with its control characters percent-encoded: an id from a caller holding one
    (``\r``) reaches the service as the id it is, and is answered as unknown (404)."""
    return _CONTROLS.sub(lambda match: f"%{ord(match.group()):02X}", url)


class ServiceTokens(Protocol):
    """What a client needs of ``stratus.core.service_auth.ServiceAuth``."""

    async def token(self, refresh: bool = False) -> str: ...

    async def find_endpoint(self, service_type: str,
                            interface: str = "public") -> str | None: ...


# Errors -------------------------------------------------------------------------------------

#: The error type each status is raised as; the inverse of ``StratusError.status``.
_BY_STATUS: dict[int, type[StratusError]] = {cls.status: cls for cls in (
    BadRequest, Unauthorized, Forbidden, NotFound, MethodNotAllowed, NotAcceptable, Conflict,
    PayloadTooLarge, UnsupportedMediaType, ServiceUnavailable)}


def error_message(style: ErrorStyle, body: Any) -> str | None:
    """The message in an error body of ``style`` (the inverse of ``ErrorStyle.body``), or
    None when the body is not of that shape."""
    if not isinstance(body, dict):
        return None
    inner: Any
    if style is ErrorStyle.IDENTITY:
        inner = body.get("error")
    elif style is ErrorStyle.NETWORK:
        inner = body.get("NeutronError")
    elif style is ErrorStyle.COMPUTE:
        # One key naming the error kind (``badRequest``, ``itemNotFound``, ...).
        inner = next(iter(body.values())) if len(body) == 1 else None
    else:
        inner = body
    if isinstance(inner, dict) and isinstance(inner.get("message"), str):
        return str(inner["message"])
    return None


def decode_error(response: httpx.Response, style: ErrorStyle,
                 service_name: str = "service") -> StratusError:
    """The ``StratusError`` an error answer of an API in ``style`` stands for.

    A status with no type of its own is a plain ``StratusError`` carrying that status; a 5xx
    other than 503 is ``ServiceUnavailable`` (the callee failed, not the caller's request)."""
    status = response.status_code
    try:
        message = error_message(style, response.json())
    except ValueError:  # not JSON (a proxy's HTML page, an empty body)
        message = None
    text = message or f"The {service_name} answered {status}."
    cls = _BY_STATUS.get(status)
    if cls is not None:
        return cls(text)
    if status >= 500:  # its message is the callee's internal business
        return ServiceUnavailable(f"The {service_name} answered {status}.")
    error = StratusError(text)
    error.status = status
    return error


# Auth ---------------------------------------------------------------------------------------

class KeystoneAuth(httpx.Auth):
    """``X-Auth-Token`` and ``X-Service-Token`` on each request; on a 401, the service token
    refreshed once and the request resent.

    ``user_token`` is the user's token when acting for one; without it the service token
    acts alone, as an admin would. The service token is ``service.token()`` (refreshable)
    or else the fixed ``service_token`` (one a caller passed along: nothing to refresh).
    ``service_header=False`` leaves ``X-Service-Token`` out (a service calling as itself).
    """

    def __init__(self, *, user_token: str | None = None, service: ServiceTokens | None = None,
                 service_token: str | None = None, service_header: bool = True) -> None:
        self.user_token = user_token
        self.service = service
        self.service_token = service_token
        self.service_header = service_header

    def _apply(self, request: httpx.Request, service_token: str | None) -> None:
        request.headers["X-Auth-Token"] = self.user_token or service_token or ""
        if service_token and self.service_header:
            request.headers["X-Service-Token"] = service_token

    async def async_auth_flow(self, request: httpx.Request
                              ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if self.service is None:
            self._apply(request, self.service_token)
            yield request
            return
        self._apply(request, await self.service.token())
        response = yield request
        if response.status_code == 401:  # our service token was revoked or expired
            self._apply(request, await self.service.token(refresh=True))
            yield request

    def sync_auth_flow(self, request: httpx.Request
                       ) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("KeystoneAuth is for httpx.AsyncClient only.")


# Client -------------------------------------------------------------------------------------

class ServiceClient:
    """Base of the REST clients: endpoint, auth, and typed errors for one callee."""

    #: The callee's type in the catalog.
    service_type: ClassVar[str]
    #: How the callee's API writes its error bodies.
    style: ClassVar[ErrorStyle]
    #: The callee as error messages name it ("image service").
    service_name: ClassVar[str]

    def __init__(self, client: httpx.AsyncClient | None = None,
                 service_auth: ServiceTokens | None = None) -> None:
        self.client = client or service_http_client()
        self.service_auth = service_auth

    async def find_endpoint(self, ctx: RequestContext | None = None) -> str | None:
        """The callee's URL from the service credentials' catalog, else from the caller's."""
        if self.service_auth is not None:
            return await self.service_auth.find_endpoint(self.service_type)
        catalog = (ctx.token or {}).get("catalog") if ctx is not None else None
        return catalog_endpoint(catalog, self.service_type)

    async def endpoint(self, ctx: RequestContext | None = None) -> str:
        """As ``find_endpoint``; a missing service is ``ServiceUnavailable``."""
        url = await self.find_endpoint(ctx)
        if url is None:
            raise ServiceUnavailable(f"No {self.service_type} endpoint in the service "
                                     "catalog.")
        return url

    def auth(self, ctx: RequestContext | None = None, *,
             service_token: str | None = None) -> KeystoneAuth:
        """The caller's token, and a service token: ``service_token`` if given, else this
        client's own (refreshable), else the one the caller brought along."""
        fixed = service_token
        if fixed is None and self.service_auth is None and ctx is not None:
            fixed = ctx.service_token
        return KeystoneAuth(user_token=ctx.auth_token if ctx is not None else None,
                            service=self.service_auth if fixed is None else None,
                            service_token=fixed)

    async def request(self, method: str, url: str, *, auth: httpx.Auth,
                      json: Any = None, params: Mapping[str, Any] | None = None,
                      headers: Mapping[str, str] | None = None,
                      content: AsyncIterable[bytes] | None = None) -> httpx.Response:
        """Send (``content``: a body streamed from an iterator); a 4xx/5xx answer is raised
        as its ``StratusError`` (``decode_error``)."""
        url = encode_controls(url)
        try:
            response = await self.client.request(method, url, json=json, params=params,
                                                  headers=headers, auth=auth, content=content)
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(f"The {self.service_name} is unreachable.") from exc
        if response.status_code >= 400:
            raise decode_error(response, self.style, self.service_name)
        return response

    @contextlib.asynccontextmanager
    async def stream(self, method: str, url: str, *,
                     auth: httpx.Auth) -> AsyncIterator[httpx.Response]:
        """As ``request``, with the body left unread for the caller to stream."""
        try:
            async with self.client.stream(method, encode_controls(url),
                                          auth=auth) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise decode_error(response, self.style, self.service_name)
                yield response
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(f"The {self.service_name} is unreachable.") from exc
