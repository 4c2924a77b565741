"""libvirt domain and device XML for Stratus guests (built with ElementTree: values escaped).

The domain: name/uuid from the instance, vCPUs and memory from the flavor, SMBIOS system
information that cloud-init recognises as OpenStack (``product=OpenStack Nova``,
``serial`` = the instance uuid), one virtio disk (the overlay) then the ephemeral, swap and
data volume disks at their devices (``vdb``, ...), one virtio NIC per VIF on the
l2-agent's tap (``type='ethernet'``, ``managed='no'``: libvirt opens the tap, creates
nothing; no option ROM: nothing boots from the network), the serial console on a pty
(interactive, for the console proxy) and logged to a file through virtlogd, and a VNC
server on the host's loopback with a port libvirt picks (the console proxy bridges noVNC's
websocket to it). ACPI is on, so a shutdown request reaches the guest as a power-button
press.

A TCG domain also tells libvirt, in its ``qemu:capabilities``, to check the started guest's
CPU the x86 way (see ``SKIPPED_QEMU_CAPABILITIES``): the guest's CPU is the same, libvirt's
start ~0.1 s instead of ~1.2-1.5 s on a loaded machine.
"""

from __future__ import annotations

import string
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import stratus
from stratus.compute.virt.driver import GuestSpec, VirtError
from stratus.compute.virt.libvirt import host as libvirt_host

MANUFACTURER = "Stratus"
PRODUCT = "OpenStack Nova"  # what cloud-init's OpenStack data source looks for
_TAP_TYPES = ("bridge", "tap", "ethernet")
#: Where guests' VNC servers listen: this host's loopback only; the console proxy (on this
#: host) is the way in, behind its one-time tokens.
VNC_LISTEN = "127.0.0.1"
#: libvirt's QEMU namespace (domain XML that reaches QEMU-specific settings).
QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
ET.register_namespace("qemu", QEMU_NS)  # keep the prefix when a domain's XML is re-serialised
#: QEMU capabilities a TCG domain tells libvirt to act as if missing. After QEMU starts
#: (paused), libvirt reads back the guest CPU QEMU made to check it against the definition.
#: With ``cpu-unavailable-features`` (QEMU 4.1+), libvirt 9.0 does it property by property:
#: ``qom-list`` on the vCPU, then one ``qom-get`` per feature, ~410 QMP round trips (QEMU 7.2
#: has no ``qom-list-get`` to batch them), 1.2-1.5 s of a 1.5-2.3 s ``createWithFlags`` at
#: load ~14 on 2 cores. Without it libvirt reads the x86 CPUID words instead (``qom-get`` of
#: ``feature-words`` and ``filtered-features``: 3 round trips, ~80 ms). QEMU's command line
#: and the live ``<cpu>`` libvirt reports (model qemu64 and its features) are the same
#: either way; libvirt marks the domain tainted (``custom-hypervisor-feature``) in its log,
#: and refuses MSR features in a ``<cpu>`` we never write. KVM guests (host-passthrough)
#: keep libvirt's default until measured there.
SKIPPED_QEMU_CAPABILITIES = ("cpu-unavailable-features",)


def cpu_shares(vcpus: int, cgroup_version: int) -> int:
    """The domain's ``<cputune><shares>``: one host task's CPU weight per vCPU, and one more
    for QEMU's own threads (its main loop and I/O workers, which the guest's disk and network
    wait on). libvirt puts all of a guest's threads in one cgroup, and a cgroup of default
    weight counts as a single task: on a busy host a 4-vCPU guest would get one task's CPU,
    and a 1-vCPU guest's vCPU would share that one task's slice with its own emulator,
    behind a plain QEMU process whose threads each weigh as a task."""
    weight = (vcpus + 1) * libvirt_host.CPU_TASK_WEIGHT[cgroup_version]
    return min(weight, libvirt_host.CPU_WEIGHT_MAX[cgroup_version])


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    node = ET.SubElement(parent, tag, attrs)
    if text is not None:
        node.text = text
    return node


def root_volume(guest: GuestSpec) -> dict[str, Any] | None:
    """The connection info of the volume the guest boots from (its ``/dev/vda``), if any."""
    return next((d.get("connection_info") or {} for d in guest.block_devices
                 if d.get("mountpoint") == "/dev/vda"), None)


@dataclass(frozen=True)
class RbdSource:
    """An RBD image QEMU opens itself (librbd): ``pool/image``, the monitors from the
    cluster map, and the cephx user whose key is in libvirt secret ``secret_uuid``."""

    name: str
    hosts: tuple[tuple[str, int], ...]
    username: str
    secret_uuid: str


