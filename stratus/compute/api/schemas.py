"""Request bodies of the Compute API. Nova's schemas forbid unknown keys; so do these."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=True)


FLAVOR_ID_PATTERN = r"^[a-zA-Z0-9._-]([a-zA-Z0-9. _-]*[a-zA-Z0-9._-])?$"
KEYPAIR_NAME_PATTERN = r"^[a-zA-Z0-9 _-]+$"
#: From 2.92 names may also hold '@' and '.'.
KEYPAIR_NAME_PATTERN_292 = r"^[a-zA-Z0-9 _@.-]+$"


class FlavorCreate(_Strict):
    name: str = Field(min_length=1, max_length=255)
    ram: int = Field(ge=1)
    vcpus: int = Field(ge=1)
    disk: int = Field(ge=0)
    id: str | None = Field(default=None, min_length=1, max_length=255,
                           pattern=FLAVOR_ID_PATTERN)
    swap: int = Field(default=0, ge=0)
    ephemeral: int = Field(default=0, ge=0, alias="OS-FLV-EXT-DATA:ephemeral")
    rxtx_factor: float = Field(default=1.0, gt=0)
    is_public: bool = Field(default=True, alias="os-flavor-access:is_public")
    description: str | None = Field(default=None, max_length=65535)


class FlavorCreateBody(_Strict):
    flavor: FlavorCreate


class FlavorUpdate(_Strict):
    description: str | None = Field(max_length=65535)


class FlavorUpdateBody(_Strict):
    flavor: FlavorUpdate


class ExtraSpecsBody(_Strict):
    extra_specs: dict[str, str] = Field(min_length=1)


class TenantAccess(_Strict):
    tenant: str = Field(min_length=1, max_length=255)


class FlavorActionBody(_Strict):
    add_tenant_access: TenantAccess | None = Field(default=None, alias="addTenantAccess")
    remove_tenant_access: TenantAccess | None = Field(default=None,
                                                      alias="removeTenantAccess")


class KeyPairCreate(_Strict):
    name: str = Field(min_length=1, max_length=255)
    public_key: str | None = None
    type: str | None = None
    user_id: str | None = None


class KeyPairCreateBody(_Strict):
    keypair: KeyPairCreate
