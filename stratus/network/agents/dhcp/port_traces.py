"""Which trace a guest's own requests (its DHCP exchange, its metadata requests) belong to.

A guest asks for its address and metadata on its own, with no trace context: nothing ties
those requests to the boot that made it. The agent remembers, per port, the trace of the
request that put the port where it is (the bus message that brought the port with this
device and host: a boot's, or a move's) and the guest's requests join that trace, so the
boot's table shows them (seed steps 31 and 52-54).

Robustness: what is remembered lives in this process only (gone after a restart), for
``JOIN_WINDOW`` seconds (a guest's requests an hour after its boot are not the boot's),
for at most ``MAX_PORTS`` ports. Whatever is not joined still names the instance
(``stratus.instance_uuid``), and ``stratus trace SERVER`` gathers every trace naming the
server, so a guest's requests are shown either way: in the boot's trace when known, in one
of their own otherwise.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanContext

from stratus.core.tracing import context_of
from stratus.network.objects import PortInfo

#: Seconds after the request that placed a port during which the guest's requests join it.
JOIN_WINDOW = 3600.0
#: Ports remembered at most (the least recently placed are forgotten first).
MAX_PORTS = 4096


@dataclass(frozen=True)
class _Placed:
    device_id: str
    host: str
    span: SpanContext
    at: float


class PortTraces:
    def __init__(self, *, window: float = JOIN_WINDOW, limit: int = MAX_PORTS) -> None:
        self.window = window
        self.limit = limit
        self._ports: OrderedDict[str, _Placed] = OrderedDict()

    def port_changed(self, port: PortInfo) -> None:
        """Called while handling a message about ``port``: the current span's trace is
        remembered when the message places the port on a new device or host (later updates
        of the same placement keep the first request's trace)."""
        if not port.device_id:
            return
        known = self._ports.get(port.id)
        if known is not None and (known.device_id, known.host) == (port.device_id,
                                                                   port.binding_host_id):
            return
        current = trace.get_current_span().get_span_context()
        if not current.is_valid:
            return
        self._ports[port.id] = _Placed(port.device_id, port.binding_host_id, current,
                                       time.monotonic())
        self._ports.move_to_end(port.id)
        while len(self._ports) > self.limit:
            self._ports.popitem(last=False)

    def forget(self, port_id: str) -> None:
        self._ports.pop(port_id, None)

    def parent(self, port: PortInfo | None) -> Context | None:
        """The context a guest request on ``port`` joins, or None (a trace of its own)."""
        if port is None:
            return None
        known = self._ports.get(port.id)
        if known is None or known.device_id != port.device_id \
                or time.monotonic() - known.at > self.window:
            return None
        return context_of(known.span)
