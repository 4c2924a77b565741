"""Real boots: the test guest through the whole cloud, against the same guest under plain QEMU.

The cloud: one ``stratus up`` with the libvirt driver and the linuxbridge network backend
(dnsmasq, metadata proxy). The test guest is published, one warm-up boot fills the host's
image cache, then ``--boots`` boots are made one at a time on the ``private`` network:

* ``active``: from the client's clock just before ``POST /servers`` to the ``finish_time`` of
  the successful build event (the host finishes it with the instance ACTIVE);
* ``init``, ``net``, ``metadata``, ``guest``: from the POST to the moment each marker line
  (``STRATUS-INIT``, ``STRATUS-NET``, ``STRATUS-METADATA ok``, ``STRATUS-GUEST``) reaches
  the guest's console log file (virtlogd's), polled every 20 ms on this machine.

The control, one boot after each of the cloud's (so both see the same load on a shared
machine): the same image (a fresh overlay each time), the same vCPUs, memory, machine type
and accelerator, booted by hand with ``qemu-system-x86_64`` on a tap in a bridge of its own,
with dnsmasq and a static HTTP server on 169.254.169.254 in a namespace (option 121 as the
cloud sends it): ``control_*`` are from the QEMU launch to the same markers in its serial
file. ``metadata_behind_control_s`` = p50 metadata (cloud) - p50 metadata (control): what the
cloud costs on top of the hypervisor's boot. ``virt_type`` is stated in the backends.

``kernel``: from the POST (control: the launch) to the guest kernel's clock starting, i.e.
``init`` less the ``uptime=`` the guest prints in its init line: the cloud's part before
QEMU runs, QEMU's start, the firmware and the boot loader; the rest of ``init`` is the
guest's kernel. ``--keep-consoles DIR`` keeps every boot's console log.

``--busy-loops N`` keeps N processes spinning on the CPU (plain Python loops, at the default
priority) from before the cloud starts until the last boot ends: the same figures with the
machine's cores contended, for both the cloud's boots and the control's alike.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from benchmarks import Goal, Result, percentile
from benchmarks._cloud import StratusUp, issue_token
from benchmarks.boot import BUILD_EVENT, MICROVERSION, _epoch

DESCRIPTION = ("Real guests under libvirt: POST to ACTIVE and to the guest's console markers "
               "(DHCP, metadata), against plain QEMU booting the same image")

API = "/compute/v2.1"
MARKERS = {"init": "STRATUS-INIT", "net": "STRATUS-NET", "metadata": "STRATUS-METADATA ok",
           "guest": "STRATUS-GUEST"}
#: The guest's uptime in its init line: what of POST (or launch) → init is its kernel's.
INIT_UPTIME = re.compile(r"STRATUS-INIT uptime=([0-9.]+)")
ACTIVE_GOAL_S = 0.5
METADATA_BEHIND_GOAL_S = 0.0
FLAVOR = "1"  # m1.tiny
CONTROL_NS = "stratus-bench-ctl"
CONTROL_BRIDGE = "sbctlbr0"
CONTROL_TAP = "sbctltap0"
CONTROL_VETH = ("sbctlv0", "sbctlv1")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--boots", type=int, default=3, help="boots measured (default 3)")
    parser.add_argument("--timeout", type=float, default=180,
                        help="seconds a boot may take to show every marker (default 180)")
    parser.add_argument("--memory-mb", type=int, default=512,
                        help="control guest memory; the cloud uses m1.tiny (512 MB)")
    parser.add_argument("--keep-consoles", metavar="DIR",
                        help="copy each boot's console log there (cloud-N.log, control-N.log)")
    parser.add_argument("--busy-loops", type=int, default=0, metavar="N",
                        help="processes spinning on the CPU throughout (default 0: none)")


@contextlib.contextmanager
def _busy_loops(count: int) -> Iterator[None]:
    """``count`` processes spinning on the CPU while the block runs, killed after it."""
    spinning = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(count)]
    try:
        yield
    finally:
        for process in spinning:
            process.kill()
            process.wait()


async def _watch_markers(path: Path, started: float, within: float) -> dict[str, float]:
    """Seconds from ``started`` (epoch) until each marker first appears in ``path``."""
    seen: dict[str, float] = {}
    deadline = time.monotonic() + within
    while len(seen) < len(MARKERS) and time.monotonic() < deadline:
        try:
            text = await asyncio.to_thread(path.read_text, errors="replace")
        except FileNotFoundError:
            text = ""
        now = time.time()
        for key, marker in MARKERS.items():
            if key not in seen and marker in text:
                seen[key] = now - started
        await asyncio.sleep(0.02)
    missing = [m for k, m in MARKERS.items() if k not in seen]
    if missing:
        tail = text[-1500:] if text else "(empty)"
        raise RuntimeError(f"markers {missing} not on {path} within {within:.0f} s:\n{tail}")
    uptime = INIT_UPTIME.search(text)
    if uptime is not None:  # the guest's kernel clock started this long before init
        seen["kernel"] = seen["init"] - float(uptime.group(1))
    return seen


# The cloud --------------------------------------------------------------------------------


async def _cloud_boots(args: argparse.Namespace, work: Path, image: Path,
                       between: Callable[[int], Awaitable[None]],
                       ) -> tuple[dict[str, list[float]], dict[str, list[float]],
                                  dict[str, Any]]:
    """The cloud's boots (seconds to each marker, and milliseconds of each build span);
    ``between(n)`` runs after counted boot ``n`` (a control boot, so both see the same load
    on a shared machine)."""
    from stratus.guest_image.upload import publish

    data = work / "cloud"
    env = {"STRATUS_COMPUTE__VIRT_DRIVER": "libvirt", "STRATUS_NETWORK__BACKEND": "linuxbridge",
           "STRATUS_CONFIG_FILE": "/nonexistent"}
    found: dict[str, list[float]] = {"active": [], "kernel": [], **{k: [] for k in MARKERS}}
    spans: dict[str, list[float]] = {}
    async with StratusUp(data, bcrypt_rounds=4, env=env) as cloud, httpx.AsyncClient(
            base_url=cloud.base_url, timeout=60) as client:
        password = cloud.admin_password()
        assert password is not None
        image_id = await publish(cloud.identity_url, "admin", password, image, client=client)
        token = await issue_token(client, cloud.identity_url, password)
        headers = {"X-Auth-Token": token, "OpenStack-API-Version": MICROVERSION}
        networks = (await client.get("/network/v2.0/networks", headers=headers,
                                     params={"name": "private"})).json()["networks"]
        if not networks:
            raise RuntimeError("the cloud has no network named private")
        body = {"server": {"imageRef": image_id, "flavorRef": FLAVOR,
                           "networks": [{"uuid": networks[0]["id"]}]}}
        hypervisors = (await client.get(f"{API}/os-hypervisors/detail",
                                        headers=headers)).json()["hypervisors"]
        for n in range(args.boots + 1):  # the first one warms the image cache up
            body["server"]["name"] = f"realboot-{n}"
            posted = time.time()
            response = await client.post(f"{API}/servers", headers=headers, json=body)
            if response.status_code != 202:
                raise RuntimeError(f"POST /servers answered {response.status_code}: "
                                   f"{response.text[:300]}")
            server_id = response.json()["server"]["id"]
            console = data / "instances" / server_id / "console.log"
            try:
                markers = await _watch_markers(console, posted, args.timeout)
                active = await _recorded_active(client, headers, server_id)
                if args.keep_consoles:
                    shutil.copy(console, Path(args.keep_consoles) / f"cloud-{n}.log")
            finally:
                await client.delete(f"{API}/servers/{server_id}", headers=headers)
                await _gone(client, headers, server_id)
            if n == 0:
                continue
            found["active"].append(active - posted)
            for key, seconds in markers.items():
                found[key].append(seconds)
            for name, ms in (await asyncio.to_thread(_build_spans, data, server_id)).items():
                spans.setdefault(name, []).append(ms)
            await between(n - 1)
    return found, spans, {"hypervisor_type": hypervisors[0]["hypervisor_type"]
                          if hypervisors else None}


#: The build's own spans (the compute agent's steps and the libvirt driver's parts of its
#: spawn), whose durations the scenario reports.
BUILD_SPAN_PREFIXES = ("compute.", "libvirt.")


def _build_spans(data: Path, server_id: str) -> dict[str, float]:
    """Milliseconds of each of the server's build spans in the cloud's span store (summed
    when a name recurs). The store is written about a second after a span ends: by the time
    the guest has read its metadata, the build's spans are in."""
    from stratus.core.spanstore import SpanStore

    store = SpanStore(data)
    try:
        spans = store.trace(store.traces_of(server_id))
    finally:
        store.close()
    durations: dict[str, float] = {}
    for found in spans:
        if found.name.startswith(BUILD_SPAN_PREFIXES) and found.instance_uuid == server_id:
            durations[found.name] = durations.get(found.name, 0.0) + found.duration_ns / 1e6
    return durations


