"""Domain and device XML of the libvirt driver, and the test guest's initramfs pieces."""

from __future__ import annotations

import gzip
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from stratus.compute.virt.driver import GuestSpec, LocalDisk, VirtError
from stratus.compute.virt.libvirt.driver import without_secrets
from stratus.compute.virt.libvirt.guest_xml import (
    RbdSource,
    cpu_shares,
    domain_xml,
    interface_xml,
    rescue_domain_xml,
    root_volume,
    volume_xml,
)
from stratus.compute.virt.libvirt.host import cgroup_cpu_version
from stratus.compute.virt.libvirt.moves import destination_xml
from stratus.compute.virt.libvirt.rbd_disks import secret_xml
from stratus.guest_image import builder

UUID = "6f1c1a43-7a0b-4f47-a3a5-0d6c3c51a0e1"
NS = "https://stratus.dev/xmlns/libvirt/instance/1.0"


def make(network_info: list[dict[str, object]] | None = None,
         virt_type: str = "qemu") -> ET.Element:
    guest = GuestSpec(uuid=UUID, name="web <1>", vcpus=2, memory_mb=768, root_gb=5,
                      image_path=Path("/cache/img"), network_info=network_info or [])
    return ET.fromstring(domain_xml(guest, virt_type=virt_type, domain_name=f"instance-{UUID}",
                                    disk_path=Path("/inst/disk"),
                                    console_log=Path("/inst/console.log"),
                                    metadata_ns=NS, host="node1"))


def test_domain_identity_size_and_smbios() -> None:
    dom = make()
    assert dom.get("type") == "qemu"
    assert dom.findtext("name") == f"instance-{UUID}"
    assert dom.findtext("uuid") == UUID
    assert dom.findtext("title") == "web <1>"  # escaped, not injected
    assert dom.findtext("vcpu") == "2"
    memory = dom.find("memory")
    assert memory is not None and (memory.text, memory.get("unit")) == ("768", "MiB")
    entries = {e.get("name"): e.text for e in dom.iterfind("./sysinfo/system/entry")}
    assert entries["product"] == "OpenStack Nova"
    assert entries["serial"] == UUID and entries["uuid"] == UUID
    assert entries["manufacturer"]
    smbios = dom.find("./os/smbios")
    assert smbios is not None and smbios.get("mode") == "sysinfo"
    assert dom.find(f"./metadata/{{{NS}}}instance/{{{NS}}}name") is not None
    assert dom.find("./features/acpi") is not None
    assert dom.find("cpu") is None  # TCG: QEMU's default model
    assert make(virt_type="kvm").find("cpu").get("mode") == "host-passthrough"  # type: ignore[union-attr]


V1_MOUNTS = """\
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,nosuid,nodev,noexec,relatime 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,nosuid,nodev,noexec,relatime,cpu 0 0
cgroup /sys/fs/cgroup/cpuacct cgroup rw,nosuid,nodev,noexec,relatime,cpuacct 0 0
"""
V2_MOUNTS = """\
cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate 0 0
cgroup /sys/fs/cgroup/cpuacct cgroup rw,nosuid,nodev,noexec,relatime,cpuacct 0 0
"""


def test_a_guest_weighs_on_the_host_cpu_as_its_vcpus_and_its_emulator() -> None:
    """libvirt puts all of a guest's threads in one cgroup, which by default weighs as one
    task: the domain's shares are one task's weight per vCPU plus one for QEMU's own
    threads, in the units of the host's cgroup version and within its range."""
    assert cgroup_cpu_version(V1_MOUNTS) == 1
    assert cgroup_cpu_version(V2_MOUNTS) == 2  # cpuacct alone is not the cpu controller
    assert cgroup_cpu_version("cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,cpu,cpuacct 0 0") == 1
    assert (cpu_shares(1, 1), cpu_shares(4, 1)) == (2048, 5120)
    assert (cpu_shares(1, 2), cpu_shares(4, 2)) == (200, 500)
    assert cpu_shares(128, 2) == 10000  # cpu.weight's largest
    xml = domain_xml(GuestSpec(uuid=UUID, name="g", vcpus=2, memory_mb=512, root_gb=1),
                     virt_type="qemu", domain_name="instance-c", disk_path=Path("/i/disk"),
                     console_log=Path("/i/console.log"), metadata_ns=NS, host="node1",
                     cpu_shares=cpu_shares(2, 1))
    assert ET.fromstring(xml).findtext("./cputune/shares") == "3072"
    assert make().find("cputune") is None  # not given: libvirt's default


QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"


def test_a_tcg_domain_has_libvirt_check_its_cpu_by_cpuid_words_not_per_property() -> None:
    """libvirt 9.0 reads a started guest's CPU back one QMP ``qom-get`` per feature (~410
    round trips, most of the start) unless told QEMU lacks ``cpu-unavailable-features``; the
    element is in libvirt's QEMU namespace, under the ``qemu`` prefix, and survives the
    rescue's re-serialisation (it must still reach libvirt then)."""
    xml = domain_xml(GuestSpec(uuid=UUID, name="g", vcpus=1, memory_mb=512, root_gb=1),
                     virt_type="qemu", domain_name="instance-c", disk_path=Path("/i/disk"),
                     console_log=Path("/i/console.log"), metadata_ns=NS, host="node1")
    assert f'xmlns:qemu="{QEMU_NS}"' in xml
    for text in (xml, rescue_domain_xml(xml, Path("/i/rescue"), NS)):
        dom = ET.fromstring(text)
        removed = [d.get("capability") for d in
                   dom.iterfind(f"./{{{QEMU_NS}}}capabilities/{{{QEMU_NS}}}del")]
        assert removed == ["cpu-unavailable-features"]
        assert dom.find("cpu") is None  # the guest's CPU itself is QEMU's default, as before
    kvm = make(virt_type="kvm")
    assert kvm.find(f"{{{QEMU_NS}}}capabilities") is None


def test_disk_console_and_no_user_networking() -> None:
    dom = make()
    disk = dom.find("./devices/disk")
    assert disk is not None
    assert disk.find("source").get("file") == "/inst/disk"  # type: ignore[union-attr]
    assert disk.find("target").attrib == {"dev": "vda", "bus": "virtio"}  # type: ignore[union-attr]
    assert disk.find("driver").get("type") == "qcow2"  # type: ignore[union-attr]
    log = dom.find("./devices/serial/log")
    assert log is not None and log.attrib == {"file": "/inst/console.log", "append": "on"}
    assert dom.find("./devices/interface") is None
    seclabel = dom.find("seclabel")
    assert seclabel is not None and seclabel.get("relabel") == "no"
    assert seclabel.findtext("label") == "+0:+0"


def test_tap_interfaces() -> None:
    """Virtio NICs on the taps, without an option ROM (the guest boots from its disk only:
    SeaBIOS need not run iPXE's init on every boot)."""
    dom = make([{"id": "p1", "address": "fa:16:3e:00:00:01", "devname": "tapp1",
                 "bridge": "brq1", "mtu": 1450, "type": "bridge"}])
    iface = dom.find("./devices/interface")
    assert iface is not None and iface.get("type") == "ethernet"
    assert iface.find("mac").get("address") == "fa:16:3e:00:00:01"  # type: ignore[union-attr]
    assert iface.find("target").attrib == {"dev": "tapp1", "managed": "no"}  # type: ignore[union-attr]
    assert iface.find("model").get("type") == "virtio"  # type: ignore[union-attr]
    assert iface.find("mtu").get("size") == "1450"  # type: ignore[union-attr]
    assert iface.find("rom").attrib == {"enabled": "no"}  # type: ignore[union-attr]
    assert all(i.get("type") != "user" for i in dom.iterfind("./devices/interface"))
    with pytest.raises(VirtError, match="without a tap"):
        make([{"id": "p2", "address": "fa:16:3e:00:00:02", "devname": ""}])
    with pytest.raises(VirtError, match="without a tap"):
        make([{"id": "p3", "address": "fa:16:3e:00:00:03", "devname": "x", "type": "vhostuser"}])


