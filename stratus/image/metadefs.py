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

    # A namespace's parts (properties, objects, tags, resource type associations) are JSON
    # documents of its row: each change assigns a new document (so the ORM sees it) and
    # touches the namespace's updated_at.

    async def _writable(self, caller: Caller, namespace: str, rule: str) -> MetadefNamespace:
        row = await self.get(caller, namespace)
        caller.authorize(rule)
        return row

    async def add_property(self, caller: Caller, namespace: str,
                           body: Any) -> tuple[str, dict[str, Any]]:
        row = await self._writable(caller, namespace, "add_metadef_property")
        name, definition = _property_body(body)
        if name in row.properties:
            raise Conflict(f"A metadata definition property with name={name} already "
                           f"exists in namespace={namespace}.")
        row.properties = {**row.properties, name: definition}
        await self._touch(row)
        return name, definition

    async def update_property(self, caller: Caller, namespace: str, name: str,
                              body: Any) -> tuple[str, dict[str, Any]]:
        row = await self._writable(caller, namespace, "modify_metadef_property")
        if name not in row.properties:
            raise _no_such("property", name, namespace)
        renamed, definition = _property_body(body)
        if renamed != name and renamed in row.properties:
            raise Conflict(f"A metadata definition property with name={renamed} already "
                           f"exists in namespace={namespace}.")
        kept = {k: v for k, v in row.properties.items() if k != name}
        row.properties = {**kept, renamed: definition}
        await self._touch(row)
        return renamed, definition

    async def delete_property(self, caller: Caller, namespace: str, name: str) -> None:
        row = await self._writable(caller, namespace, "remove_metadef_property")
        if name not in row.properties:
            raise _no_such("property", name, namespace)
        row.properties = {k: v for k, v in row.properties.items() if k != name}
        await self._touch(row)

    async def add_object(self, caller: Caller, namespace: str, body: Any) -> dict[str, Any]:
        row = await self._writable(caller, namespace, "add_metadef_object")
        found = _object_body(body)
        if any(o["name"] == found["name"] for o in row.objects):
            raise Conflict(f"A metadata definition object with name={found['name']} "
                           f"already exists in namespace={namespace}.")
        stamp = timestamp(utcnow())
        made = {**found, "created_at": stamp, "updated_at": stamp}
        row.objects = [*row.objects, made]
        await self._touch(row)
        return made

    def get_object(self, row: MetadefNamespace, name: str) -> dict[str, Any]:
        for found in row.objects:
            if found["name"] == name:
                return dict(found)
        raise _no_such("object", name, row.namespace)

    async def update_object(self, caller: Caller, namespace: str, name: str,
                            body: Any) -> dict[str, Any]:
        row = await self._writable(caller, namespace, "modify_metadef_object")
        old = self.get_object(row, name)
        found = _object_body(body)
        if found["name"] != name and any(o["name"] == found["name"] for o in row.objects):
            raise Conflict(f"A metadata definition object with name={found['name']} "
                           f"already exists in namespace={namespace}.")
        changed = {**found, "created_at": old["created_at"],
                   "updated_at": timestamp(utcnow())}
        row.objects = [changed if o["name"] == name else o for o in row.objects]
        await self._touch(row)
        return changed

    async def delete_object(self, caller: Caller, namespace: str, name: str) -> None:
        row = await self._writable(caller, namespace, "delete_metadef_object")
        self.get_object(row, name)
        row.objects = [o for o in row.objects if o["name"] != name]
        await self._touch(row)

    async def add_tags(self, caller: Caller, namespace: str, names: list[str], *,
                       append: bool) -> list[dict[str, Any]]:
        """Glance's ``POST .../tags``: the namespace's tags become ``names`` (or gain them,
        with ``X-Openstack-Append``); a name twice is a conflict."""
        row = await self._writable(caller, namespace, "add_metadef_tags")
        kept = list(row.tags) if append else []
        taken = {t["name"] for t in kept}
        stamp = timestamp(utcnow())
        made: list[dict[str, Any]] = []
        for name in names:
            _check_tag_name(name)
            if name in taken:
                raise Conflict(f"A metadata tag with name={name} already exists in "
                               f"namespace={namespace}.")
            taken.add(name)
            made.append({"name": name, "created_at": stamp, "updated_at": stamp})
        row.tags = [*kept, *made]
        await self._touch(row)
        return made

    async def add_tag(self, caller: Caller, namespace: str, name: str) -> dict[str, Any]:
        row = await self._writable(caller, namespace, "add_metadef_tag")
        _check_tag_name(name)
        if any(t["name"] == name for t in row.tags):
            raise Conflict(f"A metadata tag with name={name} already exists in "
                           f"namespace={namespace}.")
        stamp = timestamp(utcnow())
        made = {"name": name, "created_at": stamp, "updated_at": stamp}
        row.tags = [*row.tags, made]
        await self._touch(row)
        return made

    def get_tag(self, row: MetadefNamespace, name: str) -> dict[str, Any]:
        for found in row.tags:
            if found["name"] == name:
                return dict(found)
        raise _no_such("tag", name, row.namespace)

    async def rename_tag(self, caller: Caller, namespace: str, name: str,
                         body: Any) -> dict[str, Any]:
        row = await self._writable(caller, namespace, "modify_metadef_tag")
        old = self.get_tag(row, name)
        if not isinstance(body, dict) or set(body) - {"name", "created_at", "updated_at"}:
            raise ValidationError("The request body must be an object with the tag's name.")
        renamed = body.get("name")
        _check_tag_name(renamed)
        if renamed != name and any(t["name"] == renamed for t in row.tags):
            raise Conflict(f"A metadata tag with name={renamed} already exists in "
                           f"namespace={namespace}.")
        changed = {"name": renamed, "created_at": old["created_at"],
                   "updated_at": timestamp(utcnow())}
        row.tags = [changed if t["name"] == name else t for t in row.tags]
        await self._touch(row)
        return changed

    async def delete_tag(self, caller: Caller, namespace: str, name: str) -> None:
        row = await self._writable(caller, namespace, "delete_metadef_tag")
        self.get_tag(row, name)
        row.tags = [t for t in row.tags if t["name"] != name]
        await self._touch(row)

    async def delete_tags(self, caller: Caller, namespace: str) -> None:
        row = await self._writable(caller, namespace, "delete_metadef_tags")
        row.tags = []
        await self._touch(row)

    async def associate(self, caller: Caller, namespace: str, body: Any) -> dict[str, Any]:
        row = await self._writable(caller, namespace, "add_metadef_resource_type_association")
        _check_associations([body])
        if any(a["name"] == body["name"] for a in row.resource_type_associations):
            raise Conflict(f"The metadata definition resource-type association of "
                           f"resource-type={body['name']} to namespace={namespace} already "
                           "exists.")
        (made,) = _stamped([body], utcnow())
        row.resource_type_associations = [*row.resource_type_associations, made]
        await self._touch(row)
        return made

    async def dissociate(self, caller: Caller, namespace: str, resource_type: str) -> None:
        row = await self._writable(caller, namespace,
                                   "remove_metadef_resource_type_association")
        if not any(a["name"] == resource_type for a in row.resource_type_associations):
            raise NotFound(f"The metadata definition resource-type association of "
                           f"resource-type={resource_type} to namespace={namespace} was not "
                           "found.")
        row.resource_type_associations = [a for a in row.resource_type_associations
                                          if a["name"] != resource_type]
        await self._touch(row)

    async def _touch(self, row: MetadefNamespace) -> None:
        row.updated_at = utcnow()
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
    _check_associations(body.get("resource_type_associations", []))
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
    stamp = timestamp(utcnow())
    if "objects" in body:
        body["objects"] = [{**_object_body(o), "created_at": stamp, "updated_at": stamp}
                           for o in objects]
    if "tags" in body:
        body["tags"] = [{"name": t["name"], "created_at": stamp, "updated_at": stamp}
                        for t in tags]
    return body