async def _recorded_active(client: httpx.AsyncClient, headers: dict[str, str],
                           server_id: str) -> float:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        server = (await client.get(f"{API}/servers/{server_id}", headers=headers)).json()
        if server["server"]["status"] == "ERROR":
            raise RuntimeError(f"boot failed: {server['server'].get('fault')}")
        if server["server"]["status"] == "ACTIVE":
            break
        await asyncio.sleep(0.05)
    actions = (await client.get(f"{API}/servers/{server_id}/os-instance-actions",
                                headers=headers)).json()["instanceActions"]
    create = next(a for a in actions if a["action"] == "create")
    events = (await client.get(
        f"{API}/servers/{server_id}/os-instance-actions/{create['request_id']}",
        headers=headers)).json()["instanceAction"]["events"]
    return max(_epoch(e["finish_time"]) for e in events
               if e["event"] == BUILD_EVENT and e["result"] == "Success")


async def _gone(client: httpx.AsyncClient, headers: dict[str, str], server_id: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (await client.get(f"{API}/servers/{server_id}", headers=headers)).status_code == 404:
            return
        await asyncio.sleep(0.1)


# The control ------------------------------------------------------------------------------


def _sh(*argv: str, check: bool = True) -> None:
    subprocess.run(argv, check=check, capture_output=True)


def _control_network_up(work: Path) -> list[subprocess.Popen[bytes]]:
    """A bridge with the guest's tap and a namespace serving DHCP and metadata, as the
    cloud's network does (dnsmasq; option 121 to 169.254.169.254 via the DHCP address)."""
    _control_network_down()
    ns_exec = ["ip", "netns", "exec", CONTROL_NS]
    _sh("ip", "netns", "add", CONTROL_NS)
    _sh("ip", "link", "add", CONTROL_BRIDGE, "type", "bridge")
    _sh("ip", "link", "set", CONTROL_BRIDGE, "up")
    _sh("ip", "tuntap", "add", "dev", CONTROL_TAP, "mode", "tap")
    _sh("ip", "link", "set", CONTROL_TAP, "master", CONTROL_BRIDGE, "up")
    _sh("ip", "link", "add", CONTROL_VETH[0], "type", "veth", "peer", "name", CONTROL_VETH[1])
    _sh("ip", "link", "set", CONTROL_VETH[0], "master", CONTROL_BRIDGE, "up")
    _sh("ip", "link", "set", CONTROL_VETH[1], "netns", CONTROL_NS)
    _sh(*ns_exec, "ip", "addr", "add", "10.253.0.2/24", "dev", CONTROL_VETH[1])
    _sh(*ns_exec, "ip", "addr", "add", "169.254.169.254/32", "dev", CONTROL_VETH[1])
    _sh(*ns_exec, "ip", "link", "set", CONTROL_VETH[1], "up")
    _sh(*ns_exec, "ip", "link", "set", "lo", "up")
    meta = work / "www" / "openstack" / "latest"
    meta.mkdir(parents=True)
    (meta / "meta_data.json").write_text(json.dumps({
        "uuid": "00000000-0000-4000-8000-00000000c0c0", "hostname": "control",
        "name": "control", "launch_index": 0, "availability_zone": "nova"}))
    dnsmasq = subprocess.Popen([
        *ns_exec, "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0",
        f"--pid-file={work / 'dnsmasq.pid'}", f"--dhcp-leasefile={work / 'leases'}",
        "--bind-interfaces", f"--interface={CONTROL_VETH[1]}",
        "--dhcp-range=10.253.0.10,10.253.0.100,255.255.255.0,1h",
        "--dhcp-option=option:router,10.253.0.1",
        "--dhcp-option=option:classless-static-route,169.254.169.254/32,10.253.0.2,"
        "0.0.0.0/0,10.253.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    http = subprocess.Popen([*ns_exec, "python3", "-m", "http.server", "--bind",
                             "169.254.169.254", "--directory", str(work / "www"), "80"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return [dnsmasq, http]


def _control_network_down(processes: list[subprocess.Popen[bytes]] | None = None) -> None:
    for process in processes or []:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)
        if process.poll() is None:
            process.kill()
            process.wait()
    for device in (CONTROL_TAP, CONTROL_VETH[0], CONTROL_BRIDGE):
        _sh("ip", "link", "del", device, check=False)
    _sh("ip", "netns", "del", CONTROL_NS, check=False)


async def _control_boot(args: argparse.Namespace, control: Path, image: Path,
                        virt_type: str, n: int) -> dict[str, float]:
    overlay = control / f"disk-{n}.qcow2"
    serial = control / f"serial-{n}.log"
    await asyncio.to_thread(subprocess.run, [
        "qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image), "-F", "qcow2",
        str(overlay), "1G"], check=True)
    started = time.time()
    accel = "kvm" if virt_type == "kvm" else "tcg"
    qemu = await asyncio.create_subprocess_exec(
        "qemu-system-x86_64", "-machine", f"pc,accel={accel}",
        "-m", str(args.memory_mb), "-smp", "1", "-nodefaults", "-display", "none",
        "-serial", f"file:{serial}",
        "-drive", f"file={overlay},if=virtio,format=qcow2",
        "-netdev", f"tap,id=n0,ifname={CONTROL_TAP},script=no,downscript=no",
        "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)
    try:
        return await _watch_markers(serial, started, args.timeout)
    finally:
        if args.keep_consoles:
            shutil.copy(serial, Path(args.keep_consoles) / f"control-{n}.log")
        qemu.kill()
        await qemu.wait()


# Scenario ---------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> Result:
    from stratus.compute.virt.libvirt import host
    from stratus.guest_image import ensure_image

    reason = host.usable()
    if reason is not None:
        raise RuntimeError(f"libvirt is not usable here: {reason}")
    virt_type = host.virt_type()
    cache = Path(os.environ.get("STRATUS_TEST_CACHE")
                 or Path.home() / ".cache" / "stratus-tests") / "guest-image"
    image = await asyncio.to_thread(ensure_image, cache)
    if shutil.which("dnsmasq") is None:
        raise RuntimeError("dnsmasq is not installed")
    control: dict[str, list[float]] = {"kernel": [], **{k: [] for k in MARKERS}}
    with tempfile.TemporaryDirectory(prefix="stratus-realboot-") as tmp:
        work = Path(tmp)
        control_dir = work / "control"
        control_dir.mkdir()

        async def control_boot(n: int) -> None:
            for key, seconds in (await _control_boot(args, control_dir, image, virt_type,
                                                     n)).items():
                control[key].append(seconds)

        servers = _control_network_up(control_dir)
        try:
            with _busy_loops(args.busy_loops):
                cloud, spans, seen = await _cloud_boots(args, work, image, control_boot)
                load_after_boots = os.getloadavg()[0]
        finally:
            _control_network_down(servers)
    metrics: dict[str, float] = {}
    for key, values in cloud.items():
        if not values:
            continue
        metrics[f"{key}_p50_s"] = percentile(values, 50)
        metrics[f"{key}_max_s"] = max(values)
    for key, values in control.items():
        if values:
            metrics[f"control_{key}_p50_s"] = percentile(values, 50)
    for name, values in sorted(spans.items()):
        metrics[f"span_{name.replace('.', '_')}_p50_ms"] = percentile(values, 50)
    metrics["metadata_behind_control_s"] = (metrics["metadata_p50_s"]
                                            - metrics["control_metadata_p50_s"])
    metrics["boots"] = float(args.boots)
    metrics["busy_loops"] = float(args.busy_loops)
    metrics["load_average_1m_after_boots"] = load_after_boots
    goals = [
        Goal("active_p50_s", ACTIVE_GOAL_S, "<=", "POST to ACTIVE, image cached"),
        Goal("metadata_behind_control_s", METADATA_BEHIND_GOAL_S, "<=",
             "metadata fetched no later than this after the plain-QEMU control"),
    ]
    return Result(metrics=metrics, goals=goals, backends={
        "virt_driver": "libvirt", "virt_type": virt_type, **seen,
        "network_backend": "linuxbridge", "guest_image": image.name,
        "flavor": "m1.tiny (1 vCPU, 512 MB)"})
