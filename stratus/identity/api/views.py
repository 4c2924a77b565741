"""JSON views of identity's resources, in Keystone v3's shapes. Secrets never appear here.

Each takes a repository's row (the parameter's name says which); rows are typed ``Any`` so
that ``api/`` holds no import of the ORM models.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from stratus.identity.authentication import format_time


def _links(base: str, path: str) -> dict[str, str]:
    return {"self": f"{base}/v3/{path}"}


def collection(key: str, items: list[dict[str, Any]], base: str, path: str) -> dict[str, Any]:
    return {key: items, "links": {"self": f"{base}/v3/{path}", "previous": None, "next": None}}


def collection_of(key: str, view: Callable[[Any, str], dict[str, Any]], rows: Iterable[Any],
                  base: str, path: str) -> dict[str, Any]:
    """``collection`` of the rows, each shown with ``view``."""
    return collection(key, [view(row, base) for row in rows], base, path)


def domain(d: Any, base: str) -> dict[str, Any]:
    return {**(d.extra or {}), "id": d.id, "name": d.name, "description": d.description,
            "enabled": d.enabled, "tags": [], "options": {},
            "links": _links(base, f"domains/{d.id}")}


def project(p: Any, base: str) -> dict[str, Any]:
    return {**(p.extra or {}), "id": p.id, "name": p.name, "domain_id": p.domain_id,
            "parent_id": p.parent_id or p.domain_id, "description": p.description,
            "enabled": p.enabled, "is_domain": False, "tags": list(p.tags or []),
            "options": {}, "links": _links(base, f"projects/{p.id}")}


def user(u: Any, base: str) -> dict[str, Any]:
    body = {**(u.extra or {}), "id": u.id, "name": u.name, "domain_id": u.domain_id,
            "enabled": u.enabled, "password_expires_at": None, "options": {},
            "links": _links(base, f"users/{u.id}")}
    if u.default_project_id:
        body["default_project_id"] = u.default_project_id
    if u.description:
        body["description"] = u.description
    return body


def group(g: Any, base: str) -> dict[str, Any]:
    return {**(g.extra or {}), "id": g.id, "name": g.name, "domain_id": g.domain_id,
            "description": g.description, "links": _links(base, f"groups/{g.id}")}


def role(r: Any, base: str) -> dict[str, Any]:
    return {**(r.extra or {}), "id": r.id, "name": r.name, "domain_id": r.domain_id or None,
            "description": r.description or None, "options": {},
            "links": _links(base, f"roles/{r.id}")}


def region(r: Any, base: str) -> dict[str, Any]:
    return {**(r.extra or {}), "id": r.id, "description": r.description,
            "parent_region_id": r.parent_region_id, "links": _links(base, f"regions/{r.id}")}


def service(s: Any, base: str) -> dict[str, Any]:
    return {**(s.extra or {}), "id": s.id, "type": s.type, "name": s.name,
            "description": s.description, "enabled": s.enabled,
            "links": _links(base, f"services/{s.id}")}


def endpoint(e: Any, base: str) -> dict[str, Any]:
    return {**(e.extra or {}), "id": e.id, "service_id": e.service_id,
            "interface": e.interface, "region_id": e.region_id, "region": e.region_id,
            "url": e.url, "enabled": e.enabled, "links": _links(base, f"endpoints/{e.id}")}


def application_credential(c: Any, roles: list[Any], base: str,
                           secret: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": c.id, "name": c.name, "description": c.description or None,
        "user_id": c.user_id, "project_id": c.project_id,
        "expires_at": format_time(c.expires_at) if c.expires_at else None,
        "unrestricted": c.unrestricted, "access_rules": [],
        "roles": [{"id": r.id, "name": r.name, "domain_id": r.domain_id or None} for r in roles],
        "links": _links(base, f"users/{c.user_id}/application_credentials/{c.id}"),
    }
    if secret is not None:
        body["secret"] = secret
    return body
