"""Request bodies of the Compute API. Nova's schemas forbid unknown keys; so do these.

A boot body is checked here for the microversion and its block device mappings, and turned
into the domain's typed ``BootRequest`` (``boot_request``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from stratus.compute import block_devices
from stratus.compute.block_devices import Mapping
from stratus.compute.boot import BootRequest
from stratus.core.exceptions import BadRequest
from stratus.core.formats import UUID, AccessIPv4, AccessIPv6, IPAddress
from stratus.core.web.microversions import APIVersion


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=True)


FLAVOR_ID_PATTERN = r"^[a-zA-Z0-9._-]([a-zA-Z0-9. _-]*[a-zA-Z0-9._-])?$"
KEYPAIR_NAME_PATTERN = r"^[a-zA-Z0-9 _-]+$"
#: From 2.92 names may also hold '@' and '.'.
KEYPAIR_NAME_PATTERN_292 = r"^[a-zA-Z0-9 _@.-]+$"


#: The largest number a flavor's size or a quota limit may be, as Nova's schemas bound them:
#: the columns are 32-bit integers (PostgreSQL refused a larger one: a 500).
MAX_INT = 2**31 - 1


class FlavorCreate(_Strict):
    name: str = Field(min_length=1, max_length=255)
    ram: int = Field(ge=1, le=MAX_INT)
    vcpus: int = Field(ge=1, le=MAX_INT)
    disk: int = Field(ge=0, le=MAX_INT)
    id: str | None = Field(default=None, min_length=1, max_length=255,
                           pattern=FLAVOR_ID_PATTERN)
    swap: int = Field(default=0, ge=0, le=MAX_INT)
    ephemeral: int = Field(default=0, ge=0, le=MAX_INT, alias="OS-FLV-EXT-DATA:ephemeral")
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
    """One of ``networks``: a malformed network or port id or fixed IP is a 400 here, before
    anything is looked up (Nova: "Bad networks format")."""

    uuid: UUID | None = None
    port: UUID | None = None
    fixed_ip: IPAddress | None = None
    tag: str | None = None


class BlockDeviceMapping(BaseModel):
    """One ``block_device_mapping_v2`` entry as Nova's schema allows it: unknown keys are
    refused, numbers may come as strings (the ``openstack`` CLI sends them so)."""

    model_config = ConfigDict(extra="forbid")

    boot_index: int | str | None = None
    uuid: str | None = Field(default=None, max_length=255)
    source_type: str | None = None
    destination_type: str | None = None
    delete_on_termination: bool | str | None = None
    volume_size: int | str | None = None
    device_name: str | None = None
    guest_format: str | None = Field(default=None, max_length=255)
    disk_bus: str | None = Field(default=None, max_length=255)
    device_type: str | None = Field(default=None, max_length=255)
    tag: str | None = Field(default=None, max_length=60)
    volume_type: str | None = Field(default=None, max_length=255)
    no_device: bool | None = None
    #: Nova's schema also takes these; ``uuid`` is what clients send.
    volume_id: str | None = None
    snapshot_id: str | None = None
    image_id: str | None = None
    connection_info: str | None = None

    def mapping(self, version: APIVersion) -> Mapping:
        if self.tag is not None and not (version == APIVersion(2, 32)
                                         or version.at_least("2.42")):
            raise BadRequest("Invalid input for field/attribute block_device_mapping_v2. "
                             "'tag' needs microversion 2.32 or 2.42 and later.")
        if self.volume_type is not None and not version.at_least("2.67"):
            raise BadRequest("Invalid input for field/attribute block_device_mapping_v2. "
                             "'volume_type' needs microversion 2.67 or later.")
        if not self.source_type:
            raise BadRequest("Block Device Mapping is Invalid: source_type is required.")
        boot_index = _integer("boot_index", self.boot_index)
        return Mapping(
            source_type=self.source_type, destination_type=self.destination_type,
            uuid=self.uuid or self.volume_id or self.snapshot_id or self.image_id,
            boot_index=boot_index if boot_index is not None and boot_index >= 0 else None,
            volume_size=_integer("volume_size", self.volume_size),
            delete_on_termination=_boolean("delete_on_termination",
                                           self.delete_on_termination),
            device_name=self.device_name, guest_format=self.guest_format, tag=self.tag,
            volume_type=self.volume_type, no_device=bool(self.no_device),
            device_type=self.device_type)


_TRUE = ("true", "1", "yes", "y", "on", "t")
_FALSE = ("false", "0", "no", "n", "off", "f")


def _integer(field: str, value: int | str | None) -> int | None:
    if value is None or isinstance(value, int):
        return value
    text = value.strip()
    if not text.lstrip("-").isdigit():
        raise BadRequest(f"Invalid input for field/attribute {field}. Value: {value}. "
                         f"'{value}' is not an integer.")
    return int(text)


def _boolean(field: str, value: bool | str | None) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise BadRequest(f"Invalid input for field/attribute {field}. Value: {value}. "
                     f"'{value}' is not a boolean.")


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
    access_ip_v4: AccessIPv4 | None = Field(default=None, alias="accessIPv4")
    access_ip_v6: AccessIPv6 | None = Field(default=None, alias="accessIPv6")
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
    access_ip_v4: AccessIPv4 | None = Field(default=None, alias="accessIPv4")
    access_ip_v6: AccessIPv6 | None = Field(default=None, alias="accessIPv6")
    hostname: str | None = Field(default=None, max_length=255)


class ServerUpdateBody(_Strict):
    server: ServerUpdate


def _check_microversion_fields(s: ServerCreate, version: APIVersion) -> None:
    gated = (("description", "2.19"), ("tags", "2.52"), ("hostname", "2.90"))
    for field, minimum in gated:
        if getattr(s, field) is not None and not version.at_least(minimum):
            raise BadRequest(f"Invalid input for field '{field}': it needs microversion "
                             f"{minimum} or later.")
    if isinstance(s.networks, str):
        if not version.at_least("2.37"):
            raise BadRequest("Invalid input for field 'networks': 'auto' and 'none' need "
                             "microversion 2.37 or later.")
        if s.networks not in ("auto", "none"):
            raise BadRequest("Invalid input for field 'networks': use 'auto', 'none' or a "
                             "list of networks.")
    elif s.networks is None and version.at_least("2.37"):
        raise BadRequest("Invalid input for field 'networks': it is required from "
                         "microversion 2.37.")


def boot_request(body: ServerCreateBody, version: APIVersion, *,
                 admin_pass: str | None = None) -> BootRequest:
    """The domain's ``BootRequest`` for a boot body, checked for ``version``;
    ``admin_pass``: the password the servers get (``adminPass`` or one made for them)."""
    s = body.server
    _check_microversion_fields(s, version)
    disks = block_devices.plan(s.image_ref, [m.mapping(version)
                                             for m in s.block_device_mapping_v2 or []])
    count = s.max_count or s.min_count
    if s.min_count > count:
        raise BadRequest("min_count must be <= max_count.")
    return BootRequest(
        name=s.name, flavor_ref=str(s.flavor_ref), image_id=disks.image_id, count=count,
        root_volume=disks.root_volume, extra_disks=disks.extra, key_name=s.key_name,
        user_data=s.user_data,
        metadata=s.metadata, availability_zone=s.availability_zone,
        requested_networks=(s.networks if isinstance(s.networks, str) or s.networks is None
                            else [n.model_dump(exclude_none=True) for n in s.networks]),
        security_groups=tuple(g.name for g in s.security_groups or []) or ("default",),
        description=s.description, access_ip_v4=s.access_ip_v4,
        access_ip_v6=s.access_ip_v6, config_drive=s.config_drive in (True, "True", "true"),
        tags=tuple(s.tags or ()), group_uuid=body.hints.group if body.hints else None,
        admin_pass=admin_pass)

