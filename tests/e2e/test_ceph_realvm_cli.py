"""Real guests on RBD disks: ``stratus up --storage ceph`` on real Ceph, the real ``openstack``
CLI, libvirt/QEMU (TCG here) opening ``vms/<uuid>_disk`` and rbd volumes through librbd; a
boot while Ceph is down."""

from __future__ import annotations

import re
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stratus.compute.virt.libvirt import host as libvirt_host
from stratus.core.ceph_dev import DevCluster
from tests.ceph_cluster import admin_connection
from tests.e2e.cloud import Cloud, libvirt_cloud
from tests.e2e.test_compute_images_cli import wait_status
from tests.e2e.test_realvm_cli import console_until, domains
from tests.e2e.test_realvm_snapshot_cli import MARKER_SCRIPT
from tests.e2e.test_volume_cli import wait_volume
from tests.realvm import guest_image, libvirt_ready

pytestmark = [pytest.mark.e2e, pytest.mark.realvm, pytest.mark.serial]


@pytest.fixture
def ceph_vm_cloud(tmp_path: Path, ceph_cluster: DevCluster) -> Iterator[Cloud]:
    libvirt_ready()
    env = {k: v for k, v in ceph_cluster.env().items() if k.startswith("STRATUS_CEPH__")}
    with libvirt_cloud(tmp_path / "data", ["up", "--storage", "ceph"], **env) as instance:
        yield instance


def _rbd_names(cluster: DevCluster, pool: str) -> list[str]:
    import rbd

    with admin_connection(cluster) as conn, conn.open_ioctx(pool) as ioctx:
        return list(rbd.RBD().list(ioctx))


def _domain_xml_and_secret(server_id: str) -> tuple[str, Any]:
    libvirt = libvirt_host.libvirt_module()
    conn = libvirt.open(libvirt_host.DEFAULT_URI)
    try:
        xml = conn.lookupByUUIDString(server_id).XMLDesc(0)
        secret_uuid = xml.split("<secret type='ceph' uuid='", 1)[1].split("'", 1)[0]
        secret = conn.secretLookupByUUIDString(secret_uuid)
        try:
            secret.value()
            readable = True
        except libvirt.libvirtError:  # private: nobody reads the key back
            readable = False
        return xml, (secret.XMLDesc(0), readable)
    finally:
        conn.close()


