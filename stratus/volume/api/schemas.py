"""Request bodies of the Block Storage v3 API (pydantic; a bad body is a 400)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


def _int_like(value: Any) -> Any:
    """Cinder accepts sizes as integers or strings of digits."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    if isinstance(value, bool):
        raise ValueError("must be an integer")
    return value


Size = Annotated[int, BeforeValidator(_int_like), Field(ge=1, le=2**31 - 1)]
Name = Annotated[str, Field(max_length=255)]
Metadata = dict[Annotated[str, Field(min_length=1, max_length=255)],
                Annotated[str, Field(max_length=255)]]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VolumeCreate(Strict):
    size: Size | None = None
    name: Name | None = None
    description: Annotated[str, Field(max_length=255)] | None = None
    display_name: Name | None = None
    display_description: str | None = None
    volume_type: str | None = None
    availability_zone: str | None = None
    metadata: Metadata | None = None
    snapshot_id: str | None = None
    source_volid: str | None = None
    imageRef: str | None = None
    image_id: str | None = None
    backup_id: str | None = None
    consistencygroup_id: str | None = None
    group_id: str | None = None
    multiattach: bool | None = None
    scheduler_hints: dict[str, Any] | None = None


class VolumeCreateBody(BaseModel):
    model_config = ConfigDict(extra="allow")  # OS-SCH-HNT:scheduler_hints beside it
    volume: VolumeCreate


class VolumeUpdate(Strict):
    name: Name | None = None
    description: Annotated[str, Field(max_length=255)] | None = None
    display_name: Name | None = None
    display_description: str | None = None
    metadata: Metadata | None = None


class VolumeUpdateBody(Strict):
    volume: VolumeUpdate


class MetadataBody(Strict):
    metadata: Metadata


class MetaItemBody(Strict):
    meta: Metadata


class SnapshotCreate(Strict):
    volume_id: str
    name: Name | None = None
    description: Annotated[str, Field(max_length=255)] | None = None
    display_name: Name | None = None
    display_description: str | None = None
    force: bool | str | None = False
    metadata: Metadata | None = None


class SnapshotCreateBody(Strict):
    snapshot: SnapshotCreate


class SnapshotUpdate(Strict):
    name: Name | None = None
    description: Annotated[str, Field(max_length=255)] | None = None
    display_name: Name | None = None
    display_description: str | None = None


class SnapshotUpdateBody(Strict):
    snapshot: SnapshotUpdate


class TypeCreate(Strict):
    name: Annotated[str, Field(min_length=1, max_length=255)]
    description: Annotated[str, Field(max_length=255)] | None = None
    extra_specs: dict[str, str] | None = None
    os_volume_type_access_is_public: bool = Field(True,
                                                  alias="os-volume-type-access:is_public")
    is_public: bool | None = None


class TypeCreateBody(Strict):
    volume_type: TypeCreate


class TypeUpdate(Strict):
    name: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    description: Annotated[str, Field(max_length=255)] | None = None
    is_public: bool | None = None


class TypeUpdateBody(Strict):
    volume_type: TypeUpdate


class ExtraSpecsBody(Strict):
    extra_specs: dict[str, str]


class AttachmentCreate(Strict):
    volume_uuid: str
    instance_uuid: str | None = None
    connector: dict[str, Any] | None = None
    mode: str | None = Field(None, pattern="^(rw|ro)$")


class AttachmentCreateBody(Strict):
    attachment: AttachmentCreate


class AttachmentUpdate(Strict):
    connector: dict[str, Any]


class AttachmentUpdateBody(Strict):
    attachment: AttachmentUpdate


class QuotaSetBody(BaseModel):
    quota_set: dict[str, Any]
