"""Request bodies of the Compute API. Nova's schemas forbid unknown keys; so do these.

A boot body is checked here for the microversion and its block device mappings, and turned
into the domain's typed ``BootRequest`` (``boot_request``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from stratus.compute.boot import BootRequest
from stratus.compute.volume_attach import RootVolume
from stratus.core.exceptions import BadRequest
from stratus.core.web.microversions import APIVersion


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

    @property
    def is_image_to_volume(self) -> bool:
        return self.source_type == "image" and self.destination_type == "volume"

    @property
    def is_snapshot_to_volume(self) -> bool:
        return self.source_type == "snapshot" and self.destination_type in ("volume", None)

    @property
    def is_volume(self) -> bool:
        return self.source_type == "volume" and self.destination_type in ("volume", None)


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


def _boot_image(s: ServerCreate) -> str:
    """The image to boot from: ``imageRef``, or the image→local boot mapping OSC adds."""
    image = s.image_ref
    for bdm in s.block_device_mapping_v2 or []:
        if str(bdm.boot_index) != "0":
            continue
        if bdm.source_type == "image" and bdm.destination_type in (None, "local"):
            if image and bdm.uuid and bdm.uuid != image:
                raise BadRequest("The boot mapping names another image than imageRef.")
            image = image or (bdm.uuid or "")
        elif bdm.is_image_to_volume:
            image = bdm.uuid or ""  # the root volume's source: checked like a boot image
        elif bdm.is_volume or bdm.is_snapshot_to_volume:
            return ""
        else:
            raise BadRequest(f"A boot mapping from {bdm.source_type} to "
                             f"{bdm.destination_type} is not supported: boot from an image, "
                             "a volume, or a volume made from an image or a snapshot.")
    if not image:
        raise BadRequest("Missing imageRef attribute.")
    return image


def _root_volume(s: ServerCreate) -> RootVolume | None:
    """The boot mapping that asks for a root volume (an existing one, or one made from an
    image), validated."""
    for bdm in s.block_device_mapping_v2 or []:
        if str(bdm.boot_index) == "0" and bdm.is_volume:
            if not bdm.uuid:
                raise BadRequest("The boot mapping names no volume (uuid).")
            return RootVolume(bdm.uuid, from_image=False,
                              delete_on_termination=bool(bdm.delete_on_termination))
        if str(bdm.boot_index) == "0" and bdm.is_snapshot_to_volume:
            if not bdm.uuid:
                raise BadRequest("The boot mapping names no snapshot (uuid).")
            return RootVolume(bdm.uuid, from_image=False, from_snapshot=True,
                              size=int(bdm.volume_size or 0),
                              delete_on_termination=bool(bdm.delete_on_termination))
        if str(bdm.boot_index) == "0" and bdm.is_image_to_volume:
            if not bdm.uuid:
                raise BadRequest("The boot mapping names no image (uuid).")
            if bdm.volume_size is None or int(bdm.volume_size) < 1:
                raise BadRequest("Images with destination_type 'volume' need to have a "
                                 "non-zero size specified.")
            return RootVolume(bdm.uuid, from_image=True, size=int(bdm.volume_size),
                              delete_on_termination=bool(bdm.delete_on_termination))
    return None


def boot_request(body: ServerCreateBody, version: APIVersion) -> BootRequest:
    """The domain's ``BootRequest`` for a boot body, checked for ``version``."""
    s = body.server
    _check_microversion_fields(s, version)
    image_id = _boot_image(s)
    root_volume = _root_volume(s)
    count = s.max_count or s.min_count
    if s.min_count > count:
        raise BadRequest("min_count must be <= max_count.")
    return BootRequest(
        name=s.name, flavor_ref=str(s.flavor_ref), image_id=image_id, count=count,
        root_volume=root_volume, key_name=s.key_name, user_data=s.user_data,
        metadata=s.metadata, availability_zone=s.availability_zone,
        requested_networks=(s.networks if isinstance(s.networks, str) or s.networks is None
                            else [n.model_dump(exclude_none=True) for n in s.networks]),
        security_groups=tuple(g.name for g in s.security_groups or []) or ("default",),
        description=s.description, access_ip_v4=s.access_ip_v4,
        access_ip_v6=s.access_ip_v6, config_drive=s.config_drive in (True, "True", "true"),
        tags=tuple(s.tags or ()), group_uuid=body.hints.group if body.hints else None)