def rbd_source(connection_info: dict[str, Any], secret_uuid: str | None) -> RbdSource:
    """The RBD image of an ``rbd`` volume's connection info (Cinder's form); its own secret
    uuid, else ``secret_uuid`` (this host's)."""
    data = connection_info.get("data") or {}
    hosts = tuple((str(h), int(p)) for h, p in zip(data.get("hosts") or [],
                                                   data.get("ports") or [], strict=False))
    uuid = data.get("secret_uuid") or secret_uuid
    if not data.get("name") or not hosts or not uuid:
        raise VirtError("The rbd volume's connection info lacks its image, monitors or "
                        "secret.")
    return RbdSource(str(data["name"]), hosts, str(data.get("auth_username") or "admin"),
                     str(uuid))


def volume_file(connection_info: dict[str, Any]) -> tuple[Path, str]:
    """The file and format of a ``file`` volume's connection info."""
    kind = connection_info.get("driver_volume_type")
    if kind != "file":
        raise VirtError(f"Volume type {kind!r} cannot be used by the libvirt driver.")
    data = connection_info.get("data") or {}
    path = data.get("path") or connection_info.get("path")
    if not path:
        raise VirtError("The volume's connection info names no file.")
    return Path(path), str(data.get("format") or connection_info.get("format") or "raw")


