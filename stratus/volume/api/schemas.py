"""Request bodies of the Block Storage v3 API (pydantic; a bad body is a 400)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from stratus.core.exceptions import BadRequest
from stratus.volume import states
from stratus.volume.backends.base import IMAGE_DISK_FORMATS


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


class Renamable(Strict):
    """An update body's ``name``/``description``, each also accepted in its older
    ``display_`` form."""

    name: Name | None = None
    description: Annotated[str, Field(max_length=255)] | None = None
    display_name: Name | None = None
    display_description: str | None = None

    def changes(self) -> dict[str, Any]:
        """The fields given: ``name`` and ``description`` as given, the plain form winning
        over ``display_``."""
        changes: dict[str, Any] = {}
        for key in ("name", "description"):
            given = key if key in self.model_fields_set else f"display_{key}"
            if given in self.model_fields_set:
                changes[key] = getattr(self, given)
        return changes


class VolumeUpdate(Renamable):
    metadata: Metadata | None = None

    def changes(self) -> dict[str, Any]:
        """The fields given: ``name``/``description`` (or their ``display_`` forms) and
        ``metadata``."""
        return {**super().changes(),
                **({"metadata": self.metadata} if "metadata" in self.model_fields_set else {})}


class VolumeUpdateBody(Strict):
    volume: VolumeUpdate


class MetadataBody(Strict):
    metadata: Metadata


class MetaItemBody(Strict):
    meta: Metadata


class SnapshotCreate(Strict):
    #: Required but may be null (Cinder's schema): a null volume is one not found (404).
    volume_id: str | None
    name: Name | None = None
    description: Annotated[str, Field(max_length=255)] | None = None
    display_name: Name | None = None
    display_description: str | None = None
    force: bool | str | None = False
    metadata: Metadata | None = None


class SnapshotCreateBody(Strict):
    snapshot: SnapshotCreate


class SnapshotUpdate(Renamable):
    """A snapshot's update: only its ``name`` and ``description``."""


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


class TransferCreate(Strict):
    volume_id: str
    name: Name | None = None
    no_snapshots: bool = False


class TransferCreateBody(Strict):
    transfer: TransferCreate


class TransferAccept(Strict):
    auth_key: Annotated[str, Field(min_length=1, max_length=255)]


class TransferAcceptBody(Strict):
    accept: TransferAccept


class QuotaSetBody(BaseModel):
    quota_set: dict[str, Any]


# Volume actions (``POST /volumes/{id}/action``) ---------------------------------------------
# Each action's argument is checked in a "before" validator that raises Cinder's message;
# ``parse_action`` turns the failure into that 400.


def _cinder_bool(value: Any, name: str) -> bool:
    lowered = str(value).strip().lower()
    if lowered in ("true", "1", "yes", "y", "on", "t"):
        return True
    if lowered in ("false", "0", "no", "n", "off", "f"):
        return False
    raise ValueError(f"Invalid input received: {name} must be a boolean, not {str(value)!r}.")


class ExtendAction(BaseModel):
    new_size: int

    @model_validator(mode="before")
    @classmethod
    def _from_args(cls, args: Any) -> Any:
        new_size = args.get("new_size") if isinstance(args, dict) else None
        if isinstance(new_size, str) and new_size.isdigit():
            new_size = int(new_size)
        if not isinstance(new_size, int) or isinstance(new_size, bool) or new_size < 1:
            raise ValueError("Invalid input received: new_size must be an integer >= 1.")
        return {"new_size": new_size}


class _FlagAction(BaseModel):
    """An action whose one argument is a required Cinder boolean named ``_flag``."""

    _flag: ClassVar[str]

    @model_validator(mode="before")
    @classmethod
    def _from_args(cls, args: Any) -> Any:
        value = args.get(cls._flag) if isinstance(args, dict) else None
        if value is None:
            raise ValueError(f"Invalid input received: {cls._flag} is required.")
        return {cls._flag: _cinder_bool(value, cls._flag)}