def test_volume_xml() -> None:
    disk = ET.fromstring(volume_xml({"driver_volume_type": "file",
                                     "data": {"path": "/v/vol1", "volume_id": "vol-1"}},
                                    "/dev/vdb"))
    assert disk.find("source").get("file") == "/v/vol1"  # type: ignore[union-attr]
    assert disk.find("target").attrib == {"dev": "vdb", "bus": "virtio"}  # type: ignore[union-attr]
    assert disk.find("driver").get("type") == "raw"  # type: ignore[union-attr]
    assert disk.findtext("serial") == "vol-1"
    flat = ET.fromstring(volume_xml({"driver_volume_type": "file", "path": "/v/x",
                                     "format": "qcow2"}, "vdc"))
    assert flat.find("driver").get("type") == "qcow2"  # type: ignore[union-attr]
    for info, mountpoint, words in (({"driver_volume_type": "iscsi"}, "/dev/vdb", "iscsi"),
                                    ({"driver_volume_type": "file"}, "/dev/vdb", "no file"),
                                    ({"driver_volume_type": "file", "path": "/v"}, "/dev/sda",
                                     "virtio disk")):
        with pytest.raises(VirtError, match=words):
            volume_xml(info, mountpoint)


def test_data_volumes_and_local_disks_follow_the_root_disk() -> None:
    guest = GuestSpec(
        uuid=UUID, name="disks", vcpus=1, memory_mb=256, root_gb=1,
        image_path=Path("/cache/img"),
        local_disks=[LocalDisk(kind="ephemeral", device="/dev/vdb", size_mb=1024),
                     LocalDisk(kind="swap", device="/dev/vdc", size_mb=256,
                               guest_format="swap")],
        block_devices=[{"mountpoint": "/dev/vdd", "connection_info": {
            "driver_volume_type": "file", "data": {"path": "/v/blank", "volume_id": "b"}}},
            {"mountpoint": "/dev/vde", "connection_info": {
                "driver_volume_type": "file", "data": {"path": "/v/old"}}}])
    dom = ET.fromstring(domain_xml(
        guest, virt_type="qemu", domain_name=f"instance-{UUID}", disk_path=Path("/i/disk"),
        console_log=Path("/i/console.log"), metadata_ns=NS, host="node1",
        local_disks={"/dev/vdb": Path("/i/disk.eph0"), "/dev/vdc": Path("/i/disk.swap")}))
    disks = [(d.find("target").get("dev"), d.find("source").get("file"),  # type: ignore[union-attr]
              d.find("driver").get("type"))  # type: ignore[union-attr]
             for d in dom.iterfind("./devices/disk")]
    assert disks == [("vda", "/i/disk", "qcow2"), ("vdb", "/i/disk.eph0", "qcow2"),
                     ("vdc", "/i/disk.swap", "qcow2"), ("vdd", "/v/blank", "raw"),
                     ("vde", "/v/old", "raw")]
    with pytest.raises(VirtError, match="No file was made"):
        domain_xml(guest, virt_type="qemu", domain_name="x", disk_path=Path("/i/disk"),
                   console_log=Path("/i/c"), metadata_ns=NS, host="node1")


def test_interface_xml_for_hot_plugging() -> None:
    iface = ET.fromstring(interface_xml({"id": "p1", "address": "fa:16:3e:00:00:09",
                                         "devname": "tapp1", "type": "bridge"}, "vm"))
    assert iface.tag == "interface" and iface.get("type") == "ethernet"
    assert iface.find("target").attrib == {"dev": "tapp1", "managed": "no"}  # type: ignore[union-attr]
    assert iface.find("rom").attrib == {"enabled": "no"}  # type: ignore[union-attr]
    with pytest.raises(VirtError, match="without a tap"):
        interface_xml({"id": "p2", "address": "fa:16:3e:00:00:0a"}, "vm")


def test_local_disks_are_qcow2_files_blank_or_formatted(tmp_path: Path) -> None:
    import json
    import subprocess

    from stratus.compute.virt.libvirt.tools import create_local_disk

    blank = create_local_disk(LocalDisk(kind="ephemeral", device="/dev/vdb", size_mb=64),
                              tmp_path, 0)
    swap = create_local_disk(LocalDisk(kind="swap", device="/dev/vdc", size_mb=32,
                                       guest_format="swap"), tmp_path, 1)
    assert (blank.name, swap.name) == ("disk.eph0", "disk.swap")
    for path, size in ((blank, 64 << 20), (swap, 32 << 20)):
        info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(path)],
                                         capture_output=True, check=True, text=True).stdout)
        assert (info["format"], info["virtual-size"]) == ("qcow2", size)
    raw = tmp_path / "check.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(swap), str(raw)], check=True)
    assert b"SWAPSPACE2" in raw.read_bytes()[:8192]  # mkswap's signature, at page end
    assert sorted(p.name for p in tmp_path.iterdir()) == ["check.raw", "disk.eph0",
                                                          "disk.swap"]


