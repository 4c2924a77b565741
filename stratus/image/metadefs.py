"""Glance's metadata definitions catalog, within one transaction: namespaces of property
definitions and the resource types (images, volumes, flavors, ...) they apply to.

Everyone reads the public namespaces and their project's private ones (a namespace the
caller cannot see is ``NotFound``); admins create, change and delete them (Glance's
defaults). A protected namespace cannot be deleted. Property names are stored as written;
a resource type association's ``prefix`` is put in front of them when a client asks for
the namespace as that resource type shows it (``resource_type``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from stratus.core.db import utcnow
from stratus.core.exceptions import Conflict, Forbidden, NotFound, ValidationError
from stratus.core.policy import Caller
from stratus.image.models import MetadefNamespace

NAMESPACE_VISIBILITIES = ("public", "private")
PROPERTY_TYPES = ("array", "boolean", "integer", "number", "object", "string")
#: The keys a property definition may have (the property part of the namespace schema).
PROPERTY_KEYS = frozenset({
    "name", "title", "description", "type", "default", "enum", "items", "operators",
    "readonly", "required", "pattern", "minimum", "maximum", "minLength", "maxLength",
    "minItems", "maxItems", "uniqueItems", "additionalItems"})
ASSOCIATION_KEYS = frozenset({"name", "prefix", "properties_target"})
SORT_KEYS = ("created_at", "updated_at", "namespace", "display_name")
#: What a create or update may set; everything else in the body is refused.
WRITABLE = frozenset({"namespace", "display_name", "description", "visibility", "protected",
                      "owner", "resource_type_associations", "properties", "objects", "tags"})
READ_ONLY = frozenset({"created_at", "updated_at", "self", "schema"})


def timestamp(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class NamespaceQuery:
    """``GET /v2/metadefs/namespaces``'s parameters, already checked by the API."""

    limit: int
    marker: str | None = None
    sort_key: str = "created_at"
    sort_dir: str = "desc"
    visibility: str | None = None
    resource_types: tuple[str, ...] = ()


