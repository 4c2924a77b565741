"""One real guest (libvirt, TCG here) for a server's data disks and extra interfaces, end to
end in one process with the real network agents (linuxbridge backend):

- a blank 1 GiB volume made for the server and an existing 2 GiB volume, both in the boot
  request, are the guest's ``vdb`` and ``vdc`` (the guest lists its disks on its console);
- ``os-interface`` with a network: a port is made, bound to the host, the l2-agent plugs its
  tap into the network's bridge, the driver hot-plugs a NIC on it; detach unplugs it and the
  port (made for the server) is deleted, its tap gone;
- deleting the server deletes the blank volume and frees the existing one.
"""

from __future__ import annotations

import asyncio
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from stratus.compute.virt.libvirt import host as libvirt_host
from stratus.core.config import Settings
from stratus.guest_image.upload import publish
from stratus.network.agents import linux
from stratus.network.objects import bridge_name, tap_name
from tests.integration.network_agents.conftest import (
    eventually,
    kernel_cleanup,
    require_root_and_dnsmasq,
)
from tests.integration.volume.test_server_volumes import (
    ADMIN_PASSWORD,
    ROOT,
    Cloud,
    started_cloud,
)
from tests.realvm import destroy_leftovers, guest_image, libvirt_ready, wait_console

__all__ = ["kernel_cleanup"]  # the fixture, used here

pytestmark = [pytest.mark.realvm, pytest.mark.serial]

UNITS = ["identity-api", "image-api", "compute-api", "conductor", "scheduler",
         "compute-agent", "network-api", "dhcp-agent", "l2-agent", "volume-api",
         "volume-manager"]


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[Cloud]:
    libvirt_ready()
    require_root_and_dnsmasq()
    settings = Settings(data_dir=tmp_path, public_url=ROOT, admin_password=ADMIN_PASSWORD,
                        identity={"bcrypt_rounds": 4}, network={"backend": "linuxbridge"},
                        volume={"host": "storage"},
                        compute={"virt_driver": "libvirt",
                                 "host": f"realvm-{uuid.uuid4().hex[:6]}",
                                 "shutdown_timeout": 10, "volume_attach_timeout": 60})
    try:
        async with started_cloud(settings, UNITS, http_timeout=120) as started:
            yield started
    finally:
        await destroy_leftovers(tmp_path / "instances")  # only if the test failed midway


def _live_nics(uuid_: str) -> list[tuple[str | None, str | None]]:
    libvirt = libvirt_host.libvirt_module()
    conn = libvirt.open(libvirt_host.DEFAULT_URI)
    try:
        dom = ET.fromstring(conn.lookupByUUIDString(uuid_).XMLDesc(0))
    finally:
        conn.close()
    return [(i.find("mac").get("address"), i.find("target").get("dev"))  # type: ignore[union-attr]
            for i in dom.iterfind("./devices/interface")]


async def test_data_volumes_and_a_hot_plugged_nic_in_one_real_guest(
        cloud: Cloud, kernel_cleanup: Callable[..., None]) -> None:
    headers = cloud.headers()
    network = (await cloud.client.post("/network/v2.0/networks", headers=headers, json={
        "network": {"name": f"nic-{uuid.uuid4().hex[:6]}"}})).json()["network"]
    kernel_cleanup(network=network["id"])
    prefix = f"10.{uuid.uuid4().int % 180 + 64}.{uuid.uuid4().int % 250}"
    subnet = await cloud.client.post("/network/v2.0/subnets", headers=headers, json={
        "subnet": {"network_id": network["id"], "cidr": f"{prefix}.0/24", "ip_version": 4}})
    assert subnet.status_code == 201, subnet.text
    image_id = await publish(f"{ROOT}/identity/v3", "admin", ADMIN_PASSWORD, guest_image(),
                             client=cloud.client)
    existing = await cloud.volume("POST", "/volumes", json={"volume": {"size": 2}})
    assert existing.status_code == 202, existing.text
    eid = existing.json()["volume"]["id"]
    await cloud.wait("volume", f"/volumes/{eid}", "volume", "available")

    created = await cloud.compute("POST", "/servers", json={"server": {
        "name": "disks-and-nics", "imageRef": image_id, "flavorRef": "1", "networks": "none",
        "block_device_mapping_v2": [
            {"uuid": image_id, "source_type": "image", "destination_type": "local",
             "boot_index": 0},
            {"source_type": "blank", "destination_type": "volume", "volume_size": 1,
             "delete_on_termination": True},
            {"uuid": eid, "source_type": "volume", "destination_type": "volume"}]}})
    assert created.status_code == 202, created.text
    sid = created.json()["server"]["id"]
    await cloud.wait("compute", f"/servers/{sid}", "server", "ACTIVE")

    async def console() -> str:
        response = await cloud.compute("POST", f"/servers/{sid}/action",
                                       json={"os-getConsoleOutput": {"length": None}})
        return str(response.json()["output"])

    # The guest lists its disks at boot: the two volumes are vdb and vdc.
    text = await wait_console(console, r"^STRATUS-READY", within=240)
    assert f"STRATUS-DISK name=vdb size={1 << 30}" in text
    assert f"STRATUS-DISK name=vdc size={2 << 30}" in text
    listed = (await cloud.compute("GET", f"/servers/{sid}/os-volume_attachments")).json()
    devices = {a["device"]: a["volumeId"] for a in listed["volumeAttachments"]}
    assert devices["/dev/vdc"] == eid and set(devices) == {"/dev/vdb", "/dev/vdc"}
    blank_id = devices["/dev/vdb"]

    # A NIC on the network, hot-plugged on the tap the l2-agent made.
    attached = await cloud.compute("POST", f"/servers/{sid}/os-interface",
                                   json={"interfaceAttachment": {"net_id": network["id"]}})
    assert attached.status_code == 200, attached.text
    nic = attached.json()["interfaceAttachment"]
    tap = tap_name(nic["port_id"])
    kernel_cleanup(device=tap)
    assert nic["port_state"] == "ACTIVE" and nic["fixed_ips"][0]["ip_address"].startswith(
        prefix)
    assert _live_nics(sid) == [(nic["mac_addr"], tap)]
    # pyroute2's synchronous IPRoute runs its own loop: off this one, in a thread.
    in_bridge = await asyncio.to_thread(linux.bridge_ports, bridge_name(network["id"]))
    assert tap in [p.name for p in in_bridge]
    shown = (await cloud.compute("GET", f"/servers/{sid}")).json()["server"]
    assert [a["addr"] for a in shown["addresses"][network["name"]]] == [
        nic["fixed_ips"][0]["ip_address"]]

    detached = await cloud.compute("DELETE", f"/servers/{sid}/os-interface/{nic['port_id']}")
    assert detached.status_code == 202, detached.text
    await eventually(lambda: not _live_nics(sid), message="the NIC unplugged from the guest")
    port = await cloud.client.get(f"/network/v2.0/ports/{nic['port_id']}", headers=headers)
    assert port.status_code == 404  # made for the server: deleted with the detach
    for _ in range(300):
        if await asyncio.to_thread(linux.get_link, tap) is None:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"{tap} outlived its port")

    assert (await cloud.compute("DELETE", f"/servers/{sid}")).status_code == 204
    for _ in range(600):
        if (await cloud.volume("GET", f"/volumes/{blank_id}")).status_code == 404:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the blank volume outlived its server")
    kept = await cloud.wait("volume", f"/volumes/{eid}", "volume", "available")
    assert kept["attachments"] == []
    assert (await cloud.volume("DELETE", f"/volumes/{eid}")).status_code == 202
