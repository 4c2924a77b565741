"""Block storage response bodies per microversion, and request parsing (no I/O)."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from stratus.core.context import RequestContext
from stratus.core.web.microversions import APIVersion
from stratus.volume.api import views
from stratus.volume.api.schemas import VolumeCreateBody
from stratus.volume.api.volumes import parse_sort
from stratus.volume.models import Attachment, Snapshot, Volume, VolumeType


class _Links:
    def pair(self, path: str) -> list[dict[str, str]]:
        return [{"rel": "self", "href": f"http://h/volume/v3/p/{path}"}]


def _volume() -> Volume:
    return Volume(id="v1", project_id="p", user_id="u", name="n", description=None, size=1,
                  status="in-use", attach_status="attached", availability_zone="nova",
                  host="h1", volume_type_id="t", snapshot_id=None, source_volid=None,
                  bootable=True, multiattach=False, metadata_={"a": "1"}, image_metadata={},
                  created_at=dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC),
                  updated_at=None)


def _attachment(status: str) -> Attachment:
    return Attachment(id=f"a-{status}", volume_id="v1", instance_uuid="s1",
                      attached_host="c1", mountpoint="/dev/vdb", attach_mode="rw",
                      attach_status=status, connection_info=None,
                      attach_time=dt.datetime(2026, 1, 2, tzinfo=dt.UTC))


def test_volume_detail_by_version_and_role() -> None:
    vtype = VolumeType(id="t", name="fast", is_public=True, extra_specs={})
    member = RequestContext(project_id="p", roles=["member"])
    admin = RequestContext(project_id="p", roles=["admin"])
    old = views.volume_detail(_volume(), attachments=[_attachment("attached"),
                                                      _attachment("reserved")],
                              vtype=vtype, links=_Links(), context=member,  # type: ignore[arg-type]
                              version=APIVersion(3, 0))
    assert old["bootable"] == "true" and old["volume_type"] == "fast"
    assert old["created_at"] == "2026-01-02T03:04:05.000006"
    assert [a["attachment_id"] for a in old["attachments"]] == ["a-attached"]
    assert old["attachments"][0]["device"] == "/dev/vdb"
    assert "group_id" not in old and "shared_targets" not in old
    assert "os-vol-host-attr:host" not in old
    new = views.volume_detail(_volume(), attachments=[], vtype=vtype, links=_Links(),  # type: ignore[arg-type]
                              context=admin, version=APIVersion(3, 60))
    assert new["group_id"] is None and new["shared_targets"] is False
    assert new["provider_id"] is None and new["service_uuid"] is None
    assert new["os-vol-host-attr:host"] == "h1@file#file"


def test_snapshot_view_by_version() -> None:
    snapshot = Snapshot(id="s", project_id="p", user_id="u", volume_id="v1", name=None,
                        description=None, size=1, status="available", metadata_={},
                        created_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    assert "user_id" not in views.snapshot_view(snapshot, version=APIVersion(3, 40))
    body = views.snapshot_view(snapshot, version=APIVersion(3, 41))
    assert body["user_id"] == "u" and body["os-extended-snapshot-attributes:progress"] == "100%"


def test_create_body_and_sort() -> None:
    assert VolumeCreateBody.model_validate({"volume": {"size": "2"}}).volume.size == 2
    for bad in ({"size": 0}, {"size": True}, {"size": "x"}, {"size": 1, "other": 1}):
        with pytest.raises(ValidationError):
            VolumeCreateBody.model_validate({"volume": bad})
    keys = ("name", "size", "created_at")
    assert parse_sort({"sort": "size:asc,name"}, keys) == [("size", "asc"), ("name", "desc")]
    assert parse_sort({"sort_key": "name", "sort_dir": "asc"}, keys) == [("name", "asc")]
    from stratus.core.exceptions import BadRequest

    for params in ({"sort": "nope"}, {"sort": "name:up"},
                   {"sort": "name", "sort_key": "size"}):
        with pytest.raises(BadRequest):
            parse_sort(params, keys)


def test_volume_action_bodies() -> None:
    """Each entry of the action table parses its argument with Cinder's 400 messages."""
    from stratus.core.exceptions import BadRequest
    from stratus.volume.api.schemas import (
        ExtendAction,
        NoArgs,
        ReadonlyAction,
        ResetStatusAction,
        SetBootableAction,
        UploadImageAction,
        parse_action,
    )
    from stratus.volume.api.volume_actions import ACTIONS

    assert set(ACTIONS) == {"os-extend", "os-set_bootable", "os-update_readonly_flag",
                            "os-reset_status", "os-force_delete", "os-volume_upload_image"}
    assert parse_action(ExtendAction, {"new_size": "3", "x": 1}).new_size == 3
    assert parse_action(SetBootableAction, {"bootable": "yes"}).bootable is True
    assert parse_action(ReadonlyAction, {"readonly": False}).readonly is False
    assert parse_action(ResetStatusAction, {"status": "available"}).attach_status is None
    parse_action(NoArgs, None)
    upload = parse_action(UploadImageAction, {"image_name": "i", "disk_format": "QCOW2",
                                              "force": "false"})
    assert (upload.disk_format, upload.container_format, upload.visibility,
            upload.protected, upload.force) == ("qcow2", "bare", "private", False, False)
    for model, args, message in (
            (ExtendAction, {"new_size": True}, "new_size must be an integer >= 1."),
            (ExtendAction, None, "new_size must be an integer >= 1."),
            (SetBootableAction, {}, "bootable is required."),
            (SetBootableAction, {"bootable": "x"}, "bootable must be a boolean, not 'x'."),
            (ReadonlyAction, [], "readonly is required."),
            (ResetStatusAction, "x", "os-reset_status takes an object."),
            (ResetStatusAction, {"status": "nope"}, "invalid status 'nope'."),
            (ResetStatusAction, {"attach_status": "nope"}, "invalid attach_status 'nope'."),
            (UploadImageAction, {"disk_format": "raw"},
             "No image_name was specified in request."),
            (UploadImageAction, {"image_name": "i", "disk_format": "iso"},
             "Invalid disk-format 'iso' is specified. Allowed disk-formats are raw, qcow2, "
             "vmdk, vdi, vhd, vhdx.")):
        with pytest.raises(BadRequest) as caught:
            parse_action(model, args)
        assert caught.value.message == f"Invalid input received: {message}"
