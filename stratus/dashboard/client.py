"""The dashboard's calls to the public APIs: the session's token, its catalog's endpoints.

Contracts:

* Every call carries the session's token as ``X-Auth-Token`` (never a service token): the
  APIs decide what the user may see and do. Compute calls pin ``COMPUTE_VERSION``, at which
  a server embeds its flavor and carries its addresses, so no page asks the flavor or
  network APIs per row.
* Each call is bounded by ``timeout`` seconds, so a page never hangs on one slow service.
* An answer of 400 or more, a timeout or an unreachable service raises ``ApiError`` naming
  the service (``is_client_error``: a 4xx whose message is the API's own, to show beside
  the form or row; otherwise a banner). A 401 raises ``SessionExpired``: the token is no
  longer valid and the user must log in again.
* A path is the dashboard's own text with ids from the page's URL or form put in: an id
  that would change the call (a ``?``, ``#``, ``.``/``..`` segment, a control character)
  is refused as a 404 before anything is sent, never passed on nor a 500.
* ``gather`` runs one round of calls in parallel and hands back each result or its
  ``ApiError``, so the rest of a page renders when one service fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Any, TypeVar

import httpx

from stratus.core.clients.base import catalog_endpoint, error_message
from stratus.core.web.errors import ErrorStyle
from stratus.dashboard.sessions import Session

#: The compute microversion of every compute call: 2.47 embeds the flavor in a server.
COMPUTE_VERSION = "2.47"

#: Catalog type → (the service as messages name it, the style of its error bodies).
SERVICES: dict[str, tuple[str, ErrorStyle]] = {
    "identity": ("identity service", ErrorStyle.IDENTITY),
    "compute": ("compute service", ErrorStyle.COMPUTE),
    "image": ("image service", ErrorStyle.PLAIN),
    "network": ("network service", ErrorStyle.NETWORK),
    "block-storage": ("block storage service", ErrorStyle.COMPUTE),
}

T = TypeVar("T")


class ApiError(Exception):
    """A call that did not succeed: the service, the status (504: no answer in time, 503:
    unreachable) and the message to show."""

    def __init__(self, service: str, status: int, message: str) -> None:
        super().__init__(message)
        self.service = service
        self.status = status
        self.message = message

    @property
    def is_client_error(self) -> bool:
        """A 4xx: the API refused the request, and says why (shown at the form or row)."""
        return 400 <= self.status < 500

    @property
    def banner(self) -> str:
        """The text of a banner for a failed or unreachable service."""
        if self.is_client_error:
            return self.message
        return f"The {self.service} is unavailable: {self.message}"


class SessionExpired(Exception):
    """The API answered 401: the session's token is no longer valid."""


def _service(service_type: str) -> tuple[str, ErrorStyle]:
    return SERVICES.get(service_type, (f"{service_type} service", ErrorStyle.PLAIN))


def _unsafe(path: str) -> bool:
    """Whether ``path`` says more than a path: a query, a fragment, a dot segment or a
    control character (all from an id put into it)."""
    return (any(c in path for c in "?#") or any(ord(c) < 32 or ord(c) == 127 for c in path)
            or any(segment in (".", "..") for segment in path.split("/")))


def _error(response: httpx.Response, service_type: str) -> ApiError:
    name, style = _service(service_type)
    status = response.status_code
    if status >= 500:  # the service's own trouble: its message is not for the user
        return ApiError(name, status, f"it answered {status}.")
    try:
        message = error_message(style, response.json())
    except ValueError:
        message = None
    return ApiError(name, status, message or f"The {name} refused the request ({status}).")


class Api:
    """The public APIs as one session's user reaches them."""

    def __init__(self, http: httpx.AsyncClient, session: Session, timeout: float) -> None:
        self.http = http
        self.session = session
        self.timeout = timeout

    def url(self, service_type: str, path: str) -> str:
        endpoint = catalog_endpoint(self.session.catalog, service_type)
        if endpoint is None:
            raise ApiError(_service(service_type)[0], 503, "it is not in the catalog.")
        return f"{endpoint}{path}"

    def offers(self, service_type: str) -> bool:
        """Whether the session's catalog has ``service_type`` (a cloud without it: the
        page leaves out what it would show, rather than a banner)."""
        return catalog_endpoint(self.session.catalog, service_type) is not None

    async def request(self, service_type: str, method: str, path: str, *,
                      json: Any = None, params: Mapping[str, Any] | None = None,
                      headers: Mapping[str, str] | None = None,
                      content: AsyncIterator[bytes] | None = None,
                      bound: float | None = None) -> httpx.Response:
        """Send one call; a 2xx/3xx answer, else ``ApiError``/``SessionExpired``.
        ``content``: a body streamed as it is produced (an upload passed on); ``bound``:
        this call's timeout instead of the session's."""
        sent = {"X-Auth-Token": self.session.token, **(headers or {})}
        if service_type == "compute":
            sent["OpenStack-API-Version"] = f"compute {COMPUTE_VERSION}"
        name = _service(service_type)[0]
        if _unsafe(path):
            raise ApiError(name, 404, f"The {name} has no such resource.")
        url = self.url(service_type, path)
        seconds = self.timeout if bound is None else bound
        try:
            response = await self.http.request(method, url, json=json, params=params,
                                                content=content, headers=sent,
                                                timeout=seconds)
        except httpx.TimeoutException as exc:
            raise ApiError(name, 504, f"no answer in {seconds:g} s.") from exc
        except httpx.HTTPError as exc:
            raise ApiError(name, 503, "it is unreachable.") from exc
        if response.status_code == 401:
            raise SessionExpired()
        if response.status_code >= 400:
            raise _error(response, service_type)
        return response

    async def get(self, service_type: str, path: str,
                  params: Mapping[str, Any] | None = None) -> Any:
        return (await self.request(service_type, "GET", path, params=params)).json()

    async def post(self, service_type: str, path: str, body: Any) -> Any:
        response = await self.request(service_type, "POST", path, json=body)
        return response.json() if response.content else None


async def gather(*calls: Awaitable[Any]) -> list[Any]:
    """One parallel round: each call's result, or the ``ApiError`` it raised. A
    ``SessionExpired`` (or any other exception) propagates."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, ApiError):
            raise result
    return list(results)