def test_a_cold_move_carries_the_local_disks_and_makes_those_the_source_lacks(
        tmp_path: Path) -> None:
    from stratus.compute.virt.libvirt.moves import _move_local_disks

    source, dest = tmp_path / "aside", tmp_path / "dest"
    source.mkdir()
    dest.mkdir()
    (source / "disk.eph0").write_bytes(b"what the guest wrote")
    guest = GuestSpec(uuid=UUID, name="m", vcpus=1, memory_mb=64, root_gb=1, local_disks=[
        LocalDisk(kind="ephemeral", device="/dev/vdb", size_mb=16),
        LocalDisk(kind="swap", device="/dev/vdc", size_mb=8)])
    made = _move_local_disks(guest, {"directory": str(source)}, dest)
    assert made == {"/dev/vdb": dest / "disk.eph0", "/dev/vdc": dest / "disk.swap"}
    assert (dest / "disk.eph0").read_bytes() == b"what the guest wrote"
    assert (source / "disk.eph0").exists()  # the source keeps its copy until confirmed
    assert (dest / "disk.swap").stat().st_size > 0


def test_initramfs_archive_and_module_order(tmp_path: Path) -> None:
    kernel = tmp_path / "kernel"
    (kernel / "drivers").mkdir(parents=True)
    # depends= as the kernel's modinfo section stores it (NUL-separated strings).
    (kernel / "drivers" / "a.ko").write_bytes(b"\x7fELF\x00license=GPL\x00depends=b,c-d\x00")
    (kernel / "drivers" / "b.ko").write_bytes(b"\x00depends=c_d\x00")
    (kernel / "drivers" / "c-d.ko").write_bytes(b"\x00depends=\x00")
    order = [name for name, _ in builder._module_closure(kernel, ["a"])]
    assert order == ["c_d", "b", "a"]
    with pytest.raises(builder.GuestImageError, match="not found"):
        builder._module_closure(kernel, ["nope"])

    busybox = tmp_path / "busybox"
    busybox.write_bytes(b"#!busybox")
    archive = gzip.decompress(builder._initramfs(busybox, [("a", kernel / "drivers" / "a.ko")],
                                                 [("b", kernel / "drivers" / "b.ko")]))
    names = []
    offset = 0
    while offset < len(archive):
        header = archive[offset:offset + 110]
        assert header[:6] == b"070701"
        size, namesize = int(header[54:62], 16), int(header[94:102], 16)
        name = archive[offset + 110:offset + 110 + namesize - 1].decode()
        names.append(name)
        offset += 110 + namesize
        offset += -offset % 4
        offset += size + (-size % 4)
        if name == "TRAILER!!!":
            break
    assert {"init", "bin/busybox", "dev/console", "lib/modules/a.ko", "etc/modules-order",
            "lib/modules/b.ko", "etc/modules-config-drive", "etc/udhcpc.script",
            "etc/acpi/PWRF/00000080", "etc/passwd", "etc/dropbear"} <= set(names)
    assert names[-1] == "TRAILER!!!"


def test_elf_closure_follows_the_interpreter_and_needed_libraries() -> None:
    """On this (Debian) machine's own python3: its interpreter at the path the program
    names, libc under its soname in the multiarch directory, the interpreter not twice."""
    found = dict(builder._elf_closure(Path("/"), "usr/bin/python3"))
    interp, needed = builder._elf_deps(found["usr/bin/python3"].read_bytes())
    assert interp == "/lib64/ld-linux-x86-64.so.2" and "libc.so.6" in needed
    assert found["lib64/ld-linux-x86-64.so.2"].is_file()
    assert found["lib/x86_64-linux-gnu/libc.so.6"].is_file()
    assert "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" not in found
    with pytest.raises(builder.GuestImageError, match="not a little-endian 64-bit ELF"):
        builder._elf_deps(b"#!/bin/sh\n")
    with pytest.raises(builder.GuestImageError, match="in none of the guest's packages"):
        builder._elf_closure(Path("/"), "usr/sbin/no-such-program")