class Metadefs:
    """The metadata definitions catalog, within one database transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def _visible(self, caller: Caller) -> Any:
        if caller.is_admin:
            return None
        return or_(MetadefNamespace.visibility == "public",
                   MetadefNamespace.owner == (caller.project_id or ""))

    async def list_page(self, caller: Caller,
                        query: NamespaceQuery) -> tuple[list[MetadefNamespace], bool]:
        """One page of the namespaces the caller sees, and whether there are more."""
        caller.authorize("get_metadef_namespaces")
        column = getattr(MetadefNamespace, query.sort_key)
        order = column.asc() if query.sort_dir == "asc" else column.desc()
        tie = (MetadefNamespace.namespace.asc() if query.sort_dir == "asc"
               else MetadefNamespace.namespace.desc())
        stmt = select(MetadefNamespace).order_by(order, tie)
        visible = self._visible(caller)
        if visible is not None:
            stmt = stmt.where(visible)
        if query.visibility is not None:
            stmt = stmt.where(MetadefNamespace.visibility == query.visibility)
        rows = list((await self.session.scalars(stmt)).all())
        # The associations are a JSON document per namespace; the catalog is small (tens of
        # namespaces), so the resource type filter and the marker are applied here.
        if query.resource_types:
            wanted = set(query.resource_types)
            rows = [r for r in rows
                    if wanted & {a.get("name") for a in r.resource_type_associations}]
        if query.marker is not None:
            names = [r.namespace for r in rows]
            if query.marker not in names:
                raise ValidationError(f"Invalid marker {query.marker!r}: no such namespace "
                                      "in this listing.")
            rows = rows[names.index(query.marker) + 1:]
        return rows[:query.limit], len(rows) > query.limit

    async def get(self, caller: Caller, namespace: str) -> MetadefNamespace:
        caller.authorize("get_metadef_namespace")
        stmt = select(MetadefNamespace).where(MetadefNamespace.namespace == namespace)
        visible = self._visible(caller)
        if visible is not None:
            stmt = stmt.where(visible)
        found = await self.session.scalar(stmt)
        if found is None:
            raise NotFound(f"Metadata definition namespace={namespace} was not found.")
        return found

    async def create(self, caller: Caller, body: dict[str, Any]) -> MetadefNamespace:
        caller.authorize("add_metadef_namespace")
        values = _checked(body, creating=True)
        if await self._exists(values["namespace"]):
            raise Conflict(f"Metadata definition namespace={values['namespace']} already "
                           "exists.")
        now = utcnow()
        row = MetadefNamespace(
            id=str(uuid.uuid4()), namespace=values["namespace"],
            display_name=values.get("display_name"), description=values.get("description"),
            visibility=values.get("visibility", "private"),
            protected=values.get("protected", False),
            owner=values.get("owner", caller.project_id),
            resource_type_associations=_stamped(values.get("resource_type_associations", []),
                                                now),
            properties=values.get("properties", {}), objects=values.get("objects", []),
            tags=values.get("tags", []), created_at=now, updated_at=now)
        self.session.add(row)
        await self.session.flush()
        return row

    async def update(self, caller: Caller, namespace: str,
                     body: dict[str, Any]) -> MetadefNamespace:
        """Glance's PUT: the body's attributes replace the namespace's (its name too)."""
        row = await self.get(caller, namespace)
        caller.authorize("modify_metadef_namespace")
        values = _checked(body, creating=False)
        renamed = values.get("namespace", row.namespace)
        if renamed != row.namespace and await self._exists(renamed):
            raise Conflict(f"Metadata definition namespace={renamed} already exists.")
        now = utcnow()
        row.namespace = renamed
        for key in ("display_name", "description", "visibility", "protected", "owner"):
            if key in values:
                setattr(row, key, values[key])
        if "resource_type_associations" in values:
            row.resource_type_associations = _stamped(values["resource_type_associations"],
                                                      now)
        for key in ("properties", "objects", "tags"):
            if key in values:
                setattr(row, key, values[key])
        row.updated_at = now
        await self.session.flush()
        return row

    async def delete(self, caller: Caller, namespace: str) -> None:
        row = await self.get(caller, namespace)
        caller.authorize("delete_metadef_namespace")
        if row.protected:
            raise Forbidden(f"Namespace {namespace} is protected and cannot be deleted.")
        await self.session.delete(row)
        await self.session.flush()

    async def resource_types(self, caller: Caller) -> list[dict[str, Any]]:
        """The resource types the visible namespaces are associated with, each once (when
        first associated)."""
        caller.authorize("list_metadef_resource_types")
        stmt = select(MetadefNamespace)
        visible = self._visible(caller)
        if visible is not None:
            stmt = stmt.where(visible)
        seen: dict[str, dict[str, Any]] = {}
        for row in (await self.session.scalars(stmt)).all():
            for assoc in row.resource_type_associations:
                name = assoc["name"]
                if name not in seen or assoc["created_at"] < seen[name]["created_at"]:
                    seen[name] = {"name": name, "created_at": assoc["created_at"],
                                  "updated_at": assoc.get("updated_at", assoc["created_at"])}
        return sorted(seen.values(), key=lambda r: r["name"])

    async def _exists(self, namespace: str) -> bool:
        return await self.session.scalar(select(MetadefNamespace.id).where(
            MetadefNamespace.namespace == namespace)) is not None


def prefixed(row: MetadefNamespace, resource_type: str | None) -> dict[str, Any]:
    """The namespace's properties as ``resource_type`` names them (its prefix in front)."""
    prefix = ""
    if resource_type is not None:
        for assoc in row.resource_type_associations:
            if assoc.get("name") == resource_type:
                prefix = assoc.get("prefix") or ""
    return {f"{prefix}{name}": definition for name, definition in row.properties.items()}


