"""createImage, rebuild and unshelve: their argument rules and the snapshot image's body
(no I/O; the flows run end to end in tests/e2e/test_compute_images_cli.py)."""

from __future__ import annotations

from typing import Any

import pytest

from stratus.compute import rebuild, shelve
from stratus.compute.action_steps import at_version
from stratus.compute.models import Instance
from stratus.compute.scheduler.filters import _compute, _compute_mask
from stratus.compute.scheduler.host_state import HostState
from stratus.compute.scheduler.host_view import HostView
from stratus.compute.scheduler.request_spec import FlavorSpec, RequestSpec
from stratus.compute.snapshots import inherited_properties, snapshot_image
from stratus.core.exceptions import BadRequest
from stratus.core.web.microversions import APIVersion


def _instance(**fields: Any) -> Instance:
    values: dict[str, Any] = {"uuid": "11111111-2222-3333-4444-555555555555",
                              "user_id": "u1", "image_ref": "base-1",
                              "flavor": {"disk": 5, "ram": 512}}
    values.update(fields)
    return Instance(**values)


def test_a_snapshot_carries_novas_properties_and_what_runs_the_disk() -> None:
    base = {"id": "base-1", "name": "debian", "min_disk": 2, "min_ram": 256,
            "hw_disk_bus": "scsi", "os_distro": "debian", "architecture": "x86_64",
            "os_hash_value": "abc", "img_signature": "sig", "checksum": "x", "tags": ["a"]}
    body = snapshot_image(_instance(), "snap", base, {"purpose": "backup"})
    assert body["image_type"] == "snapshot"
    assert body["instance_uuid"] == "11111111-2222-3333-4444-555555555555"
    assert body["base_image_ref"] == "base-1" and body["user_id"] == "u1"
    assert (body["min_disk"], body["min_ram"]) == (5, 256)  # the flavor's disk is larger
    assert (body["disk_format"], body["container_format"]) == ("qcow2", "bare")
    assert body["purpose"] == "backup" and body["visibility"] == "private"
    assert inherited_properties(base) == {"hw_disk_bus": "scsi", "os_distro": "debian",
                                          "architecture": "x86_64"}
    assert "checksum" not in body and "tags" not in body and "id" not in body


def test_a_snapshot_keeps_a_larger_image_minimum() -> None:
    body = snapshot_image(_instance(flavor={"disk": 1}), "s", {"min_disk": 3})
    assert body["min_disk"] == 3


@pytest.mark.parametrize(("field", "value", "minimum"), [
    ("description", "d", "2.19"), ("key_name", None, "2.54"), ("user_data", "eA==", "2.57"),
    ("hostname", "h", "2.90")])
def test_rebuild_arguments_need_their_microversion(field: str, value: Any,
                                                   minimum: str) -> None:
    args = rebuild.RebuildArgs.model_validate({"imageRef": "i", field: value})
    below = APIVersion.parse(minimum)
    with at_version(APIVersion(below.major, below.minor - 1)), pytest.raises(BadRequest):
        rebuild._check_microversion(args)
    with at_version(below):
        rebuild._check_microversion(args)


def test_rebuild_refuses_personality_from_257() -> None:
    args = rebuild.RebuildArgs.model_validate({"imageRef": "i", "personality": []})
    with at_version(APIVersion(2, 56)):
        rebuild._check_microversion(args)
    with at_version(APIVersion(2, 57)), pytest.raises(BadRequest):
        rebuild._check_microversion(args)


def test_unshelve_arguments_per_microversion() -> None:
    with at_version(APIVersion(2, 76)):
        assert shelve._unshelve_args(None)[1] is False
        with pytest.raises(BadRequest):
            shelve._unshelve_args({"availability_zone": "az1"})
    with at_version(APIVersion(2, 77)):
        requested, zone = shelve._unshelve_args({"availability_zone": "az1"})
        assert (requested.availability_zone, zone) == ("az1", True)
        with pytest.raises(BadRequest):
            shelve._unshelve_args({"availability_zone": None})  # unpinning is 2.91
        with pytest.raises(BadRequest):
            shelve._unshelve_args({"host": "h1"})
    with at_version(APIVersion(2, 91)):
        requested, zone = shelve._unshelve_args({"availability_zone": None, "host": "h1"})
        assert (requested.availability_zone, requested.host, zone) == (None, "h1", True)
        with pytest.raises(BadRequest):
            shelve._unshelve_args({"unknown": 1})


def _host(name: str) -> HostState:
    capacity = {"VCPU": 8.0, "MEMORY_MB": 8192.0, "DISK_GB": 100.0}
    return HostState(provider_uuid=f"p-{name}", host=name, capacity=capacity,
                     max_unit={rc: int(v) for rc, v in capacity.items()})


def test_a_requested_host_is_the_only_candidate() -> None:
    hosts = [_host("a"), _host("b"), _host("c")]
    spec = RequestSpec(instance_uuid="i", project_id="p", flavor=FlavorSpec(1, 64, 1),
                       requested_host="b")
    assert [h.host for h in hosts if _compute(h, spec)] == ["b"]
    view = HostView(hosts)
    assert [h.host for h, ok in zip(view.hosts, _compute_mask(view, spec), strict=True)
            if ok] == ["b"]
    gone = RequestSpec(instance_uuid="i", project_id="p", flavor=FlavorSpec(1, 64, 1),
                       requested_host="nowhere")
    assert not _compute_mask(view, gone).any()


def test_a_snapshot_boot_mapping_asks_for_a_root_volume_from_it() -> None:
    from stratus.compute.api.schemas import ServerCreateBody, boot_request
    from stratus.compute.volume_attach import RootVolume

    body = ServerCreateBody.model_validate({"server": {
        "name": "s", "flavorRef": "1", "block_device_mapping_v2": [{
            "boot_index": 0, "uuid": "snap-1", "source_type": "snapshot",
            "destination_type": "volume", "volume_size": 2,
            "delete_on_termination": True}]}})
    req = boot_request(body, APIVersion(2, 1))
    assert req.image_id == ""
    assert req.root_volume == RootVolume("snap-1", from_image=False, from_snapshot=True,
                                         size=2, delete_on_termination=True)


def test_an_image_recording_volume_snapshots_boots_from_its_root_snapshot() -> None:
    import json

    from stratus.compute.boot import snapshot_root_volume
    from stratus.compute.volume_attach import RootVolume

    mappings = [{"boot_index": None, "source_type": "snapshot", "snapshot_id": "data"},
                {"boot_index": 0, "source_type": "snapshot", "snapshot_id": "root",
                 "volume_size": 3, "delete_on_termination": False}]
    image = {"bdm_v2": "True", "block_device_mapping": json.dumps(mappings)}
    assert snapshot_root_volume(image) == RootVolume("root", from_image=False,
                                                     from_snapshot=True, size=3)
    assert snapshot_root_volume({"disk_format": "qcow2"}) is None
    with pytest.raises(BadRequest):
        snapshot_root_volume({"bdm_v2": True, "block_device_mapping": "{not json"})
