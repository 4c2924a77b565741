"""Issue 14 on a real guest: the real ``openstack`` CLI opens its consoles (noVNC and
serial, one-time tokens), pauses, suspends and rescues a test guest under libvirt/QEMU
(TCG here), sends it an NMI and is refused a password (no guest agent), one server for all
of it.

The guest prints ``STRATUS-TICK uptime=S`` every two seconds on its serial console
(``stratus/guest_image/scripts.py``). A paused guest prints none and its clock stands
still; unpaused it counts on from where it stopped. A suspended guest (libvirt's managed
save) comes back without booting again, its uptime going on. A rescued guest boots the
rescue image with its own disk as ``vdb``; unrescued it boots its own disk alone again.

Config drive: the server has one (``--use-config-drive``) and a password (``--password``);
each boot's init mounts the drive labelled ``config-2`` and sets root's password from its
``admin_pass``, printing ``STRATUS-PASSWORD user=root sha256=H shadow=ok`` (H: the SHA-256
of the password it applied). The first boot applies the boot's password, the rescue boot
the rescue's (the rescue's own drive), the boot after unrescue the boot's again.

Consoles: the noVNC URL's websocket, through the ``console-proxy`` unit, speaks the guest's
VNC (QEMU's RFB handshake), once per token; the serial URL's websocket reaches the guest's
serial port (the guest's tty echoes what is typed).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import websockets

from stratus.compute.virt.libvirt import host as libvirt_host
from tests.e2e.cloud import Cloud
from tests.e2e.test_realvm_cli import cloud, console_until, wait_status

__all__ = ["cloud"]  # the fixture: ``stratus up --with-test-image`` on libvirt

pytestmark = [pytest.mark.e2e, pytest.mark.realvm, pytest.mark.serial]

TICK = re.compile(r"^STRATUS-TICK uptime=([\d.]+)", re.MULTILINE)


def ticks(text: str) -> list[float]:
    return [float(t) for t in TICK.findall(text)]


def console(cloud: Cloud, name: str) -> str:
    return cloud.openstack("console", "log", "show", name).stdout


def more_ticks(cloud: Cloud, name: str, than: int, within: float = 120) -> str:
    """The console once it holds more than ``than`` ticks."""
    deadline = time.monotonic() + within
    while True:
        text = console(cloud, name)
        if len(ticks(text)) > than:
            return text
        assert time.monotonic() < deadline, f"no new tick on {name}:\n{text[-2000:]}"
        time.sleep(1)


def _vnc_websocket(url: str) -> str:
    """noVNC's page URL → the websocket it opens (``ws://<same host>/<path>``)."""
    parts = urlsplit(url)
    assert parts.path.endswith("/console/vnc_lite.html"), url
    (path,) = parse_qs(parts.query)["path"]
    return f"ws://{parts.netloc}/{path.lstrip('/')}"


async def _vnc_handshake(ws_url: str) -> bytes:
    async with websockets.connect(ws_url, subprotocols=["binary"],  # type: ignore[list-item]
                                  open_timeout=10) as ws:
        assert ws.subprotocol == "binary"
        greeting = await asyncio.wait_for(ws.recv(), 15)
        assert isinstance(greeting, bytes)
        return greeting


async def _refused(ws_url: str) -> int:
    with pytest.raises(websockets.InvalidStatus) as caught:
        async with websockets.connect(ws_url, open_timeout=10):
            pass
    return caught.value.response.status_code


async def _serial_echo(ws_url: str, word: bytes) -> bytes:
    seen = b""
    async with websockets.connect(ws_url, open_timeout=10) as ws:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and word not in seen:
            await ws.send(word + b"\r")
            try:
                while word not in seen:
                    chunk = await asyncio.wait_for(ws.recv(), 3)
                    seen += chunk if isinstance(chunk, bytes) else chunk.encode()
            except TimeoutError:
                continue
    return seen


PASSWORD = re.compile(r"^STRATUS-PASSWORD user=root sha256=([0-9a-f]{64}) shadow=(\w+)",
                      re.MULTILINE)


def applied_password(boot: str) -> tuple[str, str]:
    """(SHA-256 of the password the guest applied, whether its shadow entry checked) of one
    boot's console."""
    assert "STRATUS-CONFIGDRIVE device=sr0" in boot, boot[-2000:]
    (found,) = PASSWORD.findall(boot)
    return found


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def has_managed_save(server_id: str) -> bool:
    libvirt = libvirt_host.libvirt_module()
    conn = libvirt.open(libvirt_host.DEFAULT_URI)
    try:
        return bool(conn.lookupByUUIDString(server_id).hasManagedSaveImage(0))
    finally:
        conn.close()


