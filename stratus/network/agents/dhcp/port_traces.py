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

A guest chooses how often it asks: each port may add at most ``GUEST_SPANS`` spans per
``BUDGET_PERIOD`` (its requests past that, and requests from addresses no port holds, run
unsampled: neither the proxy nor metadata-api records them), so a guest cannot flood the
span store and push other requests' spans out.
"""

from __future__ import annotations

import random
import time
from collections import OrderedDict
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanContext, TraceFlags

from stratus.core.tracing import context_of
from stratus.network.objects import PortInfo

#: Seconds after the request that placed a port during which the guest's requests join it.
JOIN_WINDOW = 3600.0
#: Ports remembered at most (the least recently placed are forgotten first).
MAX_PORTS = 4096
#: Spans a port's guest may add per ``BUDGET_PERIOD`` seconds (a cloud-init boot: ~20).
GUEST_SPANS = 200
BUDGET_PERIOD = 3600.0


@dataclass(frozen=True)
class _Placed:
    device_id: str
    host: str
    span: SpanContext
    at: float


class PortTraces:
    def __init__(self, *, window: float = JOIN_WINDOW, limit: int = MAX_PORTS,
                 budget: int = GUEST_SPANS, period: float = BUDGET_PERIOD) -> None:
        self.window = window
        self.limit = limit
        self.budget = budget
        self.period = period
        self._ports: OrderedDict[str, _Placed] = OrderedDict()
        #: Port id → (start of its budget period, spans spent in it).
        self._spent: OrderedDict[str, tuple[float, int]] = OrderedDict()

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
        self._spent.pop(port.id, None)  # placed anew: a budget afresh
        self._ports.move_to_end(port.id)
        while len(self._ports) > self.limit:
            self._ports.popitem(last=False)

    def forget(self, port_id: str) -> None:
        self._ports.pop(port_id, None)
        self._spent.pop(port_id, None)

    def parent(self, port: PortInfo | None) -> Context | None:
        """The context a guest request on ``port`` joins: the placing request's, None (a
        trace of its own), or an unsampled one (nothing recorded: no port, or the port's
        budget spent)."""
        if port is None or not self._spend(port.id):
            return _unsampled()
        known = self._ports.get(port.id)
        if known is None or known.device_id != port.device_id \
                or time.monotonic() - known.at > self.window:
            return None
        return context_of(known.span)

    def _spend(self, port_id: str) -> bool:
        now = time.monotonic()
        began, spent = self._spent.get(port_id, (now, 0))
        if now - began > self.period:
            began, spent = now, 0
        self._spent[port_id] = (began, spent + 1)
        self._spent.move_to_end(port_id)
        while len(self._spent) > self.limit:
            self._spent.popitem(last=False)
        return spent < self.budget


def _unsampled() -> Context:
    """A context whose spans, and those of the services it reaches, are not recorded: the
    SDK's default sampler follows the parent's flag, and the flag travels in
    ``traceparent``."""
    return context_of(SpanContext(random.getrandbits(128) or 1, random.getrandbits(64) or 1,
                                  is_remote=True, trace_flags=TraceFlags(0)))
