"""The test guest's boot to init under variants of how QEMU is run, one guest at a time.

    python benchmarks/profiles/guest_boot_variants.py [--rounds N] VARIANT...

Each round boots every variant once, in turn (alternated, so they share the machine's
load), and prints one JSON line per boot: seconds from the start (QEMU's launch, or
libvirt's ``createWithFlags``) to ``STRATUS-INIT`` in the console, and the guest's own
``uptime=`` in that line (its kernel's part; the rest is QEMU's start, the firmware and the
boot loader). At the end, the medians per variant.

Variants: ``qemu:<name>`` boots QEMU by hand (the realboot control's command line plus the
additions ``QEMU_EXTRAS`` names, ``+``-joined: ``qemu:control``, ``qemu:vga+sandbox``);
``libvirt:<name>`` defines the driver's own domain XML (``domain_xml``), changed as
``XML_EDITS`` names (``libvirt:driver``, ``libvirt:novnc``). The guest has a NIC on a tap
of its own that leads nowhere (the markers after init are not waited for). Needs root,
QEMU, libvirt and the test guest image in the test cache.

Counts that do not follow the machine's load: ``--plugin libinsncount.so`` (built from
``insncount.c`` here: ``gcc -O2 -shared -fPIC -o libinsncount.so insncount.c``) adds the
guest's instructions when the firmware hands over to the boot sector (``at_0x7c00``) and
when the boot loader enters the kernel (``at_0x100000``), with the wall milliseconds from
the guest's first instruction (``ms_*``); ``--icount`` runs the guest on QEMU's instruction
clock (``-icount shift=0,sleep=off``), so its ``uptime=`` at init is its kernel's work, not
the host's pace. ``threads``: each QEMU thread's CPU seconds and voluntary / involuntary
context switches when init showed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

TAP = "sbvartap0"
MAC = "fa:16:3e:00:00:42"
INIT = re.compile(r"STRATUS-INIT uptime=([0-9.]+)")

#: What each name adds to the control's QEMU command line (libvirt's own additions).
QEMU_EXTRAS: dict[str, list[str]] = {
    "control": [],
    "vga": ["-vnc", "127.0.0.1:57", "-device", "cirrus-vga"],
    "stdvga": ["-vnc", "127.0.0.1:57", "-device", "VGA"],
    "sandbox": ["-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,"
                "resourcecontrol=deny"],
    "smbios": ["-smbios", "type=1,manufacturer=Stratus,product=OpenStack Nova,"
               "serial=00000000-0000-4000-8000-000000000042"],
    "misc": ["-cpu", "qemu64", "-rtc", "base=utc", "-no-shutdown", "-boot", "strict=on"],
}
#: What each name adds to the control's NIC (``-device virtio-net-pci,...``) instead.
QEMU_NIC_OPTIONS: dict[str, str] = {
    "norom": ",romfile=",  # no iPXE option ROM for SeaBIOS to run
}
#: What each name adds to the control's disk (``-drive ...,if=virtio``) instead.
QEMU_DRIVE_OPTIONS: dict[str, str] = {
    "iouring": ",aio=io_uring",  # no thread-pool hop per request
}


def _no_graphics(dom: ET.Element) -> None:
    devices = dom.find("devices")
    assert devices is not None
    for node in devices.findall("graphics") + devices.findall("video"):
        devices.remove(node)


def _video_none(dom: ET.Element) -> None:
    devices = dom.find("devices")
    assert devices is not None
    video = ET.SubElement(devices, "video")
    ET.SubElement(video, "model", type="none")


def _video_vga(dom: ET.Element) -> None:
    devices = dom.find("devices")
    assert devices is not None
    video = ET.SubElement(devices, "video")
    ET.SubElement(video, "model", type="vga")


def _no_nic_rom(dom: ET.Element) -> None:
    for iface in dom.iter("interface"):
        for rom in iface.findall("rom"):
            iface.remove(rom)
        ET.SubElement(iface, "rom", enabled="no")


def _io_uring(dom: ET.Element) -> None:
    for disk in dom.iter("disk"):
        driver = disk.find("driver")
        if driver is not None:
            driver.set("io", "io_uring")


def _nic_rom(dom: ET.Element) -> None:
    for iface in dom.iter("interface"):
        for rom in iface.findall("rom"):
            iface.remove(rom)


XML_EDITS: dict[str, Callable[[ET.Element], None]] = {
    "driver": lambda dom: None,
    "norom": _no_nic_rom,
    "rom": _nic_rom,
    "iouring": _io_uring,
    "nographics": _no_graphics,
    "videonone": _video_none,
    "vga": _video_vga,
}


#: Added to every variant's QEMU command line (``--plugin``, ``--icount``); ``{n}`` is the boot.
COMMON_ARGS: list[str] = []


def _common_args(work: Path, n: int) -> list[str]:
    return [a.replace("{out}", str(work / f"insns-{n}.json")) for a in COMMON_ARGS]


def _insns(work: Path, n: int) -> dict[str, int]:
    """What the instruction-count plugin wrote for boot ``n`` (nothing without one)."""
    try:
        found = dict(json.loads((work / f"insns-{n}.json").read_text()))
    except (FileNotFoundError, ValueError):
        return {}
    init = (work / f"init-{n}").read_text() if (work / f"init-{n}").exists() else ""
    if init and found.get("t_first"):  # init seen this long after the guest's first insn
        found["init_from_first_s"] = round(float(init) - found["t_first"], 3)
    found.pop("t_first", None)
    return found


def _overlay(work: Path, image: Path, n: int) -> Path:
    disk = work / f"disk-{n}.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image), "-F",
                    "qcow2", str(disk), "1G"], check=True)
    return disk


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: Per thread of the last boot's QEMU when init showed: name -> [CPU s, voluntary and
#: involuntary context switches] (summed over threads of the same name).
THREADS: dict[str, list[float]] = {}


def _threads(pid: int) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            status = dict(line.split(":\t", 1) for line in
                          (task / "status").read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        row = found.setdefault(name, [0.0, 0.0, 0.0])
        row[0] += round((int(fields[11]) + int(fields[12])) / tick, 2)
        row[1] += int(status["voluntary_ctxt_switches"])
        row[2] += int(status["nonvoluntary_ctxt_switches"])
    return found


def _wait_init(path: Path, started: float, within: float,
               pid: Callable[[], int]) -> tuple[float, float, float]:
    """Seconds to STRATUS-INIT, the guest's uptime then, and QEMU's CPU seconds by then."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            text = path.read_text(errors="replace")
        except (FileNotFoundError, PermissionError):
            text = ""
        found = INIT.search(text)
        if found:
            path.with_name("init-" + path.stem.rsplit("-", 1)[1]).write_text(str(time.time()))
            THREADS.clear()
            THREADS.update(_threads(pid()))
            return time.time() - started, float(found.group(1)), _cpu_s(pid())
        time.sleep(0.01)
    raise RuntimeError(f"no STRATUS-INIT on {path} within {within} s")


