"""Where a running libvirt guest's consoles are, read from its live domain XML: the VNC
server's loopback port (libvirt picks it at start) and the serial port's pty."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from stratus.compute.console_types import ConsoleEndpoint, ConsoleKind, ConsoleUnavailable


def console_endpoint(live_xml: str, kind: ConsoleKind, uuid: str) -> ConsoleEndpoint:
    """The ``kind`` console of the domain described by ``live_xml`` (a running one's)."""
    devices = ET.fromstring(live_xml).find("devices")
    if kind == "vnc":
        graphics = devices.find("graphics[@type='vnc']") if devices is not None else None
        port = int(graphics.get("port", "-1")) if graphics is not None else -1
        if graphics is None or port <= 0:
            raise ConsoleUnavailable(f"Unavailable console type vnc: guest {uuid} has no "
                                     f"VNC server running.")
        listen = graphics.get("listen") or "127.0.0.1"
        return ConsoleEndpoint(kind="vnc", host=listen, port=port)
    serial = devices.find("serial[@type='pty']") if devices is not None else None
    source = serial.find("source") if serial is not None else None
    path = source.get("path") if source is not None else None
    if not path:
        raise ConsoleUnavailable(f"Unavailable console type serial: guest {uuid} has no "
                                 f"serial pty.")
    return ConsoleEndpoint(kind="serial", host="127.0.0.1", path=path)
