"""The metadata-api unit: serves an instance's metadata to the proxies that forward guests.

A proxy (in the network's DHCP namespace) adds ``X-Instance-ID``, ``X-Tenant-ID`` and
``X-Instance-ID-Signature`` (hex HMAC-SHA256 of the instance id keyed with the shared
secret). Each must be there exactly once (else 400); the signature must match, compared in
constant time (else 403); the instance must exist, not be deleted and belong to that
project (else 404). ``GET /`` is answered before any of that. Answers are plain text
listings or JSON documents, as Nova's metadata service gives them
(``stratus.compute.metadata.content``).

It runs behind the APIs' request middleware: a request id, a log line and metrics per
request, and a span (seed step 53) that joins the proxy's trace and names the instance.
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from stratus.compute import passwords
from stratus.compute.metadata import content
from stratus.compute.metadata.content import Document, InstanceData
from stratus.compute.metadata.source import MetadataError, MetadataSource
from stratus.core.context import set_instance
from stratus.core.db import Database
from stratus.core.exceptions import Conflict
from stratus.core.web.errors import ErrorStyle
from stratus.core.web.middleware import RequestMiddleware

LOG = logging.getLogger(__name__)

IDENTITY_HEADERS = ("X-Instance-ID", "X-Tenant-ID", "X-Instance-ID-Signature")


def sign(secret: str, instance_id: str) -> str:
    """The signature a proxy sends for ``instance_id``."""
    return hmac.new(secret.encode(), instance_id.encode(), hashlib.sha256).hexdigest()


def _identity(request: Request, secret: str) -> tuple[str, str]:
    values: dict[str, str] = {}
    for name in IDENTITY_HEADERS:
        found = request.headers.getlist(name)
        if not found:
            raise MetadataError(400, f"The request lacks the {name} header.")
        if len(found) > 1:
            raise MetadataError(400, f"The request has the {name} header more than once.")
        values[name] = found[0]
    instance_id, signature = values["X-Instance-ID"], values["X-Instance-ID-Signature"]
    if not signature or not hmac.compare_digest(sign(secret, instance_id).encode(),
                                                signature.encode()):
        LOG.warning("metadata request for instance %s with an invalid signature (from %s)",
                    instance_id, request.headers.get("X-Forwarded-For", "?"))
        raise MetadataError(403, "Invalid proxy request signature.")
    return instance_id, values["X-Tenant-ID"]


def _text(lines: tuple[str, ...] | list[str]) -> Document:
    return Document("\n".join(lines).encode(), content.TEXT_TYPE)


async def _password(source: MetadataSource, data: InstanceData,
                    request: Request) -> Document:
    """GET: the stored password (empty if none); POST: store it, once (else 409)."""
    if request.method in ("GET", "HEAD"):
        return _text([await source.password(data.uuid)])
    if request.method != "POST":
        raise MetadataError(400, f"{request.method} is not allowed on the password.")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > passwords.MAX_LENGTH:
            raise MetadataError(400, f"The password is longer than {passwords.MAX_LENGTH} "
                                     "bytes.")
    try:
        await source.set_password(data.uuid, body.decode())
    except UnicodeDecodeError as exc:
        raise MetadataError(400, "The password is not UTF-8 text.") from exc
    except Conflict as exc:
        raise MetadataError(409, exc.message) from exc
    return _text([])


async def _openstack(source: MetadataSource, data: InstanceData, parts: list[str],
                     request: Request) -> Document:
    method = request.method
    if not parts:
        return _text([*content.OPENSTACK_VERSIONS, "latest"])
    version = content.resolve_openstack(parts[0])
    if version is None:
        raise MetadataError(404, f"Unknown metadata version {parts[0]}.")
    if len(parts) == 1:
        return _text(list(content.openstack_tree(data, version)))
    if len(parts) == 2 and parts[1] == "password" \
            and "password" in content.openstack_tree(data, version):
        return await _password(source, data, request)
    if method not in ("GET", "HEAD"):
        raise MetadataError(405, f"{method} is not allowed here.")
    document = content.openstack_file(data, version, parts[1]) if len(parts) == 2 else None
    if document is None:
        raise MetadataError(404, "The resource could not be found.")
    return document


def _ec2(data: InstanceData, parts: list[str]) -> Document:
    if parts[0] != "latest" and parts[0] not in content.EC2_VERSIONS:
        raise MetadataError(404, f"Unknown metadata version {parts[0]}.")
    document = content.lookup(content.ec2_tree(data), parts[1:])
    if document is None:
        raise MetadataError(404, "The resource could not be found.")
    return document


def create_metadata_app(db: Database, secret: str, *,
                        dhcp_domain: str = "novalocal") -> ASGIApp:
    source = MetadataSource(db, dhcp_domain)

    async def handle(request: Request) -> Response:
        parts = [p for p in request.path_params.get("path", "").split("/") if p]
        try:
            if not parts:
                document = _text([*content.EC2_VERSIONS, "latest"])
            else:
                instance_id, project_id = _identity(request, secret)
                set_instance(instance_id)  # signed by the proxy: the request's span names it
                data = await source.instance(instance_id, project_id)
                if parts[0] == "openstack":
                    document = await _openstack(source, data, parts[1:], request)
                else:
                    if request.method not in ("GET", "HEAD"):
                        raise MetadataError(405, f"{request.method} is not allowed here.")
                    ec2 = parts[1:] if parts[0] == "ec2" else parts
                    if not ec2:
                        raise MetadataError(404, "The resource could not be found.")
                    document = _ec2(data, ec2)
        except MetadataError as exc:
            return Response(exc.message, status_code=exc.status, media_type=content.TEXT_TYPE)
        return Response(document.body, media_type=document.content_type)

    methods = ["GET", "HEAD", "POST", "PUT", "DELETE"]
    app = Starlette(routes=[Route("/", handle, methods=methods),
                            Route("/{path:path}", handle, methods=methods)])
    return RequestMiddleware(app, style=ErrorStyle.PLAIN, service="metadata")
