"""The edge of a boot (``schemas.boot_request``) and the server action table."""

from __future__ import annotations

import re
from typing import Any, cast

import pytest

from stratus.compute import lifecycle
from stratus.compute.api.schemas import ServerCreateBody, boot_request
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
