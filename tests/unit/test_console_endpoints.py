"""Where a libvirt guest's consoles are: its domain XML asks for VNC on loopback only, and
the live XML (after libvirt picked the port and pty) gives the endpoints."""

from __future__ import annotations

from pathlib import Path

import pytest

from stratus.compute.console_types import ConsoleUnavailable
from stratus.compute.virt.driver import GuestSpec
from stratus.compute.virt.fake import FakeDriver
from stratus.compute.virt.libvirt.consoles import console_endpoint
from tests.unit.test_libvirt_xml import make

LIVE = """<domain type='qemu'><devices>
  <serial type='pty'><source path='/dev/pts/7'/><log file='/i/console.log' append='on'/>
    <target port='0'/></serial>
  <graphics type='vnc' port='5903' autoport='yes' listen='127.0.0.1'>
    <listen type='address' address='127.0.0.1'/></graphics>
</devices></domain>"""


def test_every_guest_gets_vnc_on_loopback_and_keeps_its_logged_serial() -> None:
    devices = make().find("devices")
    assert devices is not None
    (graphics,) = devices.findall("graphics")
    assert (graphics.get("type"), graphics.get("autoport"), graphics.get("listen")) == (
        "vnc", "yes", "127.0.0.1")
    listen = graphics.find("listen")
    assert listen is not None and listen.get("address") == "127.0.0.1"
    serial = devices.find("serial")
    assert serial is not None and serial.get("type") == "pty"
    log = serial.find("log")
    assert log is not None and log.get("file") == "/inst/console.log"


def test_live_xml_gives_the_vnc_port_and_serial_pty() -> None:
    vnc = console_endpoint(LIVE, "vnc", "u")
    assert (vnc.kind, vnc.host, vnc.port, vnc.path) == ("vnc", "127.0.0.1", 5903, None)
    serial = console_endpoint(LIVE, "serial", "u")
    assert (serial.kind, serial.port, serial.path) == ("serial", None, "/dev/pts/7")


@pytest.mark.parametrize("xml", [
    "<domain><devices/></domain>",
    "<domain><devices><graphics type='vnc' port='-1' autoport='yes'/>"
    "<serial type='file'><source path='/x'/></serial></devices></domain>",
])
def test_no_console_is_unavailable(xml: str) -> None:
    for kind in ("vnc", "serial"):
        with pytest.raises(ConsoleUnavailable):
            console_endpoint(xml, kind, "u")  # type: ignore[arg-type]


async def test_fake_driver_has_no_console_and_says_so() -> None:
    driver = FakeDriver()
    await driver.spawn(GuestSpec(uuid="u1", name="vm", vcpus=1, memory_mb=64, root_gb=1,
                                 image_path=Path("/nonexistent")))
    with pytest.raises(ConsoleUnavailable, match="fake driver"):
        await driver.get_console("u1", "vnc")