def _stamped(associations: list[dict[str, Any]], now: dt.datetime) -> list[dict[str, Any]]:
    stamp = timestamp(now)
    return [{**a, "created_at": stamp, "updated_at": stamp} for a in associations]


def _text(body: dict[str, Any], key: str, limit: int, *, required: bool = False) -> None:
    value = body.get(key)
    if value is None and not required:
        return  # unset
    if not isinstance(value, str) or (required and not value.strip()) or len(value) > limit:
        raise ValidationError(f"Invalid {key}: a string of at most {limit} characters"
                              f"{' (required)' if required else ''}.")


def _checked(body: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    """The body's values, checked against the namespace schema (``ValidationError``)."""
    if not isinstance(body, dict):
        raise ValidationError("The request body must be a JSON object of namespace "
                              "attributes.")
    body = {k: v for k, v in body.items() if k not in READ_ONLY}
    unknown = sorted(set(body) - WRITABLE)
    if unknown:
        raise ValidationError(f"Additional properties are not allowed ({', '.join(unknown)} "
                              "unexpected).")
    if creating or "namespace" in body:
        _text(body, "namespace", 80, required=True)
    if "display_name" in body:
        _text(body, "display_name", 80)
    if "description" in body:
        _text(body, "description", 500)
    if "owner" in body:
        _text(body, "owner", 64)
    if "visibility" in body and body["visibility"] not in NAMESPACE_VISIBILITIES:
        raise ValidationError(f"Invalid visibility {body['visibility']!r}: one of "
                              f"{', '.join(NAMESPACE_VISIBILITIES)}.")
    if "protected" in body and not isinstance(body["protected"], bool):
        raise ValidationError("Invalid protected: true or false.")
    associations = body.get("resource_type_associations", [])
    if not isinstance(associations, list) or not all(
            isinstance(a, dict) and isinstance(a.get("name"), str) and a["name"]
            and set(a) <= ASSOCIATION_KEYS
            and all(isinstance(a.get(k, ""), str) for k in ("prefix", "properties_target"))
            for a in associations):
        raise ValidationError("Invalid resource_type_associations: a list of objects with a "
                              "name and optionally a prefix and properties_target.")
    properties = body.get("properties", {})
    if not isinstance(properties, dict):
        raise ValidationError("Invalid properties: an object of property definitions.")
    for name, definition in properties.items():
        _check_property(name, definition)
    objects = body.get("objects", [])
    if not isinstance(objects, list) or not all(
            isinstance(o, dict) and isinstance(o.get("name"), str) for o in objects):
        raise ValidationError("Invalid objects: a list of objects, each with a name.")
    tags = body.get("tags", [])
    if not isinstance(tags, list) or not all(
            isinstance(t, dict) and isinstance(t.get("name"), str) and set(t) == {"name"}
            for t in tags):
        raise ValidationError("Invalid tags: a list of objects, each with only a name.")
    return body


def _check_property(name: str, definition: Any) -> None:
    if not name or len(name) > 255:
        raise ValidationError(f"Invalid property name {name!r}: 1 to 255 characters.")
    if not isinstance(definition, dict):
        raise ValidationError(f"Invalid property {name}: an object.")
    unknown = sorted(set(definition) - PROPERTY_KEYS)
    if unknown:
        raise ValidationError(f"Invalid property {name}: unknown keys {', '.join(unknown)}.")
    if not isinstance(definition.get("title"), str):
        raise ValidationError(f"Invalid property {name}: 'title' (a string) is required.")
    if definition.get("type") not in PROPERTY_TYPES:
        raise ValidationError(f"Invalid property {name}: 'type' is one of "
                              f"{', '.join(PROPERTY_TYPES)}.")
    if "enum" in definition and not isinstance(definition["enum"], list):
        raise ValidationError(f"Invalid property {name}: 'enum' is a list.")


__all__ = ["Metadefs", "NamespaceQuery", "prefixed", "timestamp"]
