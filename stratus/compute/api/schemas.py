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


class NetworkRequest(_Strict):
    uuid: str | None = None
    port: str | None = None
    fixed_ip: str | None = None
    tag: str | None = None


class BlockDeviceMapping(BaseModel):
    model_config = ConfigDict(extra="allow")

    boot_index: int | str | None = None
    uuid: str | None = None
    source_type: str | None = None
    destination_type: str | None = None
    delete_on_termination: bool | None = None
    volume_size: int | None = None


class SecurityGroupRef(_Strict):
    name: str = Field(min_length=1, max_length=255)


class ServerCreate(_Strict):
    name: str = Field(min_length=1, max_length=255)
    image_ref: str = Field(default="", alias="imageRef")
    flavor_ref: str | int = Field(alias="flavorRef")
    networks: list[NetworkRequest] | str | None = None
    key_name: str | None = Field(default=None, max_length=255)
    user_data: str | None = Field(default=None, max_length=65535)
    metadata: dict[str, str] | None = None
    availability_zone: str | None = Field(default=None, max_length=255)
    security_groups: list[SecurityGroupRef] | None = None
    min_count: int = Field(default=1, ge=1)
    max_count: int | None = Field(default=None, ge=1)
    return_reservation_id: bool = False
    block_device_mapping_v2: list[BlockDeviceMapping] | None = None
    disk_config: str | None = Field(default=None, alias="OS-DCF:diskConfig",
                                    pattern="^(AUTO|MANUAL)$")
    admin_pass: str | None = Field(default=None, alias="adminPass")
    access_ip_v4: str | None = Field(default=None, alias="accessIPv4")
    access_ip_v6: str | None = Field(default=None, alias="accessIPv6")
    config_drive: bool | str | None = None
    description: str | None = Field(default=None, max_length=255)
    tags: list[str] | None = None
    hostname: str | None = Field(default=None, max_length=255)


class SchedulerHints(BaseModel):
    model_config = ConfigDict(extra="allow")

    group: str | None = None


class ServerCreateBody(_Strict):
    server: ServerCreate
    scheduler_hints: SchedulerHints | None = Field(default=None, alias="os:scheduler_hints")
    #: The same, under the name openstacksdk sends.
    sch_hnt_scheduler_hints: SchedulerHints | None = Field(
        default=None, alias="OS-SCH-HNT:scheduler_hints")

    @property
    def hints(self) -> SchedulerHints | None:
        return self.scheduler_hints or self.sch_hnt_scheduler_hints


class ServerUpdate(_Strict):
    name: str | None = Field(default=None, min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=255)
    access_ip_v4: str | None = Field(default=None, alias="accessIPv4")
    access_ip_v6: str | None = Field(default=None, alias="accessIPv6")
    hostname: str | None = Field(default=None, max_length=255)


class ServerUpdateBody(_Strict):
    server: ServerUpdate


class RebootType(_Strict):
    type: str = Field(default="SOFT", pattern="^(SOFT|HARD|soft|hard)$")


class ConsoleOutputRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    length: int | str | None = None

