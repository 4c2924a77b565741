"""Request bodies of the Identity v3 API's resources, validated strictly as Keystone's JSON
schemas do; the auth request's are in ``auth_schemas``.

Resources accept extra attributes (Keystone keeps them and returns them); the auth request
does not, so an unknown scope or a mistyped key is a 400.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from stratus.core.exceptions import Forbidden
from stratus.identity.api.auth_schemas import _Strict


class _Extensible(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    #: Text fields where a null the client sends is stored as "" (as Keystone does).
    text_fields: ClassVar[tuple[str, ...]] = ()
    #: Attributes accepted and not kept (Keystone's options and domain tags).
    dropped: ClassVar[tuple[str, ...]] = ()

    #: Created inside a domain (the caller's when none is given); policy sees that domain.
    in_domain: ClassVar[bool] = False

    def extras(self) -> dict[str, Any]:
        """Attributes beyond the declared fields: Keystone stores them and returns them."""
        return {k: v for k, v in (self.model_extra or {}).items() if k not in self.dropped}

    def create_args(self, domain_id: str | None) -> dict[str, Any]:
        """The repository's ``create_<name>`` keywords for this body (create bodies only)."""
        raise NotImplementedError(type(self).__name__)

    def changes(self) -> dict[str, Any]:
        """Fields the client actually sent, extras included, text nulls made ""."""
        changes = self.model_dump(exclude_unset=True)
        for key in self.text_fields:
            if key in changes:
                changes[key] = changes[key] or ""
        return changes


def _name(required: bool = True) -> Any:
    if required:
        return Field(min_length=1, max_length=255)
    return Field(default=None, min_length=1, max_length=255)


# Resources --------------------------------------------------------------------------------

class DomainCreate(_Extensible):
    dropped = ("tags", "options")
    name: str = _name()
    description: str | None = None
    enabled: bool = True
    id: str | None = None

    def create_args(self, domain_id: str | None) -> dict[str, Any]:
        return {"name": self.name, "description": self.description or "",
                "enabled": self.enabled, "domain_id": self.id, "extra": self.extras()}


class DomainUpdate(_Extensible):
    name: str | None = _name(required=False)
    description: str | None = None
    enabled: bool | None = None


class ProjectCreate(_Extensible):
    in_domain = True
    dropped = ("options",)
    name: str = Field(min_length=1, max_length=64)
    domain_id: str | None = None
    parent_id: str | None = None
    description: str | None = None
    enabled: bool = True
    is_domain: bool = False
    tags: list[str] = Field(default_factory=list)

    def create_args(self, domain_id: str | None) -> dict[str, Any]:
        if self.is_domain:
            raise Forbidden("Projects acting as domains are not supported; create a domain.")
        # Keystone shows a top-level project's domain as its parent: given back, it is none.
        parent_id = self.parent_id if self.parent_id and self.parent_id != domain_id else None
        return {"name": self.name, "domain_id": domain_id, "parent_id": parent_id,
                "description": self.description or "", "enabled": self.enabled,
                "tags": self.tags, "extra": self.extras()}


class ProjectUpdate(_Extensible):
    text_fields = ("description",)
    name: str | None = Field(default=None, min_length=1, max_length=64)
    description: str | None = None
    enabled: bool | None = None
    tags: list[str] | None = None


class UserCreate(_Extensible):
    in_domain = True
    dropped = ("options",)
    name: str = _name()
    domain_id: str | None = None
    password: str | None = Field(default=None, repr=False)
    enabled: bool = True
    default_project_id: str | None = None
    description: str | None = None

    def create_args(self, domain_id: str | None) -> dict[str, Any]:
        return {"name": self.name, "domain_id": domain_id, "password": self.password,
                "enabled": self.enabled, "default_project_id": self.default_project_id,
                "description": self.description or "", "extra": self.extras()}


class UserUpdate(_Extensible):
    text_fields = ("description",)
    name: str | None = _name(required=False)
    password: str | None = Field(default=None, repr=False)
    enabled: bool | None = None
    default_project_id: str | None = None
    description: str | None = None


class PasswordChange(_Strict):
    password: str = Field(repr=False)
    original_password: str = Field(repr=False)


class GroupCreate(_Extensible):
    in_domain = True
    name: str = Field(min_length=1, max_length=64)
    domain_id: str | None = None
    description: str | None = None

    def create_args(self, domain_id: str | None) -> dict[str, Any]:
        return {"name": self.name, "domain_id": domain_id,
                "description": self.description or "", "extra": self.extras()}