@pytest.mark.timeout(1200)
def test_a_guest_boots_from_a_clone_in_vms_takes_an_rbd_volume_and_leaves_nothing(
        ceph_vm_cloud: Cloud, ceph_cluster: DevCluster, tmp_path: Path) -> None:
    import rbd

    cloud = ceph_vm_cloud
    assert "guests' disks in vms" in cloud.console()
    raw = tmp_path / "guest.raw"  # only raw images are cloned (RBD disks are raw)
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(guest_image()),
                    str(raw)], check=True)
    image = cloud.openstack_json("image", "create", "--file", str(raw), "--disk-format", "raw",
                                 "--container-format", "bare", "guest-raw")

    marker = f"rbd-guest-{secrets.token_hex(4)}"
    script = tmp_path / "marker.sh"
    script.write_text(MARKER_SCRIPT.replace("@MARKER@", marker))
    server = cloud.openstack_json("server", "create", "--image", "guest-raw", "--flavor",
                                  "m1.tiny", "--network", "private", "--user-data",
                                  str(script), "--wait", "vm-rbd")
    assert server["status"] == "ACTIVE", cloud.log()[-3000:]
    server_id = server["id"]
    booted = console_until(cloud, "vm-rbd", r"^STRATUS-READY", within=300)
    assert "STRATUS-DISK name=vda size=1073741824" in booted  # grown to m1.tiny's root disk
    assert f"MARKER-WRITTEN {marker}" in booted, booted[-2000:]

    # Its root disk is a copy-on-write clone of the image's snapshot: nothing downloaded.
    with admin_connection(ceph_cluster) as conn, conn.open_ioctx("vms") as vms, \
            rbd.Image(vms, f"{server_id}_disk", read_only=True) as disk:
        parent = disk.get_parent_image_spec()
        assert (parent["pool_name"], parent["image_name"], parent["snap_name"]) == (
            "images", image["id"], "snap")
        assert disk.size() == 1 << 30  # m1.tiny's root disk
    cache = cloud.data_dir / "image-cache"
    assert not cache.exists() or not [p for p in cache.rglob("*") if p.is_file()]

    # QEMU reaches it through librbd with the key in an ephemeral, private libvirt secret:
    # the key is in neither the domain, nor the secret's definition, nor the log.
    xml, (secret_xml, readable) = _domain_xml_and_secret(server_id)
    assert f"<source protocol='rbd' name='vms/{server_id}_disk'" in xml
    assert "ephemeral='yes'" in secret_xml and "private='yes'" in secret_xml
    assert not readable
    key = next(line.split("=", 1)[1].strip()
               for line in ceph_cluster.stratus_keyring.read_text().splitlines()
               if line.strip().startswith("key"))
    for text in (xml, secret_xml, cloud.log()):
        assert key not in text

    # A snapshot is made in Ceph (Nova's direct snapshot): the disk's RBD snapshot cloned
    # into the image store's pool and flattened; nothing passes through the host, nothing is
    # left on the guest's disk. A server booted from it is a clone of it and finds the
    # first guest's marker on its disk.
    cloud.openstack("server", "image", "create", "--name", "vm-rbd-snap", "--wait", "vm-rbd")
    snap = cloud.openstack_json("image", "show", "vm-rbd-snap")
    assert (snap["status"], snap["disk_format"], snap["size"]) == ("active", "raw", 1 << 30)
    assert snap["properties"]["instance_uuid"] == server_id
    assert snap["checksum"]
    with admin_connection(ceph_cluster) as conn, conn.open_ioctx("images") as images, \
            rbd.Image(images, snap["id"], read_only=True) as copy:
        with pytest.raises(rbd.ImageNotFound):
            copy.get_parent_image_spec()  # flattened: independent of the server's disk
        assert [s["name"] for s in copy.list_snaps()] == ["snap"]
        assert copy.is_protected_snap("snap")
    with admin_connection(ceph_cluster) as conn, conn.open_ioctx("vms") as vms, \
            rbd.Image(vms, f"{server_id}_disk", read_only=True) as disk:
        assert list(disk.list_snaps()) == []
    assert not cache.exists() or not [p for p in cache.rglob("*") if p.is_file()]
    shown = cloud.openstack_json("server", "show", "vm-rbd")
    assert (shown["status"], shown["OS-EXT-STS:task_state"]) == ("ACTIVE", None)
    second = cloud.openstack_json("server", "create", "--image", "vm-rbd-snap", "--flavor",
                                  "m1.tiny", "--network", "private", "--user-data",
                                  str(script), "--wait", "vm-rbd-2")
    assert second["status"] == "ACTIVE", cloud.log()[-3000:]
    again = console_until(cloud, "vm-rbd-2", r"^STRATUS-USERDATA-END", within=300)
    found = re.search(r"^MARKER-FOUND (\S+)", again, re.MULTILINE)
    assert found is not None and found.group(1) == marker, again[-2000:]
    with admin_connection(ceph_cluster) as conn, conn.open_ioctx("vms") as vms, \
            rbd.Image(vms, f"{second['id']}_disk", read_only=True) as disk:
        assert disk.get_parent_image_spec()["image_name"] == snap["id"]
    cloud.openstack("server", "delete", "--wait", "vm-rbd-2")
    cloud.openstack("image", "delete", "vm-rbd-snap")
    assert not [n for n in _rbd_names(ceph_cluster, "images") if snap["id"] in n]

    _boot_from_an_rbd_volume(cloud, ceph_cluster, image["id"], script, marker)

    # An RBD volume attached live is the guest's vdb (librbd again); detached, it goes.
    cloud.openstack("volume", "create", "--size", "1", "data")
    volume_id = wait_volume(cloud, "data", "available")["id"]
    cloud.openstack("server", "add", "volume", "vm-rbd", "data")
    wait_volume(cloud, "data", "in-use")
    console_until(cloud, "vm-rbd", r"^STRATUS-DISK-ADDED name=vdb size=1073741824")
    xml, _ = _domain_xml_and_secret(server_id)
    assert f"<source protocol='rbd' name='volumes/volume-{volume_id}'" in xml
    cloud.openstack("server", "remove", "volume", "vm-rbd", "data")
    wait_volume(cloud, "data", "available")
    console_until(cloud, "vm-rbd", r"^STRATUS-DISK-REMOVED name=vdb")
    cloud.openstack("volume", "delete", "data")
    deadline = time.monotonic() + 60
    while cloud.openstack_json("volume", "list"):
        assert time.monotonic() < deadline, "the volume was not deleted"
        time.sleep(0.5)
    assert not [n for n in _rbd_names(ceph_cluster, "volumes") if volume_id in n]

    # A rebuild makes the disk afresh the same way: a clone again, still nothing downloaded.
    cloud.openstack("server", "rebuild", "--image", "guest-raw", "--wait", "vm-rbd")
    with admin_connection(ceph_cluster) as conn, conn.open_ioctx("vms") as vms, \
            rbd.Image(vms, f"{server_id}_disk", read_only=True) as disk:
        assert disk.get_parent_image_spec()["image_name"] == image["id"]
    assert not cache.exists() or not [p for p in cache.rglob("*") if p.is_file()]

    cloud.openstack("server", "delete", "--wait", "vm-rbd")
    assert server_id not in domains()
    assert not [n for n in _rbd_names(ceph_cluster, "vms") if server_id in n]
    cloud.openstack("image", "delete", "guest-raw")  # no clone holds it any more
    assert not [n for n in _rbd_names(ceph_cluster, "images") if image["id"] in n]