class SetBootableAction(_FlagAction):
    _flag = "bootable"
    bootable: bool


class ReadonlyAction(_FlagAction):
    _flag = "readonly"
    readonly: bool


class ResetStatusAction(BaseModel):
    status: str | None = None
    attach_status: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_args(cls, args: Any) -> Any:
        if not isinstance(args, dict):
            raise ValueError("Invalid input received: os-reset_status takes an object.")
        status, attach_status = args.get("status"), args.get("attach_status")
        if status is not None and status not in states.ALL:
            raise ValueError(f"Invalid input received: invalid status {status!r}.")
        if attach_status is not None and attach_status not in (states.ATTACHED,
                                                                states.DETACHED):
            raise ValueError(f"Invalid input received: invalid attach_status "
                             f"{attach_status!r}.")
        return {"status": status, "attach_status": attach_status}


#: The disk formats a volume can be uploaded as (Cinder's list, less the formats no
#: backend here writes) and the one container format Cinder takes by default.
UPLOAD_DISK_FORMATS = IMAGE_DISK_FORMATS
UPLOAD_CONTAINER_FORMATS = ("bare",)
VISIBILITIES = ("public", "private", "shared", "community")


class UploadImageAction(BaseModel):
    """``os-volume_upload_image``: the image's name, formats, visibility and protection
    (the last two honoured from 3.1, as Cinder), and ``force``."""

    image_name: str
    disk_format: str
    container_format: str
    visibility: str
    protected: bool
    force: bool

    @model_validator(mode="before")
    @classmethod
    def _from_args(cls, args: Any) -> Any:
        if not isinstance(args, dict):
            raise ValueError("Invalid input received: os-volume_upload_image takes an "
                             "object.")
        name = args.get("image_name")
        if not isinstance(name, str) or not name.strip():
            raise ValueError("Invalid input received: No image_name was specified in "
                             "request.")
        if len(name) > 255:
            raise ValueError("Invalid input received: image_name is longer than 255 "
                             "characters.")
        disk_format = str(args.get("disk_format") or "raw").lower()
        if disk_format not in UPLOAD_DISK_FORMATS:
            raise ValueError(f"Invalid input received: Invalid disk-format "
                             f"'{disk_format}' is specified. Allowed disk-formats are "
                             f"{', '.join(UPLOAD_DISK_FORMATS)}.")
        container_format = str(args.get("container_format") or "bare").lower()
        if container_format not in UPLOAD_CONTAINER_FORMATS:
            raise ValueError(f"Invalid input received: Invalid container-format "
                             f"'{container_format}' is specified. Allowed container-formats "
                             f"are {', '.join(UPLOAD_CONTAINER_FORMATS)}.")
        visibility = str(args.get("visibility") or "private")
        if visibility not in VISIBILITIES:
            raise ValueError(f"Invalid input received: Invalid visibility '{visibility}'; "
                             f"it must be one of {', '.join(VISIBILITIES)}.")
        return {"image_name": name, "disk_format": disk_format,
                "container_format": container_format, "visibility": visibility,
                "protected": _cinder_bool(args.get("protected", False), "protected"),
                "force": _cinder_bool(args.get("force", False), "force")}


M = TypeVar("M", bound=BaseModel)


class NoArgs(BaseModel):
    """An action whose argument is ignored (``os-force_delete``)."""

    @model_validator(mode="before")
    @classmethod
    def _from_args(cls, args: Any) -> Any:
        return {}


def parse_action(model: type[M], args: Any) -> M:
    """``args`` as ``model``; a refusal is the 400 its validator names."""
    try:
        return model.model_validate(args)
    except ValidationError as exc:
        error = exc.errors()[0].get("ctx", {}).get("error")
        raise BadRequest(str(error) if error is not None else
                         "Invalid input received: malformed action body.") from None
