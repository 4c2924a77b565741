"""Config drives through the API of a whole in-process cloud (fake hypervisor): the
server's ``config_drive`` as Nova shows it, ``force_config_drive`` and an image that needs
one, and the password the drive carries on a boot, a rebuild and a rescue."""

from __future__ import annotations

import json
from typing import Any

from tests.integration.compute import test_boot_flow
from tests.integration.compute.test_boot_flow import Cloud, boot_body, upload_image
from tests.integration.compute.test_server_actions import _act, _driver

cloud = test_boot_flow.cloud  # the whole in-process cloud, three fake hosts


def _meta(drive: dict[str, bytes] | None) -> dict[str, Any]:
    assert drive is not None
    meta: dict[str, Any] = json.loads(drive["openstack/latest/meta_data.json"])
    return meta


async def _boot(cloud: Cloud, image_id: str, name: str, **extra: Any) -> tuple[dict[str, Any],
                                                                             str]:
    created = await cloud.compute("POST", "/servers", json=boot_body(image_id, name=name,
                                                                     **extra))
    assert created.status_code == 202, created.text
    body = created.json()["server"]
    return await cloud.wait_for(body["id"], "ACTIVE"), body["adminPass"]


async def test_a_drive_on_request_with_the_boot_and_rescue_passwords(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)
    server, password = await _boot(cloud, image_id, "with-drive", config_drive=True,
                                   adminPass="B00t-pass", user_data="IyEvYmluL3NoCg==")
    assert password == "B00t-pass"
    assert server["config_drive"] == "True"
    driver = _driver(cloud, server)
    meta = _meta(driver.config_drive(server["id"]))
    assert (meta["uuid"], meta["name"], meta["admin_pass"]) == (server["id"], "with-drive",
                                                                "B00t-pass")
    drive = driver.config_drive(server["id"])
    assert drive is not None and drive["openstack/latest/user_data"] == b"#!/bin/sh\n"
    listed = await cloud.compute("GET", "/servers/detail?config_drive=True")
    assert [s["id"] for s in listed.json()["servers"]] == [server["id"]]

    # A rebuild makes the drive again, with the rebuild's password.
    rebuilt = await _act(cloud, server["id"], {"rebuild": {"imageRef": image_id,
                                                           "adminPass": "R3build-pass"}})
    assert rebuilt.status_code == 202, rebuilt.text
    assert rebuilt.json()["server"]["adminPass"] == "R3build-pass"
    await cloud.wait_for(server["id"], "ACTIVE")
    assert _meta(driver.config_drive(server["id"]))["admin_pass"] == "R3build-pass"

    # A rescue brings a drive of its own, with the rescue's password (made or given).
    rescued = await _act(cloud, server["id"], {"rescue": None})
    assert rescued.status_code == 200, rescued.text
    await cloud.wait_for(server["id"], "RESCUE")
    spec = driver.rescued_with(server["id"])
    assert spec is not None
    assert _meta(spec.config_drive)["admin_pass"] == rescued.json()["adminPass"]

    # A password the API made at boot is the one on the drive too.
    other, made = await _boot(cloud, image_id, "made-pass", config_drive="true")
    assert _meta(_driver(cloud, other).config_drive(other["id"]))["admin_pass"] == made


async def test_no_drive_unless_asked_forced_or_needed_by_the_image(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)
    plain, _ = await _boot(cloud, image_id, "plain")
    assert plain["config_drive"] == ""
    driver = _driver(cloud, plain)
    assert driver.config_drive(plain["id"]) is None
    rescued = await _act(cloud, plain["id"], {"rescue": {"adminPass": "R3scue-pass"}})
    assert rescued.status_code == 200, rescued.text
    await cloud.wait_for(plain["id"], "RESCUE")
    spec = driver.rescued_with(plain["id"])
    assert spec is not None and spec.config_drive is None

    # An image that cannot boot without one (Nova's img_config_drive=mandatory).
    patched = await cloud.client.patch(
        f"/image/v2/images/{image_id}", headers={
            "X-Auth-Token": cloud.token,
            "Content-Type": "application/openstack-images-v2.1-json-patch"},
        json=[{"op": "add", "path": "/img_config_drive", "value": "mandatory"}])
    assert patched.status_code == 200, patched.text
    needed, _ = await _boot(cloud, image_id, "needed")
    assert needed["config_drive"] == "True"
    assert _driver(cloud, needed).config_drive(needed["id"]) is not None

    # Nova's force_config_drive: every new server has one.
    other_image = await upload_image(cloud)
    cloud.stack.settings.compute.force_config_drive = True
    forced, _ = await _boot(cloud, other_image, "forced", config_drive=False)
    assert forced["config_drive"] == "True"
    assert _driver(cloud, forced).config_drive(forced["id"]) is not None