def _boot_from_an_rbd_volume(cloud: Cloud, cluster: DevCluster, image_id: str, script: Path,
                             marker: str) -> None:
    """Boot from volume (block_device_mapping_v2: image → volume, boot_index 0): the root
    volume is a copy-on-write clone of the image's snapshot in ``volumes``, QEMU opens it
    through librbd as vda, and the server's delete takes the volume with it."""
    import rbd

    server = cloud.openstack_json(
        "server", "create", "--flavor", "m1.tiny", "--network", "private", "--block-device",
        f"uuid={image_id},source_type=image,destination_type=volume,volume_size=1,"
        "boot_index=0,delete_on_termination=true",
        "--user-data", str(script), "--wait", "vm-bfv")
    assert server["status"] == "ACTIVE", cloud.log()[-3000:]
    server_id = server["id"]
    (attached,) = cloud.openstack_json("server", "volume", "list", "vm-bfv")
    assert attached["Device"] == "/dev/vda"
    volume_id = attached["Volume ID"]
    volume = cloud.openstack_json("volume", "show", volume_id)
    assert (volume["status"], volume["size"]) == ("in-use", 1)
    assert volume["bootable"] in (True, "true")

    with admin_connection(cluster) as conn, conn.open_ioctx("volumes") as volumes, \
            rbd.Image(volumes, f"volume-{volume_id}", read_only=True) as disk:
        parent = disk.get_parent_image_spec()
        assert (parent["pool_name"], parent["image_name"], parent["snap_name"]) == (
            "images", image_id, "snap")
        assert disk.size() == 1 << 30
    # The volume is the root disk: the host made no disk of its own in vms (asked by the
    # server's id: a real-guest test beside this one may have its guests' disks there).
    assert not [n for n in _rbd_names(cluster, "vms") if server_id in n]

    booted = console_until(cloud, "vm-bfv", r"^STRATUS-READY", within=300)
    assert "STRATUS-METADATA ok" in booted, booted[-2000:]
    assert "STRATUS-GUEST ip=" in booted and f"uuid={server_id}" in booted, booted[-2000:]
    assert "STRATUS-DISK name=vda size=1073741824" in booted
    assert f"MARKER-WRITTEN {marker}" in booted, booted[-2000:]  # a fresh clone of the image
    xml, _ = _domain_xml_and_secret(server_id)
    assert f"<source protocol='rbd' name='volumes/volume-{volume_id}'" in xml

    cloud.openstack("server", "delete", "--wait", "vm-bfv")
    assert server_id not in domains()
    deadline = time.monotonic() + 60
    while volume_id in [v["ID"] for v in cloud.openstack_json("volume", "list")]:
        assert time.monotonic() < deadline, "the root volume was not deleted with the server"
        time.sleep(0.5)
    assert not [n for n in _rbd_names(cluster, "volumes") if volume_id in n]
    assert not [n for n in _rbd_names(cluster, "vms") if server_id in n]


def _boot(cloud: Cloud, name: str) -> str:
    """A server of the raw test guest, ACTIVE; its id."""
    server = cloud.openstack_json("server", "create", "--image", "guest-raw", "--flavor",
                                  "m1.tiny", "--network", "private", "--wait", name)
    assert server["status"] == "ACTIVE", cloud.log()[-3000:]
    return str(server["id"])


def test_a_boot_while_ceph_is_down_ends_in_error_naming_ceph_and_leaves_nothing(
        ceph_cluster: DevCluster, tmp_path: Path) -> None:
    """A private cluster (the run's shared one must not stop under other tests)."""
    del ceph_cluster  # (the packages and bindings are there: the fixture checked)
    libvirt_ready()
    cluster = DevCluster(Path(f"/tmp/sv-{uuid.uuid4().hex[:8]}"))
    try:
        cluster.up()
        env = {k: v for k, v in cluster.env().items() if k.startswith("STRATUS_CEPH__")}
        with libvirt_cloud(tmp_path / "data", ["up", "--storage", "ceph"],
                           STRATUS_CEPH__CONNECT_TIMEOUT="3", STRATUS_CEPH__OP_TIMEOUT="5",
                           **env) as cloud:
            raw = tmp_path / "guest.raw"
            subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw",
                            str(guest_image()), str(raw)], check=True)
            cloud.openstack("image", "create", "--file", str(raw), "--disk-format", "raw",
                            "--container-format", "bare", "guest-raw")

            # A guest running on Ceph: the host's connection is made and in use.
            before = _boot(cloud, "vm-before")
            cluster.down()
            server = cloud.openstack_json("server", "create", "--image", "guest-raw",
                                          "--flavor", "m1.tiny", "--network", "private",
                                          "vm-lost")
            shown = wait_status(cloud, "vm-lost", "ERROR", within=180)
            assert "Ceph did not answer" in shown["fault"]["message"], shown["fault"]
            assert server["id"] not in domains()
            assert not (cloud.data_dir / "instances" / server["id"]).exists()
            assert cloud.openstack_json("port", "list", "--device-id", server["id"]) == []

            cluster.up()  # back: the next boot works, nothing to clean by hand
            assert not [n for n in _rbd_names(cluster, "vms") if server["id"] in n]
            after = _boot(cloud, "vm-after")
            cloud.openstack("server", "delete", "--wait", "vm-lost", "vm-before", "vm-after")
            assert not [n for n in _rbd_names(cluster, "vms")
                        if before in n or after in n or server["id"] in n]
    finally:
        cluster.down(purge=True)
    assert cluster.pids() == {}