def test_cache_key_follows_packages() -> None:
    one = [builder.Package("linux-image-x", "1"), builder.Package("busybox-static", "1")]
    two = [builder.Package("linux-image-x", "2"), builder.Package("busybox-static", "1")]
    assert builder.cache_key(one) == builder.cache_key(list(one))
    assert builder.cache_key(one) != builder.cache_key(two)


def test_a_live_migration_points_the_domain_at_the_destination_files() -> None:
    ns = "https://example.test/ns"
    guest = GuestSpec(uuid="11111111-2222-3333-4444-555555555555", name="m", vcpus=1,
                      memory_mb=256, root_gb=1)
    source = domain_xml(guest, virt_type="qemu", domain_name="instance-m",
                        disk_path=Path("/a/instances/m/disk"),
                        console_log=Path("/a/instances/m/console.log"), metadata_ns=ns,
                        host="host-a", instances_dir=Path("/a/instances"))
    moved = ET.fromstring(destination_xml(source, {
        "disk": "/b/instances/m/disk", "console_log": "/b/instances/m/console.log",
        "host": "host-b", "instances_dir": "/b/instances"}, ns))
    disk = moved.find("./devices/disk[@device='disk']/source")
    assert disk is not None and disk.get("file") == "/b/instances/m/disk"
    log = moved.find("./devices/serial/log")
    assert log is not None and log.get("file") == "/b/instances/m/console.log"
    assert moved.findtext(f"./metadata/{{{ns}}}instance/{{{ns}}}host") == "host-b"
    assert moved.findtext(f"./metadata/{{{ns}}}instance/{{{ns}}}instances") == "/b/instances"
    assert "/a/instances" not in ET.tostring(moved, encoding="unicode")


def test_rescue_xml_boots_the_rescue_disk_first_with_the_own_disk_next() -> None:
    original = ET.tostring(make(), encoding="unicode")
    with_volume = ET.fromstring(original)
    devices = with_volume.find("devices")
    assert devices is not None
    devices.append(ET.fromstring(volume_xml({"driver_volume_type": "file",
                                             "data": {"path": "/vol/1"}}, "/dev/vdb")))
    rescued = ET.fromstring(rescue_domain_xml(ET.tostring(with_volume, encoding="unicode"),
                                              Path("/inst/disk.rescue"), NS))
    assert rescued.find("./os/boot") is None  # per-device boot order instead
    targets = {}
    for disk in rescued.iterfind("./devices/disk"):
        source, target, boot = disk.find("source"), disk.find("target"), disk.find("boot")
        assert source is not None and target is not None
        targets[source.get("file")] = (target.get("dev"),
                                       boot.get("order") if boot is not None else None)
    assert targets == {"/inst/disk.rescue": ("vda", "1"), "/inst/disk": ("vdc", "2"),
                       "/vol/1": ("vdb", None)}
    # The domain stays the same one: name, uuid and our metadata.
    assert rescued.findtext("uuid") == UUID
    assert rescued.find(f"./metadata/{{{NS}}}instance") is not None
    with pytest.raises(VirtError):
        rescue_domain_xml("<domain><devices/></domain>", Path("/r"), NS)


def test_a_volume_backed_guest_live_migrates_without_a_disk_copy() -> None:
    """Its vda is the volume: the destination's domain names the same file, not a copy."""
    ns = "https://example.test/ns"
    volume = {"driver_volume_type": "file", "data": {"path": "/volumes/volume-1"}}
    guest = GuestSpec(uuid="11111111-2222-3333-4444-555555555555", name="m", vcpus=1,
                      memory_mb=256, root_gb=0,
                      block_devices=[{"mountpoint": "/dev/vda", "connection_info": volume}])
    assert root_volume(guest) == volume
    source = domain_xml(guest, virt_type="qemu", domain_name="instance-m",
                        disk_path=Path("/volumes/volume-1"), disk_format="raw",
                        console_log=Path("/a/instances/m/console.log"), metadata_ns=ns,
                        host="host-a", instances_dir=Path("/a/instances"))
    moved = ET.fromstring(destination_xml(source, {
        "disk": None, "console_log": "/b/instances/m/console.log", "host": "host-b",
        "instances_dir": "/b/instances", "volumes": ["/dev/vda"]}, ns))
    disk = moved.find("./devices/disk[@device='disk']/source")
    assert disk is not None and disk.get("file") == "/volumes/volume-1"


