"""API microversions, as Nova and Cinder negotiate them.

A client asks with ``OpenStack-API-Version: compute 2.61`` (or the legacy
``X-OpenStack-Nova-API-Version: 2.61``); no header means the minimum, ``latest`` the maximum,
a version outside the range a 406 and a malformed one a 400. Every response names the
version used (in both headers) and varies on them, errors included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache, total_ordering

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stratus.core.web.errors import ErrorStyle

_VERSION_RE = re.compile(r"^([1-9]\d*)\.([1-9]\d*|0)$")


@total_ordering
@dataclass(frozen=True)
class APIVersion:
    major: int
    minor: int

    @classmethod
    def parse(cls, text: str) -> APIVersion:
        match = _VERSION_RE.match(text.strip())
        if match is None:
            raise ValueError(f"Invalid API version {text!r}: it must be X.Y or 'latest'.")
        return cls(int(match.group(1)), int(match.group(2)))

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, APIVersion):
            return NotImplemented
        return (self.major, self.minor) < (other.major, other.minor)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    def at_least(self, text: str) -> bool:
        return self >= _parsed(text)


@lru_cache(maxsize=256)
def _parsed(text: str) -> APIVersion:
    """``APIVersion.parse`` of the code's own version literals (``at_least("2.47")``): a
    server view asks about a dozen per server, so a page of 200 would parse thousands."""
    return APIVersion.parse(text)


@dataclass(frozen=True)
class VersionRange:
    service: str  # "compute", "volume"
    minimum: APIVersion
    maximum: APIVersion
    #: Legacy header Nova still reads and writes (None for services that never had one).
    legacy_header: str | None = None

    def select(self, requested: str | None) -> APIVersion:
        """The version to serve; ``ValueError`` (400) or ``LookupError`` (406) otherwise."""
        if requested is None:
            return self.minimum
        if requested.strip().lower() == "latest":
            return self.maximum
        version = APIVersion.parse(requested)
        if not self.minimum <= version <= self.maximum:
            raise LookupError(f"Version {version} is not supported by the API. Minimum is "
                              f"{self.minimum} and maximum is {self.maximum}.")
        return version


def requested_header(headers: dict[bytes, bytes], versions: VersionRange) -> str | None:
    """The version the client asked for: the standard header wins over the legacy one."""
    standard = headers.get(b"openstack-api-version")
    if standard is not None:
        for item in standard.decode("latin-1").split(","):
            service, _, value = item.strip().partition(" ")
            if service.lower() == versions.service and value.strip():
                return value.strip()
    if versions.legacy_header:
        legacy = headers.get(versions.legacy_header.lower().encode())
        if legacy is not None:
            return legacy.decode("latin-1")
    return None


class MicroversionMiddleware:
    """Negotiates the version of each request; handlers read ``api_version(request)``."""

    def __init__(self, app: ASGIApp, *, versions: VersionRange, style: ErrorStyle) -> None:
        self.app = app
        self.versions = versions
        self.style = style

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        vary_on = ["OpenStack-API-Version"]
        if self.versions.legacy_header:
            vary_on.append(self.versions.legacy_header)
        try:
            version = self.versions.select(requested_header(headers, self.versions))
        except ValueError as exc:
            await self.style.response(400, str(exc))(scope, receive, send)
            return
        except LookupError as exc:
            supported = {"min_version": str(self.versions.minimum),
                         "max_version": str(self.versions.maximum)}
            await self.style.response(406, str(exc), extra=supported)(scope, receive, send)
            return
        scope.setdefault("state", {})["api_version"] = version
        extra = [(b"openstack-api-version", f"{self.versions.service} {version}".encode()),
                 (b"vary", ", ".join(vary_on).encode())]
        if self.versions.legacy_header:
            extra.append((self.versions.legacy_header.lower().encode(), str(version).encode()))

        async def send_with_version(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        await self.app(scope, receive, send_with_version)


async def api_version(request: Request) -> APIVersion:
    """The request's negotiated version (a dependency: ``async``, so FastAPI calls it on
    the event loop rather than through a worker thread)."""
    version: APIVersion = request.state.api_version
    return version