def boot_qemu(extras: list[str], work: Path, image: Path,
              n: int, nic: str = "", drive: str = "") -> tuple[float, float, float]:
    disk = _overlay(work, image, n)
    serial = work / f"serial-{n}.log"
    started = time.time()
    qemu = subprocess.Popen([
        "qemu-system-x86_64", "-machine", "pc,accel=tcg", "-m", "512", "-smp", "1",
        "-nodefaults", "-display", "none", "-serial", f"file:{serial}",
        "-drive", f"file={disk},if=virtio,format=qcow2{drive}",
        "-netdev", f"tap,id=n0,ifname={TAP},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=n0,mac={MAC}{nic}", *extras,
        *_common_args(work, n)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return _wait_init(serial, started, 120, lambda: qemu.pid)
    finally:
        qemu.kill()
        qemu.wait()


def _to_root_cgroup(pid: int) -> None:
    """Every thread of ``pid`` into the root of the cgroup v1 ``cpu`` hierarchy, where the
    control's QEMU (a plain process) runs."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open("/sys/fs/cgroup/cpu/tasks", "w") as tasks:
            tasks.write(tid)


def boot_libvirt(edit: Callable[[ET.Element], None], work: Path, image: Path,
                 n: int, root_cgroup: bool = False) -> tuple[float, float, float]:
    from stratus.compute.virt.driver import GuestSpec
    from stratus.compute.virt.libvirt import host
    from stratus.compute.virt.libvirt.guest_xml import domain_xml

    disk = _overlay(work, image, n)
    console = work / f"console-{n}.log"
    guest = GuestSpec(uuid=str(uuidlib.uuid4()), name=f"variant-{n}", vcpus=1,
                      memory_mb=512, root_gb=1, image_path=image, image_format="qcow2",
                      network_info=[{"id": "p", "type": "ethernet", "devname": TAP,
                                     "address": MAC, "mtu": 1500}])
    xml = domain_xml(guest, virt_type="qemu", domain_name=f"sbvariant-{n}",
                     disk_path=disk, console_log=console,
                     metadata_ns="https://stratus.dev/xmlns/bench/variant", host="bench")
    dom_xml = ET.fromstring(xml)
    edit(dom_xml)
    if COMMON_ARGS:
        from stratus.compute.virt.libvirt.guest_xml import QEMU_NS
        line = ET.SubElement(dom_xml, f"{{{QEMU_NS}}}commandline")
        for arg in _common_args(work, n):
            ET.SubElement(line, f"{{{QEMU_NS}}}arg", value=arg)
    libvirt = host.libvirt_module()
    conn = libvirt.open("qemu:///system")
    try:
        dom = conn.defineXML(ET.tostring(dom_xml, encoding="unicode"))
        try:
            started = time.time()
            dom.create()
            try:
                pidfile = Path(f"/run/libvirt/qemu/sbvariant-{n}.pid")
                if root_cgroup:
                    _to_root_cgroup(int(pidfile.read_text().strip()))
                return _wait_init(console, started, 120,
                                  lambda: int(pidfile.read_text().strip()))
            finally:
                dom.destroy()
        finally:
            dom.undefine()
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--plugin", help="a TCG plugin counting instructions (its out= file "
                        "read after each boot: JSON, the count when the boot sector starts)")
    parser.add_argument("--icount", action="store_true",
                        help="-icount shift=0,sleep=off: the guest's clock counts its "
                        "instructions (and skips its idle waits), so uptime= is its work")
    args = parser.parse_args()
    if args.plugin:
        COMMON_ARGS.extend(["-plugin", f"{args.plugin},out={{out}}"])
    if args.icount:
        COMMON_ARGS.extend(["-icount", "shift=0,sleep=off"])
    cache = Path(os.environ.get("STRATUS_TEST_CACHE")
                 or Path.home() / ".cache" / "stratus-tests") / "guest-image"
    image = sorted(cache.glob("stratus-test-guest-*.qcow2"))[-1]
    subprocess.run(["ip", "link", "del", TAP], capture_output=True)
    subprocess.run(["ip", "tuntap", "add", "dev", TAP, "mode", "tap"], check=True)
    subprocess.run(["ip", "link", "set", TAP, "up"], check=True)
    results: dict[str, list[tuple[float, float, float]]] = {v: [] for v in args.variants}
    n = 0
    try:
        with tempfile.TemporaryDirectory(prefix="stratus-variants-") as tmp:
            work = Path(tmp)
            for rnd in range(args.rounds):
                for variant in args.variants:
                    kind, _, name = variant.partition(":")
                    n += 1
                    load = os.getloadavg()[0]
                    if kind == "qemu":
                        parts = name.split("+")
                        extras = [a for part in parts for a in QEMU_EXTRAS.get(part, [])]
                        nic = "".join(QEMU_NIC_OPTIONS.get(part, "") for part in parts)
                        drive = "".join(QEMU_DRIVE_OPTIONS.get(part, "") for part in parts)
                        seconds, uptime, cpu = boot_qemu(extras, work, image, n, nic, drive)
                    else:
                        edits, _, where = name.partition("@")
                        chosen = [XML_EDITS[part] for part in edits.split("+")]

                        def edit(dom: ET.Element, chosen: list[Callable[[ET.Element], None]]
                                 = chosen) -> None:
                            for one in chosen:
                                one(dom)
                        seconds, uptime, cpu = boot_libvirt(edit, work, image, n,
                                                            root_cgroup=where == "rootcg")
                    results[variant].append((seconds, uptime, cpu))
                    print(json.dumps({"round": rnd, "variant": variant,
                                      "init_s": round(seconds, 3), "uptime_s": uptime,
                                      "before_kernel_s": round(seconds - uptime, 3),
                                      "qemu_cpu_s": round(cpu, 2), **_insns(work, n),
                                      "threads": THREADS, "load": round(load, 2)}), flush=True)
    finally:
        subprocess.run(["ip", "link", "del", TAP], capture_output=True)
    for variant, found in results.items():
        before = statistics.median(s - u for s, u, _ in found)
        print(json.dumps({"variant": variant,
                          "init_p50_s": round(statistics.median(s for s, _, _ in found), 3),
                          "uptime_p50_s": round(statistics.median(u for _, u, _ in found), 3),
                          "before_kernel_p50_s": round(before, 3),
                          "qemu_cpu_p50_s": round(statistics.median(c for _, _, c in found), 2)}),
              file=sys.stderr)


if __name__ == "__main__":
    main()
