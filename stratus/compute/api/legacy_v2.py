"""``/v2``: the Compute API as Nova serves it for v2.0 clients.

Nova lists v2.0 (``SUPPORTED``) beside v2.1 and serves it from the v2.1 code at the base
microversion; so does Stratus. A request under ``/v2/`` is the same request under ``/v2.1/``
with any microversion header dropped (v2.0 has none: it is 2.1's behaviour). ``/v2`` and
``/v2/`` themselves are v2.0's version document (``versions``). Unlike Nova's compatibility
mode, request bodies are checked as strictly as at v2.1.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

LEGACY = "/v2/"
CURRENT = "/v2.1/"
#: The request headers that ask for a microversion (lower-case, as ASGI carries them).
_VERSION_HEADERS = frozenset({b"openstack-api-version", b"x-openstack-nova-api-version"})


class LegacyV2Middleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            root = scope.get("root_path", "")
            path: str = scope["path"]
            route = path[len(root):] if path.startswith(root) else path
            if route.startswith(LEGACY) and route != LEGACY:
                new_path = root + CURRENT + route[len(LEGACY):]
                scope = {**scope, "path": new_path, "raw_path": new_path.encode(),
                         "headers": [(k, v) for k, v in scope.get("headers", [])
                                     if k.lower() not in _VERSION_HEADERS]}
        await self.app(scope, receive, send)