@pytest.mark.timeout(1200)  # one TCG boot and two rescue boots on a shared machine
def test_consoles_open_once_pause_stops_the_clock_suspend_keeps_uptime_rescue_boots_rescue(
        cloud: Cloud) -> None:
    boot_password, rescue_password = "B00t-Passw0rd-cd", "R3scue-Passw0rd-cd"
    server = cloud.openstack_json("server", "create", "--image", "stratus-test-guest",
                                  "--flavor", "m1.tiny", "--nic", "none", "--use-config-drive",
                                  "--password", boot_password, "--wait", "vm1")
    assert server["status"] == "ACTIVE" and server["config_drive"] == "True"
    server_id = server["id"]
    text = console_until(cloud, "vm1", r"^STRATUS-READY")
    assert "STRATUS-DISK name=vda" in text and "name=vdb" not in text
    # The config drive (a cdrom, never a vdX) set root's password to the boot's.
    assert applied_password(text) == (sha256(boot_password), "ok")
    instance_dir = cloud.data_dir / "instances" / server_id
    assert (instance_dir / "disk.config").is_file()

    # Its consoles: a noVNC URL whose websocket reaches the guest's VNC server, a serial one
    # that echoes what is typed; each token opens one connection, and none is logged.
    novnc = cloud.openstack_json("console", "url", "show", "vm1")
    assert (novnc["protocol"], novnc["type"]) == ("vnc", "novnc")
    assert novnc["url"].startswith(f"{cloud.url}/console/vnc_lite.html?path=")
    ws_url = _vnc_websocket(novnc["url"])
    greeting = asyncio.run(_vnc_handshake(ws_url))
    assert greeting.startswith(b"RFB 003.00") and greeting.endswith(b"\n"), greeting
    assert asyncio.run(_refused(ws_url)) == 403  # one connection per token

    serial = cloud.openstack_json("console", "url", "show", "--serial", "vm1")
    assert (serial["protocol"], serial["type"]) == ("serial", "serial")
    assert serial["url"].startswith(f"ws://{urlsplit(cloud.url).netloc}/console/serial?token=")
    echoed = asyncio.run(_serial_echo(serial["url"], b"stratus-console-echo"))
    assert b"stratus-console-echo" in echoed, echoed[-500:]
    assert asyncio.run(_refused(serial["url"])) == 403

    # The tokens opened consoles; none of them reached the cloud's log.
    for url in (novnc["url"], serial["url"]):
        token = parse_qs(urlsplit(ws_url if url == novnc["url"] else url).query)["token"][0]
        assert len(token) >= 32 and token not in cloud.log()

    text = more_ticks(cloud, "vm1", 1)

    # Pause: no tick while paused, and the guest's clock did not run meanwhile.
    cloud.openstack("server", "pause", "vm1")
    wait_status(cloud, "vm1", "PAUSED")
    assert cloud.openstack_json("server", "show", "vm1")["OS-EXT-STS:power_state"] in (
        3, "Paused")
    paused_at = time.monotonic()
    before = ticks(console(cloud, "vm1"))
    time.sleep(8)
    assert ticks(console(cloud, "vm1")) == before
    cloud.openstack("server", "unpause", "vm1")
    wait_status(cloud, "vm1", "ACTIVE")
    paused_for = time.monotonic() - paused_at
    after = ticks(more_ticks(cloud, "vm1", len(before)))
    # Ticks come every 2 s of guest time; the wall clock ran ``paused_for`` (> 8 s) while
    # the guest's stood still, so the step across the pause is a normal one.
    step = after[len(before)] - before[-1]
    assert 0 < step < paused_for - 4, (step, paused_for)

    # Suspend: the memory goes to disk and the guest stops; resumed, it goes on counting
    # (no second boot).
    boots = console(cloud, "vm1").count("STRATUS-INIT")
    cloud.openstack("server", "suspend", "vm1")
    wait_status(cloud, "vm1", "SUSPENDED", within=300)
    assert has_managed_save(server_id)
    before = ticks(console(cloud, "vm1"))
    cloud.openstack("server", "resume", "vm1")
    wait_status(cloud, "vm1", "ACTIVE", within=300)
    assert not has_managed_save(server_id)
    text = more_ticks(cloud, "vm1", len(before))
    after = ticks(text)
    assert after[len(before)] > before[-1]
    assert text.count("STRATUS-INIT") == boots

    # The test guest runs no guest agent: a password is Nova's libvirt 409, nothing changed.
    result = cloud.openstack("server", "set", "--password", "n3w-Passw0rd", "vm1",
                             check=False)
    assert result.returncode != 0 and "QEMU guest agent is not enabled" in result.stderr
    shown = cloud.openstack_json("server", "show", "vm1")
    assert (shown["status"], shown["OS-EXT-STS:task_state"]) == ("ACTIVE", None)
    # An NMI reaches the guest (its kernel notes it quietly) and the guest goes on ticking.
    cloud.openstack("server", "dump", "create", "vm1")
    more_ticks(cloud, "vm1", len(ticks(console(cloud, "vm1"))))

    # Rescue: the rescue image (the server's own, by default) boots with the guest's disk
    # as vdb and a config drive of its own, with the rescue password; unrescued, the guest
    # boots its own disk alone, with its own drive.
    cloud.openstack("server", "rescue", "--password", rescue_password, "vm1")
    wait_status(cloud, "vm1", "RESCUE", within=300)
    text = console_until(cloud, "vm1", rf"(?s)(STRATUS-INIT.*){{{boots + 1}}}.*STRATUS-READY",
                         within=300)
    rescue_boot = text.rsplit("STRATUS-INIT", 1)[1]
    assert "STRATUS-DISK name=vda" in rescue_boot and "STRATUS-DISK name=vdb" in rescue_boot
    assert applied_password(rescue_boot) == (sha256(rescue_password), "ok")
    cloud.openstack("server", "unrescue", "vm1")
    wait_status(cloud, "vm1", "ACTIVE", within=300)
    text = console_until(cloud, "vm1", rf"(?s)(STRATUS-INIT.*){{{boots + 2}}}.*STRATUS-READY",
                         within=300)
    own_boot = text.rsplit("STRATUS-INIT", 1)[1]
    assert "STRATUS-DISK name=vda" in own_boot and "name=vdb" not in own_boot
    assert applied_password(own_boot) == (sha256(boot_password), "ok")
    assert not (instance_dir / "disk.config.rescue").exists()
    # Neither password is in the cloud's log or on the console.
    for password in (boot_password, rescue_password):
        assert password not in cloud.log() and password not in console(cloud, "vm1")

    events = [e["Action"] for e in cloud.openstack_json("server", "event", "list", "vm1")]
    assert events == ["unrescue", "rescue", "trigger_crash_dump", "changePassword", "resume",
                      "suspend", "unpause", "pause", "create"]
    cloud.openstack("server", "delete", "--wait", "vm1")
    assert not instance_dir.exists()  # the drives went with the server