def _check_associations(associations: Any) -> None:
    if not isinstance(associations, list) or not all(
            isinstance(a, dict) and isinstance(a.get("name"), str) and a["name"]
            and set(a) - {"created_at", "updated_at"} <= ASSOCIATION_KEYS
            and all(isinstance(a.get(k, ""), str) for k in ("prefix", "properties_target"))
            for a in associations):
        raise ValidationError("Invalid resource type association: an object with a name "
                              "and optionally a prefix and properties_target.")


def _property_body(body: Any) -> tuple[str, dict[str, Any]]:
    """A property create or update body: its name and its definition (without the name)."""
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        raise ValidationError("The request body must be a property definition with a name.")
    name = body["name"]
    _check_property(name, body)
    return name, {k: v for k, v in body.items() if k != "name"}


def _object_body(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValidationError("The request body must be an object definition.")
    body = {k: v for k, v in body.items() if k not in READ_ONLY | {"created_at",
                                                                  "updated_at"}}
    unknown = sorted(set(body) - {"name", "description", "properties", "required"})
    if unknown:
        raise ValidationError(f"Invalid object: unknown keys {', '.join(unknown)}.")
    name = body.get("name")
    if not isinstance(name, str) or not name or len(name) > 80:
        raise ValidationError("Invalid object: a name of 1 to 80 characters is required.")
    if not isinstance(body.get("description", ""), str):
        raise ValidationError("Invalid object: the description is a string.")
    required = body.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise ValidationError("Invalid object: 'required' is a list of property names.")
    properties = body.get("properties", {})
    if not isinstance(properties, dict):
        raise ValidationError("Invalid object: 'properties' is an object of definitions.")
    for key, definition in properties.items():
        _check_property(key, definition)
    return {"name": name, "description": body.get("description"),
            "properties": properties, "required": required}


def _check_tag_name(name: Any) -> None:
    if not isinstance(name, str) or not name or len(name) > 255:
        raise ValidationError("Invalid tag name: 1 to 255 characters.")


def _no_such(kind: str, name: str, namespace: str) -> NotFound:
    return NotFound(f"Metadata definition {kind}={name} in namespace={namespace} was not "
                    "found.")


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