def domain_xml(guest: GuestSpec, *, virt_type: str, domain_name: str,
               disk_path: Path | RbdSource,
               console_log: Path, metadata_ns: str, host: str,
               instances_dir: Path | None = None, disk_format: str = "qcow2",
               local_disks: dict[str, Path] | None = None,
               rbd_secret: str | None = None, config_drive: Path | None = None,
               cpu_shares: int | None = None) -> str:
    """The domain booting ``disk_path`` (a file, or an RBD image); ``local_disks`` maps
    each of ``guest.local_disks``' devices to its file (qcow2, made by the driver);
    ``guest.block_devices`` other than ``/dev/vda`` become virtio disks on their volumes
    (``rbd_secret``: this host's secret for rbd volumes that name none); ``config_drive``:
    the guest's config drive image, a read-only IDE cdrom (``hdd``, as Nova's libvirt
    driver attaches it on a ``pc`` machine); ``cpu_shares``: the guest's CPU weight on the
    host (see ``cpu_shares``), else libvirt's default."""
    dom = ET.Element("domain", type=virt_type)
    _sub(dom, "name", domain_name)
    _sub(dom, "uuid", guest.uuid)
    _sub(dom, "title", guest.name)
    meta = _sub(dom, "metadata")
    ET.register_namespace("stratus", metadata_ns)
    instance = _sub(meta, f"{{{metadata_ns}}}instance")
    _sub(instance, f"{{{metadata_ns}}}name", guest.name)
    _sub(instance, f"{{{metadata_ns}}}host", host)
    if instances_dir is not None:  # which deployment owns it (several may share a machine)
        _sub(instance, f"{{{metadata_ns}}}instances", str(instances_dir))
    _sub(instance, f"{{{metadata_ns}}}flavor", vcpus=str(guest.vcpus),
         memory_mb=str(guest.memory_mb), root_gb=str(guest.root_gb))
    _sub(dom, "memory", str(guest.memory_mb), unit="MiB")
    _sub(dom, "currentMemory", str(guest.memory_mb), unit="MiB")
    _sub(dom, "vcpu", str(guest.vcpus))
    if cpu_shares is not None:
        _sub(_sub(dom, "cputune"), "shares", str(cpu_shares))

    sysinfo = _sub(dom, "sysinfo", type="smbios")
    system = _sub(sysinfo, "system")
    for name, value in (("manufacturer", MANUFACTURER), ("product", PRODUCT),
                        ("version", stratus.__version__),
                        ("serial", guest.uuid), ("uuid", guest.uuid),
                        ("family", "Virtual Machine")):
        _sub(system, "entry", value, name=name)

    os_ = _sub(dom, "os")
    _sub(os_, "type", "hvm", arch="x86_64", machine="pc")
    _sub(os_, "boot", dev="hd")
    _sub(os_, "smbios", mode="sysinfo")
    features = _sub(dom, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    if virt_type == "kvm":
        _sub(dom, "cpu", mode="host-passthrough")
    _sub(dom, "clock", offset="utc")
    _sub(dom, "on_poweroff", "destroy")
    _sub(dom, "on_reboot", "restart")
    _sub(dom, "on_crash", "destroy")

    devices = _sub(dom, "devices")
    if isinstance(disk_path, RbdSource):
        devices.append(_network_disk(disk_path, "vda", None))
    else:
        disk = _sub(devices, "disk", type="file", device="disk")
        _sub(disk, "driver", name="qemu", type=disk_format, discard="unmap")
        _sub(disk, "source", file=str(disk_path))
        _sub(disk, "target", dev="vda", bus="virtio")
    for local in guest.local_disks:
        path = (local_disks or {}).get(local.device)
        if path is None:
            raise VirtError(f"No file was made for {guest.name}'s {local.kind} disk.")
        devices.append(_disk(path, "qcow2", local.device, None))
    for device in guest.block_devices:
        if device.get("mountpoint") != "/dev/vda":
            devices.append(_volume_disk(device.get("connection_info") or {},
                                        str(device.get("mountpoint", "")), rbd_secret))
    if config_drive is not None:
        devices.append(config_drive_xml(config_drive))
    for vif in guest.network_info:
        devices.append(_interface(vif, guest.name))
    serial = _sub(devices, "serial", type="pty")
    _sub(serial, "log", file=str(console_log), append="on")
    _sub(serial, "target", port="0")
    console = _sub(devices, "console", type="pty")
    _sub(console, "target", type="serial", port="0")
    graphics = _sub(devices, "graphics", type="vnc", port="-1", autoport="yes",
                    listen=VNC_LISTEN)
    _sub(graphics, "listen", type="address", address=VNC_LISTEN)
    # Fewer devices, faster QEMU start: no USB controller, no balloon.
    _sub(devices, "controller", type="usb", model="none")
    _sub(devices, "memballoon", model="none")
    # Our domains run QEMU as root and libvirt relabels nothing: base images are shared
    # between guests, and chowning them to libvirt-qemu and back on every start/stop of any
    # one guest would race; instance files may also sit under a private data directory.
    seclabel = _sub(dom, "seclabel", type="static", model="dac", relabel="no")
    _sub(seclabel, "label", "+0:+0")
    if virt_type != "kvm":
        capabilities = _sub(dom, f"{{{QEMU_NS}}}capabilities")
        for name in SKIPPED_QEMU_CAPABILITIES:
            _sub(capabilities, f"{{{QEMU_NS}}}del", capability=name)
    return ET.tostring(dom, encoding="unicode")


#: The config drive's device: the last IDE one (Nova's ``hdd`` on a ``pc`` machine), so it
#: never takes a name the guest's virtio disks are given.
CONFIG_DRIVE_TARGET = "hdd"


def config_drive_xml(path: Path) -> ET.Element:
    """The config drive image at ``path`` as a read-only cdrom."""
    disk = ET.Element("disk", type="file", device="cdrom")
    _sub(disk, "driver", name="qemu", type="raw")
    _sub(disk, "source", file=str(path))
    _sub(disk, "target", dev=CONFIG_DRIVE_TARGET, bus="ide")
    _sub(disk, "readonly")
    return disk


def is_config_drive(disk: ET.Element) -> bool:
    target = disk.find("target")
    return disk.get("device") == "cdrom" and target is not None \
        and target.get("dev") == CONFIG_DRIVE_TARGET


def interface_xml(vif: dict[str, Any], guest_name: str) -> str:
    """A virtio NIC on the l2-agent's tap, for hot-plugging (``attachDeviceFlags``)."""
    return ET.tostring(_interface(vif, guest_name), encoding="unicode")


def _interface(vif: dict[str, Any], guest_name: str) -> ET.Element:
    kind = vif.get("type", "bridge")
    devname = vif.get("devname") or ""
    if kind not in _TAP_TYPES or not devname:
        raise VirtError(f"Cannot plug VIF {vif.get('id', '?')} of {guest_name}: type {kind!r} "
                        f"without a tap device.")
    iface = ET.Element("interface", type="ethernet")
    _sub(iface, "mac", address=str(vif["address"]))
    _sub(iface, "target", dev=str(devname), managed="no")
    _sub(iface, "model", type="virtio")
    # No option ROM: our guests boot only from their disk (``<boot dev='hd'/>``: libvirt
    # gives QEMU ``-boot strict=on`` and the disk the only bootindex), so the NIC's iPXE ROM
    # (250 KB read by QEMU at every start) was never booted, yet SeaBIOS ran its init on
    # every boot: ~0.5 M of the ~11.8 M guest instructions before the kernel loads (TCG,
    # counted; benchmarks/profiles/realboot-2026-12-07b.md). PXE boot is not offered.
    _sub(iface, "rom", enabled="no")
    if vif.get("mtu"):
        _sub(iface, "mtu", size=str(int(vif["mtu"])))
    return iface


def volume_xml(connection_info: dict[str, Any], mountpoint: str,
               rbd_secret: str | None = None) -> str:
    """A virtio disk for a ``file`` volume: ``{"driver_volume_type": "file", "data":
    {"path": ..., "format": "raw"}}`` (``path``/``format`` also accepted at the top), or an
    ``rbd`` one (Cinder's connection info; ``rbd_secret``: this host's secret)."""
    return ET.tostring(_volume_disk(connection_info, mountpoint, rbd_secret),
                       encoding="unicode")


def _volume_disk(connection_info: dict[str, Any], mountpoint: str,
                 rbd_secret: str | None) -> ET.Element:
    serial = (connection_info.get("data") or {}).get("volume_id") or connection_info.get("serial")
    short = str(serial)[:20] if serial else None
    if connection_info.get("driver_volume_type") == "rbd":
        return _network_disk(rbd_source(connection_info, rbd_secret), mountpoint, short)
    path, disk_format = volume_file(connection_info)
    return _disk(path, disk_format, mountpoint, short)


def _network_disk(source: RbdSource, mountpoint: str, serial: str | None) -> ET.Element:
    """An RBD image as a virtio disk: QEMU's librbd reaches the monitors and OSDs with the
    user's key, which libvirt hands it from the secret (never in this XML)."""
    disk = ET.Element("disk", type="network", device="disk")
    _sub(disk, "driver", name="qemu", type="raw", cache="writeback", discard="unmap")
    auth = _sub(disk, "auth", username=source.username)
    _sub(auth, "secret", type="ceph", uuid=source.secret_uuid)
    node = _sub(disk, "source", protocol="rbd", name=source.name)
    for host, port in source.hosts:
        _sub(node, "host", name=host, port=str(port))
    _sub(disk, "target", dev=_virtio_target(mountpoint), bus="virtio")
    if serial:
        _sub(disk, "serial", serial)
    return disk


def _virtio_target(mountpoint: str) -> str:
    target = mountpoint.rsplit("/", 1)[-1]
    if not target.startswith("vd") or not target[2:].isalpha():
        raise VirtError(f"Mount point {mountpoint!r} is not a virtio disk name (/dev/vdX).")
    return target


def _disk(path: Path, disk_format: str, mountpoint: str, serial: str | None) -> ET.Element:
    target = _virtio_target(mountpoint)
    disk = ET.Element("disk", type="file", device="disk")
    _sub(disk, "driver", name="qemu", type=disk_format)
    _sub(disk, "source", file=str(path))
    _sub(disk, "target", dev=target, bus="virtio")
    if serial:
        _sub(disk, "serial", serial)
    return disk


def rescue_domain_xml(original: str, rescue_disk: Path, metadata_ns: str,
                      config_drive: Path | None = None) -> str:
    """The domain ``original`` (its persistent XML) booting ``rescue_disk`` (a qcow2) as
    ``vda``, its own root disk moved to the first free ``vdX`` after the others: per-device
    boot order (rescue first), so the BIOS never boots the disk being rescued. The guest's
    own config drive is not attached; ``config_drive``, the rescue's, is (as Nova's
    ``disk.config.rescue``)."""
    ET.register_namespace("stratus", metadata_ns)
    dom = ET.fromstring(original)
    os_ = dom.find("os")
    if os_ is not None:
        for boot in os_.findall("boot"):
            os_.remove(boot)
    devices = dom.find("devices")
    if devices is None:
        raise VirtError("The domain has no devices to rescue.")
    for drive in [d for d in devices.findall("disk") if is_config_drive(d)]:
        devices.remove(drive)
    disks = devices.findall("disk")
    targets = {d: d.find("target") for d in disks}
    root = next((d for d, t in targets.items() if t is not None and t.get("dev") == "vda"),
                None)
    if root is None:
        raise VirtError("The domain has no vda disk to rescue.")
    used = {t.get("dev") for t in targets.values() if t is not None}
    moved_to = next(f"vd{c}" for c in string.ascii_lowercase[1:] if f"vd{c}" not in used)
    for disk in disks:
        for boot in disk.findall("boot"):
            disk.remove(boot)
    root_target = targets[root]
    assert root_target is not None
    root_target.set("dev", moved_to)
    _sub(root, "boot", order="2")
    rescue = ET.Element("disk", type="file", device="disk")
    _sub(rescue, "driver", name="qemu", type="qcow2")
    _sub(rescue, "source", file=str(rescue_disk))
    _sub(rescue, "target", dev="vda", bus="virtio")
    _sub(rescue, "boot", order="1")
    devices.insert(list(devices).index(root), rescue)
    if config_drive is not None:
        last_disk = devices.findall("disk")[-1]
        devices.insert(list(devices).index(last_disk) + 1, config_drive_xml(config_drive))
    return ET.tostring(dom, encoding="unicode")