SECRET = "0b7c1e0a-5a57-5d8b-9a0e-6b0d2f1e4c11"


def _rbd_disk(disk: ET.Element) -> tuple[object, ...]:
    source, auth = disk.find("source"), disk.find("auth")
    assert source is not None and auth is not None
    return (disk.get("type"), disk.find("driver").get("type"),  # type: ignore[union-attr]
            source.get("protocol"), source.get("name"),
            [(h.get("name"), h.get("port")) for h in source.iterfind("host")],
            auth.get("username"), auth.find("secret").get("type"),  # type: ignore[union-attr]
            auth.find("secret").get("uuid"),  # type: ignore[union-attr]
            disk.find("target").get("dev"))  # type: ignore[union-attr]


def test_rbd_root_disk_and_rbd_volumes_are_network_disks_with_the_secret() -> None:
    guest = GuestSpec(uuid=UUID, name="rbd", vcpus=1, memory_mb=128, root_gb=1,
                      image_location="rbd://fsid/images/img/snap", block_devices=[
                          {"mountpoint": "/dev/vdb", "connection_info": {
                              "driver_volume_type": "rbd", "data": {
                                  "name": "volumes/volume-v1", "hosts": ["127.0.0.1"],
                                  "ports": ["6789"], "auth_username": "stratus",
                                  "secret_uuid": None, "volume_id": "v1"}}}])
    root = RbdSource(f"vms/{UUID}_disk", (("127.0.0.1", 6789),), "stratus", SECRET)
    xml = domain_xml(guest, virt_type="qemu", domain_name=f"instance-{UUID}", disk_path=root,
                     disk_format="raw", console_log=Path("/inst/console.log"),
                     metadata_ns=NS, host="node1", rbd_secret=SECRET)
    disks = ET.fromstring(xml).findall("./devices/disk")
    assert [_rbd_disk(d) for d in disks] == [
        ("network", "raw", "rbd", f"vms/{UUID}_disk", [("127.0.0.1", "6789")], "stratus",
         "ceph", SECRET, "vda"),
        ("network", "raw", "rbd", "volumes/volume-v1", [("127.0.0.1", "6789")], "stratus",
         "ceph", SECRET, "vdb")]
    assert disks[1].findtext("serial") == "v1"
    hot = ET.fromstring(volume_xml(guest.block_devices[0]["connection_info"], "/dev/vdc",
                                   SECRET))
    assert _rbd_disk(hot)[-1] == "vdc"
    with pytest.raises(VirtError, match="secret"):  # no secret anywhere: refused, not guessed
        volume_xml(guest.block_devices[0]["connection_info"], "/dev/vdc")


def test_the_ceph_secret_is_ephemeral_and_private() -> None:
    secret = ET.fromstring(secret_xml(SECRET, "ceph client.stratus of <fsid>"))
    assert (secret.get("ephemeral"), secret.get("private")) == ("yes", "yes")
    assert secret.findtext("uuid") == SECRET
    usage = secret.find("usage")
    assert usage is not None and usage.get("type") == "ceph"
    assert usage.findtext("name") == "ceph client.stratus of <fsid>"


def test_a_failed_qemu_start_shows_no_secret_data() -> None:
    error = ("internal error: Child process (/usr/bin/qemu-system-x86_64 -object "
             "'{\"qom-type\":\"secret\",\"id\":\"libvirt-1-storage-auth-secret0\","
             "\"data\":\"X4/q/jVHeMtbErOw708=\",\"keyid\":\"masterKey0\"}' -blockdev "
             "'{\"driver\":\"rbd\"}') unexpected exit status 125")
    shown = without_secrets(error)
    assert "X4/q/jVHeMtbErOw708=" not in shown
    assert '"data":"<hidden>"' in shown and "exit status 125" in shown