class GroupUpdate(_Extensible):
    text_fields = ("description",)
    name: str | None = Field(default=None, min_length=1, max_length=64)
    description: str | None = None


class RoleCreate(_Extensible):
    name: str = _name()
    domain_id: str | None = None
    description: str | None = None
    options: dict[str, Any] | None = None

    def create_args(self, domain_id: str | None) -> dict[str, Any]:
        return {"name": self.name, "description": self.description or "",
                "domain_id": self.domain_id, "extra": self.extras()}


class RoleUpdate(_Extensible):
    text_fields = ("description",)
    name: str | None = _name(required=False)
    description: str | None = None
    options: dict[str, Any] | None = None

    def changes(self) -> dict[str, Any]:
        """Role options are accepted and not kept."""
        changes = super().changes()
        changes.pop("options", None)
        return changes


class RegionCreate(_Extensible):
    id: str | None = None
    description: str | None = None
    parent_region_id: str | None = None

    def create_args(self, domain_id: str | None) -> dict[str, Any]:
        return {"region_id": self.id, "description": self.description or "",
                "parent_region_id": self.parent_region_id, "extra": self.extras()}


class RegionUpdate(_Extensible):
    text_fields = ("description",)
    description: str | None = None
    parent_region_id: str | None = None


class ServiceCreate(_Extensible):
    type: str = _name()
    name: str | None = None
    description: str | None = None
    enabled: bool = True

    def create_args(self, domain_id: str | None) -> dict[str, Any]:
        return {"type": self.type, "name": self.name or "", "description": self.description or "",
                "enabled": self.enabled, "extra": self.extras()}


class ServiceUpdate(_Extensible):
    text_fields = ("name", "description")
    type: str | None = _name(required=False)
    name: str | None = None
    description: str | None = None
    enabled: bool | None = None


class EndpointCreate(_Extensible):
    service_id: str
    interface: str
    url: str = Field(min_length=1)
    region_id: str | None = None
    region: str | None = None
    enabled: bool = True

    def create_args(self, domain_id: str | None) -> dict[str, Any]:
        return {"service_id": self.service_id, "interface": self.interface, "url": self.url,
                "region_id": self.region_id or self.region, "enabled": self.enabled,
                "extra": self.extras()}


class EndpointUpdate(_Extensible):
    service_id: str | None = None
    interface: str | None = None
    url: str | None = Field(default=None, min_length=1)
    region_id: str | None = None
    region: str | None = None
    enabled: bool | None = None

    def changes(self) -> dict[str, Any]:
        """The legacy ``region`` names the region when ``region_id`` is not given."""
        changes = super().changes()
        if "region" in changes:
            changes.setdefault("region_id", changes.pop("region"))
        return changes


class RoleRef(_Strict):
    id: str | None = None
    name: str | None = None
    domain_id: str | None = None


class AppCredentialCreate(_Strict):
    name: str = _name()
    description: str | None = None
    secret: str | None = Field(default=None, repr=False)
    expires_at: str | None = None
    roles: list[RoleRef] | None = None
    unrestricted: bool = False
    access_rules: list[dict[str, Any]] | None = None


# Envelopes: each request body wraps the resource under its singular name.

class DomainCreateBody(_Strict):
    domain: DomainCreate


class DomainUpdateBody(_Strict):
    domain: DomainUpdate


class ProjectCreateBody(_Strict):
    project: ProjectCreate


class ProjectUpdateBody(_Strict):
    project: ProjectUpdate


class UserCreateBody(_Strict):
    user: UserCreate


class UserUpdateBody(_Strict):
    user: UserUpdate


class PasswordChangeBody(_Strict):
    user: PasswordChange


class GroupCreateBody(_Strict):
    group: GroupCreate


class GroupUpdateBody(_Strict):
    group: GroupUpdate


class RoleCreateBody(_Strict):
    role: RoleCreate


class RoleUpdateBody(_Strict):
    role: RoleUpdate


class RegionCreateBody(_Strict):
    region: RegionCreate


class RegionUpdateBody(_Strict):
    region: RegionUpdate


class ServiceCreateBody(_Strict):
    service: ServiceCreate


class ServiceUpdateBody(_Strict):
    service: ServiceUpdate


class EndpointCreateBody(_Strict):
    endpoint: EndpointCreate


class EndpointUpdateBody(_Strict):
    endpoint: EndpointUpdate


class AppCredentialCreateBody(_Strict):
    application_credential: AppCredentialCreate