MEM = re.compile(r"^STRATUS-MEM total_kb=(\d+)", re.MULTILINE)


@pytest.mark.timeout(900)  # two TCG boots on a shared machine
def test_a_resize_to_a_larger_flavor_gives_the_guest_more_memory(cloud: Cloud) -> None:
    """``server resize`` of a running real guest from m1.tiny (512 MiB) to m1.small
    (2 GiB): the guest boots again with the new flavor's memory (its kernel's MemTotal,
    a little under the RAM it was given), and keeps it once confirmed."""
    cloud.openstack("server", "create", "--image", "stratus-test-guest", "--flavor",
                    "m1.tiny", "--nic", "none", "--wait", "grows")
    text = console_until(cloud, "grows", r"^STRATUS-READY")
    (before,) = [int(kb) for kb in MEM.findall(text)]
    assert 400 * 1024 < before <= 512 * 1024, before

    cloud.openstack("server", "resize", "--flavor", "m1.small", "--wait", "grows")
    wait_status(cloud, "grows", "VERIFY_RESIZE")
    text = console_until(cloud, "grows",
                         rf"(?s)STRATUS-MEM total_kb=(?!{before}\b)\d+.*STRATUS-READY",
                         within=300)
    after = int(MEM.findall(text)[-1])
    assert 1536 * 1024 < after <= 2048 * 1024, after
    cloud.openstack("server", "resize", "confirm", "grows")
    wait_status(cloud, "grows", "ACTIVE")
    flavor = cloud.openstack_json("server", "show", "grows")["flavor"]  # 2.47+: embedded
    assert (flavor.get("name") or flavor.get("original_name"), flavor["ram"]) == (
        "m1.small", 2048), flavor
    cloud.openstack("server", "delete", "--wait", "grows")
