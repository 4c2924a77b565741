"""The edge of a boot (``schemas.boot_request``) and the server action table."""

from __future__ import annotations

import re
from typing import Any, cast

import pytest

from stratus.compute import block_devices, lifecycle
from stratus.compute.api.schemas import ServerCreateBody, boot_request
from stratus.compute.objects import FlavorInfo
from stratus.compute.policy import RULES
from stratus.compute.service import ComputeRuntime
from stratus.compute.volume_attach import RootVolume
from stratus.core.context import RequestContext
from stratus.core.exceptions import BadRequest
from stratus.core.policy import Caller, Enforcer
from stratus.core.web.microversions import APIVersion

V21 = APIVersion(2, 1)


def _body(**server: Any) -> ServerCreateBody:
    return ServerCreateBody.model_validate(
        {"server": {"name": "s", "flavorRef": "1", **server}})


def test_image_boot_becomes_a_typed_request() -> None:
    req = boot_request(_body(imageRef="img", min_count=2, metadata={"a": "b"},
                             security_groups=[{"name": "web"}]), V21)
    assert (req.image_id, req.count, req.root_volume) == ("img", 2, None)
    assert req.security_groups == ("web",) and req.metadata == {"a": "b"}


def test_boot_from_image_to_volume_names_its_root_volume() -> None:
    req = boot_request(_body(block_device_mapping_v2=[{
        "boot_index": 0, "uuid": "img", "source_type": "image",
        "destination_type": "volume", "volume_size": 3,
        "delete_on_termination": True}]), V21)
    assert req.image_id == "img"
    assert req.root_volume == RootVolume("img", from_image=True, size=3,
                                         delete_on_termination=True)


def test_boot_from_existing_volume_checks_no_image() -> None:
    req = boot_request(_body(block_device_mapping_v2=[{
        "boot_index": "0", "uuid": "vol", "source_type": "volume"}]), V21)
    assert req.image_id == "" and req.root_volume == RootVolume("vol", from_image=False)


@pytest.mark.parametrize(("server", "message"), [
    ({}, "Missing imageRef attribute."),
    ({"imageRef": "i", "min_count": 3, "max_count": 2}, "min_count must be <= max_count."),
    ({"imageRef": "i", "description": "d"}, "Invalid input for field 'description'"),
])
def test_edge_refusals(server: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest, match=re.escape(message)):
        boot_request(_body(**server), V21)


async def test_actions_are_a_table_and_unknown_ones_are_a_400() -> None:
    assert {"os-stop", "os-start", "reboot", "os-getConsoleOutput"} <= set(lifecycle.ACTIONS)
    rt = cast(ComputeRuntime, object())  # refused before the runtime is used
    caller = Caller(RequestContext(project_id="p", user_id="u"), Enforcer(RULES))
    with pytest.raises(BadRequest, match=r"Unknown action 'os-fly'\."):
        await lifecycle.run_action(rt, caller, "s", {"os-fly": None}, V21)
    with pytest.raises(BadRequest, match="exactly one action"):
        await lifecycle.run_action(rt, caller, "s", {"os-stop": None, "os-start": None},
                                   V21)


# Block device mappings (stratus.compute.block_devices) ------------------------------------

def _plan(*mappings: dict[str, Any], image: str = "img") -> Any:
    return boot_request(_body(imageRef=image, networks="none",
                              block_device_mapping_v2=list(mappings)),
                        APIVersion(2, 96))


def _flavor(ephemeral: int = 0, swap: int = 0) -> FlavorInfo:
    return FlavorInfo(id="f", name="f", vcpus=1, ram=64, disk=1, ephemeral=ephemeral,
                      swap=swap)


def test_data_disks_are_named_in_nova_order() -> None:
    req = _plan({"source_type": "volume", "uuid": "v1", "boot_index": -1},
                {"source_type": "blank", "destination_type": "volume", "volume_size": "2",
                 "delete_on_termination": "true", "device_name": "vdf"},
                {"source_type": "blank", "destination_type": "local", "guest_format": "swap",
                 "volume_size": 128})
    disks = block_devices.devices(req.extra_disks, _flavor(ephemeral=1, swap=512))
    # The flavor's ephemeral disk (none asked for), the swap asked for, then the volumes;
    # an explicit name is kept and skipped by the others.
    assert [(d.kind, d.device_name, d.size) for d in disks] == [
        ("ephemeral", "/dev/vdb", 1), ("swap", "/dev/vdc", 128), ("volume", "/dev/vdd", None),
        ("volume", "/dev/vdf", 2)]
    assert disks[3].delete_on_termination and not disks[2].delete_on_termination
    assert disks[2].source_type == "volume" and disks[2].source_id == "v1"


def test_boot_indexes_count_up_from_the_root() -> None:
    blank = {"source_type": "blank", "destination_type": "volume", "volume_size": 1}
    assert len(_plan({**blank, "boot_index": 1}, {**blank, "boot_index": "2"}).extra_disks) == 2
    for indexes in ((1, 1), (2,), (0,)):
        with pytest.raises(BadRequest, match="Boot sequence"):
            _plan(*({**blank, "boot_index": i} for i in indexes))
    with pytest.raises(BadRequest, match="Boot sequence"):  # no image and no root mapping
        _plan(blank, image="")


def test_roots_from_a_snapshot_and_a_volume() -> None:
    req = _plan({"source_type": "snapshot", "uuid": "s1", "boot_index": 0,
                 "destination_type": "volume", "volume_size": 3}, image="")
    assert req.image_id == "" and req.root_volume == RootVolume(
        "s1", from_image=False, from_snapshot=True, size=3)


@pytest.mark.parametrize(("mapping", "flavor", "message"), [
    ({"source_type": "blank", "destination_type": "local", "volume_size": 2}, _flavor(1),
     "Ephemeral disks requested are larger"),
    ({"source_type": "blank", "destination_type": "local"}, _flavor(0),
     "Ephemeral disks requested are larger"),
    ({"source_type": "blank", "destination_type": "local", "guest_format": "swap",
      "volume_size": 600}, _flavor(swap=512), "Swap drive requested is larger"),
    ({"source_type": "blank", "destination_type": "volume", "volume_size": 1,
      "device_name": "/dev/vda"}, _flavor(), "root disk"),
])
def test_flavor_refusals(mapping: dict[str, Any], flavor: FlavorInfo, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        block_devices.devices(_plan(mapping).extra_disks, flavor)


@pytest.mark.parametrize(("mapping", "message"), [
    ({"source_type": "blank", "destination_type": "volume", "volume_size": 1,
      "device_type": "cdrom"}, "device_type cdrom"),
    ({"source_type": "snapshot", "destination_type": "local", "uuid": "s"},
     "Mapping snapshot to local"),
    ({"source_type": "blank", "destination_type": "local", "volume_type": "fast"},
     "volume_type"),
    ({"source_type": "blank", "destination_type": "volume", "volume_size": 1,
      "delete_on_termination": "maybe"}, "is not a boolean"),
    ({"source_type": "blank", "destination_type": "volume", "volume_size": -1},
     "must not be negative"),
    ({"destination_type": "volume", "volume_size": 1}, "source_type is required"),
])
def test_shape_refusals(mapping: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        _plan(mapping)


def test_no_device_mappings_are_skipped() -> None:
    req = _plan({"source_type": "blank", "destination_type": "local", "no_device": True})
    assert req.extra_disks == ()
