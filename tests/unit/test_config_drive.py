"""Config drives: the files (Nova's layout), the ISO 9660 image read back with Debian's
``isoinfo``, the libvirt devices (a read-only cdrom; a rescue's instead of the guest's),
and what the agent gives the driver."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from stratus.compute.agent.guest import DriveOptions, guest_spec
from stratus.compute.metadata import config_drive
from stratus.compute.metadata.content import OPENSTACK_VERSIONS, InstanceData
from stratus.compute.objects import FlavorInfo, InstanceRecord
from stratus.compute.virt.config_drive import write_iso
from stratus.compute.virt.driver import GuestSpec, VirtError
from stratus.compute.virt.libvirt.guest_xml import domain_xml, rescue_domain_xml
from stratus.compute.virt.libvirt.moves import destination_xml

UUID = "0b4f5f5e-1111-4222-8333-944455556666"
NS = "https://stratus.dev/xmlns/libvirt/instance/1.0"
VIF = {"id": "port-1", "address": "fa:16:3e:00:00:01", "network_id": "net-1",
       "type": "bridge", "devname": "tapport-1", "mtu": 1450,
       "ips": [{"address": "10.0.0.5", "version": 4, "cidr": "10.0.0.0/24",
                "gateway": "10.0.0.1", "dhcp": True}]}


def data(**kwargs: object) -> InstanceData:
    base: dict[str, object] = dict(
        uuid=UUID, name="vm", hostname="vm", project_id="p1", metadata={"role": "db"},
        key_name="k", key_data="ssh-ed25519 AAAA k",
        user_data=base64.b64encode(b"#!/bin/sh\necho hi\n").decode(),
        network_info=(VIF,), flavor_name="m1.tiny")
    base.update(kwargs)
    return InstanceData(**base)  # type: ignore[arg-type]


def test_files_follow_novas_layout_with_the_password_only_in_meta_data() -> None:
    files = config_drive.files(data(), admin_pass="Pa55-word")
    for version in (*OPENSTACK_VERSIONS, "latest"):
        meta = json.loads(files[f"openstack/{version}/meta_data.json"])
        assert meta["uuid"] == UUID and meta["admin_pass"] == "Pa55-word"
        assert meta["meta"] == {"role": "db"} and meta["public_keys"] == {"k": "ssh-ed25519 AAAA k"}
        assert files[f"openstack/{version}/user_data"] == b"#!/bin/sh\necho hi\n"
        assert f"openstack/{version}/password" not in files  # the guest posts that one
    latest = "openstack/latest/"
    assert json.loads(files[latest + "network_data.json"])["links"][0][
        "ethernet_mac_address"] == VIF["address"]
    assert json.loads(files[latest + "vendor_data.json"]) == {}
    assert json.loads(files[latest + "vendor_data2.json"]) == {"static": {}}
    assert "openstack/2012-08-10/network_data.json" not in files  # 2015-10-15 on
    # EC2: the versions Nova keeps on a drive, the tree as JSON, the user data.
    assert sorted(p for p in files if p.startswith("ec2/")) == [
        "ec2/2009-04-04/meta-data.json", "ec2/2009-04-04/user-data",
        "ec2/latest/meta-data.json", "ec2/latest/user-data"]
    ec2 = json.loads(files["ec2/latest/meta-data.json"])
    assert ec2["instance-id"] == "i-0b4f5f5e" and ec2["local-ipv4"] == "10.0.0.5"
    assert ec2["public-keys"]["0"] == {"_name": "0=k", "openssh-key": "ssh-ed25519 AAAA k"}
    assert not any(b"Pa55-word" in body for path, body in files.items()
                   if not path.endswith("meta_data.json"))


def test_no_password_no_admin_pass_and_no_user_data_no_file() -> None:
    files = config_drive.files(data(user_data=None))
    assert "admin_pass" not in json.loads(files["openstack/latest/meta_data.json"])
    assert not any(p.endswith(("user_data", "user-data")) for p in files)


def _isoinfo(*args: str) -> str:
    if shutil.which("isoinfo") is None:
        pytest.fail("isoinfo (Debian's genisoimage) is not installed")
    return subprocess.run(["isoinfo", *args], capture_output=True, text=True, check=True,
                          timeout=30).stdout


def test_the_iso_is_labelled_config_2_and_reads_back_whole(tmp_path: Path) -> None:
    files = config_drive.files(data(), admin_pass="Pa55-word")
    target = write_iso(files, tmp_path / "disk.config")
    assert _isoinfo("-d", "-i", str(target)).count("Volume id: config-2") == 1
    listed = {line.strip() for line in _isoinfo("-R", "-f", "-i", str(target)).splitlines()}
    assert {f"/{p}" for p in files} <= listed
    for path, body in files.items():
        assert subprocess.run(["isoinfo", "-R", "-i", str(target), "-x", f"/{path}"],
                              capture_output=True, check=True, timeout=30).stdout == body
    # Only the image is left, and only its owner reads it (it holds the password).
    assert [p.name for p in tmp_path.iterdir()] == ["disk.config"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_a_failed_iso_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    with pytest.raises(VirtError, match="genisoimage is not installed"):
        write_iso({"openstack/latest/meta_data.json": b"{}"}, tmp_path / "disk.config")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv("PATH", os.defpath)
    with pytest.raises(VirtError, match="not a relative path"):
        write_iso({"../escape": b"x"}, tmp_path / "disk.config")
    assert list(tmp_path.iterdir()) == []


def _guest(drive: dict[str, bytes] | None) -> GuestSpec:
    return GuestSpec(uuid=UUID, name="vm", vcpus=1, memory_mb=128, root_gb=1,
                     image_path=Path("/img"), config_drive=drive)


def _domain(config: Path | None) -> str:
    return domain_xml(_guest({} if config else None), virt_type="qemu",
                      domain_name=f"instance-{UUID}", disk_path=Path("/inst/disk"),
                      console_log=Path("/inst/console.log"), metadata_ns=NS, host="h1",
                      config_drive=config)


def _disks(xml: str) -> list[tuple[str | None, ...]]:
    """(device, source file, target dev, bus, "ro" when read-only) of each disk."""
    found = []
    for disk in ET.fromstring(xml).iterfind("./devices/disk"):
        source, target = disk.find("source"), disk.find("target")
        assert source is not None and target is not None
        found.append((disk.get("device"), source.get("file"), target.get("dev"),
                      target.get("bus"), "ro" if disk.find("readonly") is not None else None))
    return found


def test_the_drive_is_a_read_only_ide_cdrom_and_a_rescue_brings_its_own() -> None:
    assert _disks(_domain(None)) == [("disk", "/inst/disk", "vda", "virtio", None)]
    own = _domain(Path("/inst/disk.config"))
    assert _disks(own) == [("disk", "/inst/disk", "vda", "virtio", None),
                           ("cdrom", "/inst/disk.config", "hdd", "ide", "ro")]
    rescued = rescue_domain_xml(own, Path("/inst/disk.rescue"), NS,
                                Path("/inst/disk.config.rescue"))
    assert _disks(rescued) == [("disk", "/inst/disk.rescue", "vda", "virtio", None),
                               ("disk", "/inst/disk", "vdb", "virtio", None),
                               ("cdrom", "/inst/disk.config.rescue", "hdd", "ide", "ro")]
    # A rescue without a drive of its own does not show the guest's either.
    assert [d[1] for d in _disks(rescue_domain_xml(own, Path("/r"), NS))] == ["/r",
                                                                             "/inst/disk"]
    # A live migration points the cdrom at the drive made at the destination.
    moved = destination_xml(own, {"disk": "/dest/disk", "config_drive": "/dest/disk.config",
                                  "console_log": "/dest/console.log", "host": "h2",
                                  "instances_dir": "/dest"}, NS)
    assert [d[1] for d in _disks(moved)] == ["/dest/disk", "/dest/disk.config"]


def _record(**kwargs: object) -> InstanceRecord:
    base: dict[str, object] = dict(
        uuid=UUID, name="vm", hostname="vm", project_id="p1", user_id="u1",
        flavor=FlavorInfo(id="1", name="m1.tiny", vcpus=1, ram=128, disk=1),
        image_ref="img", vm_state="building", network_info=[VIF], key_name="k",
        key_data="ssh-ed25519 AAAA k")
    base.update(kwargs)
    return InstanceRecord.model_validate(base)


def test_the_agent_gives_a_drive_only_to_servers_that_have_one() -> None:
    assert guest_spec(_record(), None, [VIF], []).config_drive is None
    spec = guest_spec(_record(config_drive=True), None, [VIF], [],
                      drive=DriveOptions(dhcp_domain="example.org", zone="az1"),
                      admin_pass="b00t-pass")
    assert spec.config_drive is not None
    meta = json.loads(spec.config_drive["openstack/latest/meta_data.json"])
    assert (meta["hostname"], meta["availability_zone"], meta["admin_pass"]) == (
        "vm.example.org", "az1", "b00t-pass")
    assert "b00t-pass" not in repr(spec)
