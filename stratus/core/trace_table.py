"""A request's path as the seeds' step table: what ``stratus trace SERVER_OR_REQUEST_ID``
prints and the operator API's trace route returns.

The spans of the request (or of every request about the server) are read from the embedded
span store (``stratus.core.spanstore``) and each is shown as one row: the seed's step
numbers (``4,7``; ``—`` where Stratus takes a step the seed has not: a span of the flow's
own carries them as its ``stratus.seed_step`` attribute, a bus or REST span is placed by
its name, kind and route), who talks to whom, what,
the unit and host that did it, its start offset from the first row, its duration and its
outcome. The seed's steps no row showed are listed after the table, with why where Stratus
does that step differently or not at all.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from stratus.core.spanstore import SpanStore, StoredSpan
from stratus.core.tracing import (
    SEED_STEP_ATTRIBUTE,
    SOURCE_ATTRIBUTE,
    TARGET_ATTRIBUTE,
    UNIT_ATTRIBUTE,
    WHAT_ATTRIBUTE,
)

#: The name the dashboard's request spans start with (``dashboard POST``).
DASHBOARD = "dashboard"

# OpenTelemetry's SpanKind values, as stored.
INTERNAL, SERVER, CLIENT, PRODUCER, CONSUMER = range(5)

#: The seed's table (``shared/seeds/004``): step → (from, to, what).
SEED_STEPS: dict[int, tuple[str, str, str]] = {
    1: ("Client", "Keystone", "Authentication request"),
    2: ("Keystone", "Token Store", "Save token"),
    3: ("Keystone", "Client", "Pass authentication token"),
    4: ("Client", "Nova.api", "Start instance"),
    5: ("Nova.api", "Database", "Create initial entry for instance"),
    6: ("Nova.api", "RabbitMQ", "Make rpc.cast to request the new instance"),
    7: ("Nova.api", "Client", "Instance request complete"),
    8: ("Nova.scheduler", "RabbitMQ", "Subscribe new instance request"),
    9: ("Nova.scheduler", "Database", "Read filtering and weighing information"),
    10: ("Nova.scheduler", "Database", "Read cluster state"),
    11: ("Nova.scheduler", "Database", "Save instance state"),
    12: ("Nova.scheduler", "RabbitMQ", "Rpc.cast to launch instance"),
    13: ("Nova-compute", "RabbitMQ", "Subscribe new instance request"),
    14: ("Nova-compute", "RabbitMQ", "Rpc.call to Nova-conductor to fetch the instance "
                                     "information"),
    15: ("Nova-conductor", "RabbitMQ", "Subscribe new instance request"),
    16: ("Nova-conductor", "RabbitMQ", "Read instance state"),
    17: ("Nova-conductor", "RabbitMQ", "Publish new instance state"),
    18: ("Nova-compute", "RabbitMQ", "Subscribe new instance request"),
    19: ("Nova-compute", "Glance.api", "[REST] get Image URI by Image ID from glance"),
    20: ("Glance.api", "Nova-compute", "Return image URI"),
    21: ("Nova-compute", "Ceph_mon", "Retrieve cluster map"),
    22: ("Ceph_mon", "Nova-compute", "Return cluster map"),
    23: ("Nova-compute", "Ceph_rgw", "[REST] request for object"),
    24: ("Ceph_rgw", "Ceph_osd", "[Socket] get object"),
    25: ("Ceph_rgw", "Nova-compute", "Return object"),
    26: ("Nova-compute", "Neutron-server", "Allocate and configure the network for the "
                                          "instance"),
    27: ("Neutron-server", "RabbitMQ", "Request IP address"),
    28: ("Neutron-server", "RabbitMQ", "Request L2 configuration"),
    29: ("Neutron-DHCP-agent", "RabbitMQ", "Read request IP address"),
    30: ("Neutron-DHCP-agent", "Dnsmasq", "Allocate IP address"),
    31: ("Dnsmasq", "Neutron-DHCP-agent", "Reply"),
    32: ("Neutron-DHCP-agent", "RabbitMQ", "Reply IP address"),
    33: ("Neutron-server", "RabbitMQ", "Read IP address"),
    34: ("Neutron-L2-Agent", "RabbitMQ", "Read request for L2 configuration"),
    35: ("Neutron-L2-Agent", "Libvirt", "Configure L2"),
    36: ("Neutron-L2-Agent", "RabbitMQ", "Reply to L2 configuration"),
    37: ("Neutron-server", "Database", "Save instance network state"),
    38: ("Neutron-server", "Nova-compute", "Pass network information"),
    39: ("Nova-compute", "Cinder.api", "[REST] get volume data"),
    40: ("Cinder.api", "Keystone", "Validate token and permissions"),
    41: ("Keystone", "Cinder.api", "Update authentication headers with roles and acl"),
    42: ("Cinder.api", "Nova-compute", "Return volume information"),
    43: ("Nova-compute", "Libvirt", "Start VM"),
    44: ("Nova-compute", "Libvirt", "Update port information"),
    45: ("Nova-compute", "RabbitMQ", "Rpc.call to Nova-conductor to fetch the instance "
                                     "information"),
    46: ("Nova-conductor", "RabbitMQ", "Subscribe new instance request"),
    47: ("Nova-conductor", "RabbitMQ", "Publish new instance state"),
    48: ("Nova-compute", "Libvirt", "Pass volume information"),
    49: ("Libvirt", "Ceph_mon", "Get cluster map"),
    50: ("Ceph_mon", "Libvirt", "Return cluster map"),
    51: ("Libvirt", "Ceph_osd", "Mount volume"),
    52: ("VM-instance", "Neutron_metadata_proxy", "http rest 169.254.169.254"),
    53: ("Neutron_metadata_proxy", "Nova-api-metadata", "http rest add uuid into X-headers"),
    54: ("Neutron_metadata_proxy", "VM-instance", "Return metadata"),
    55: ("Client", "Nova-api", "Poll instance state"),
    56: ("Nova.api", "Database", "Read instance state"),
    57: ("Database", "Nova.api", "Return state"),
    58: ("Nova-api", "Client", "Return instance state"),
}

#: Seed steps Stratus does differently or not at all, and how.
NOT_AS_IN_SEED: dict[int, str] = {
    1: "the client's authentication is a request of its own (stratus trace its request id)",
    3: "the client's authentication is a request of its own (stratus trace its request id)",
    2: "Fernet tokens: identity stores none (nothing to save)",
    21: "no Ceph here: the host downloads the image from the image API into its cache "
        "(steps 23 and 25)",
    22: "no Ceph here", 24: "no Ceph here",
    14: "the scheduler's claim took the build up for the host and its cast carries the "
        "instance (as Nova's build_and_run_instance does): the host calls the conductor for "
        "it only on a delivery that may not be the first (begin_build)",
    15: "the scheduler's claim took the build up for the host and its cast carries the "
        "instance: the conductor is not asked for it",
    31: "no guest asked for its address in this trace (the fake driver runs none, or its "
        "DHCP reply is not in yet: dnsmasq reports it through the lease script)",
    32: "the DHCP agent answers nothing: it writes dnsmasq's hosts file (the address is the "
        "network server's own choice, made with the port)",
    33: "the DHCP agent answers nothing: the address is the network server's own choice",
    40: "the token was validated in-process or from the validator's cache (no REST call)",
    41: "the token was validated in-process or from the validator's cache (no REST call)",
    49: "no Ceph here", 50: "no Ceph here", 51: "no Ceph here",
    52: "no guest asked for its metadata in this trace (the fake driver runs none)",
    53: "no guest asked for its metadata in this trace (the fake driver runs none)",
    54: "no guest asked for its metadata in this trace (the fake driver runs none)",
}

#: Topics served per host: a message's queue names the host that took it.
HOST_TOPICS = frozenset({"compute", "compute-events", "l2_agent", "l3_agent", "volume"})

#: A bus topic → the unit serving it.
TOPIC_UNITS = {"scheduler": "scheduler", "conductor": "conductor", "compute": "compute-agent",
               "compute-events": "compute-agent",
               "network": "network-api", "dhcp_agent": "dhcp-agent", "l2_agent": "l2-agent",
               "l3_agent": "l3-agent", "volume": "volume-manager"}

#: An internal span of the flow → what it reaches (its seed steps are its attribute
#: ``stratus.seed_step``).
INTERNAL_TARGETS: dict[str, str] = {
    "compute.create_rows": "database",
    "scheduler.select_and_claim": "database",
    "compute.allocate_network": "network-api",
    "compute.wait_vif_plugged": "network-api",
    "compute.connect_volumes": "volume-api",
    "compute.fetch_image": "image-api",
    "compute.spawn": "virt driver",
    # The libvirt driver's parts of a spawn.
    "libvirt.root_disk": "qemu-img",
    "libvirt.local_disks": "qemu-img",
    "libvirt.config_drive": "genisoimage",
    "libvirt.define": "libvirtd",
    "libvirt.start": "libvirtd",
}

_BUS_NAME = re.compile(r"^bus\.(cast|call|fanout) (?P<dest>\S+)\.(?P<method>[A-Za-z0-9_]+)$")
_URL_UNIT = re.compile(r"^https?://[^/]+(?P<path>/(?P<prefix>[a-z-]+)(?P<rest>/\S*)?)$")


@dataclass(frozen=True)
class Row:
    step: str
    source: str
    target: str
    what: str
    unit: str
    host: str
    start_ms: float
    duration_ms: float
    outcome: str
    trace_id: str
    span_id: str


def _steps_of_range(spec: str) -> list[int]:
    steps: list[int] = []
    for part in spec.split(","):
        if "-" in part:
            low, high = part.split("-")
            steps += range(int(low), int(high) + 1)
        elif part.strip().isdigit():
            steps.append(int(part))
    return steps


def _bus_parts(span: StoredSpan) -> tuple[str, str] | None:
    """(topic, method) of a bus span."""
    match = _BUS_NAME.match(span.name)
    if match is None:
        return None
    return match["dest"].split(".")[0], match["method"]


def _bus_host(span: StoredSpan, topic: str) -> str | None:
    """The server a bus span's queue names (``compute.<host>``), if any."""
    destination = str(span.attributes.get("messaging.destination.name", ""))
    marker = f"{topic}."
    if marker in destination:
        return destination.split(marker, 1)[1] or None
    return None


def _url_unit(url: str) -> tuple[str, str]:
    """(unit, path) an outgoing HTTP span reached."""
    match = _URL_UNIT.match(url)
    if match is None:
        return "?", url
    return f"{match['prefix']}-api", match["path"]


def _http_steps(unit: str, method: str, path: str) -> str:
    """The seed steps of a REST request to ``unit`` (server side or client side)."""
    if unit == "identity-api" and path.endswith("/auth/tokens"):
        return "1-3" if method == "POST" else "40-41"
    if unit == "compute-api" and re.search(r"/servers$", path) and method == "POST":
        return "4,7"
    if unit == "compute-api" and "/servers/" in path and method == "GET":
        return "55-58"
    if unit == "image-api" and path.endswith("/file"):
        return "23,25"
    if unit == "image-api" and "/images/" in path:
        return "19-20"
    if unit == "network-api":
        return "26,37" if method in ("POST", "PUT") else "26"
    if unit == "compute-api" and path.endswith("/os-server-external-events"):
        return "38"  # the network service passes the port's news (network-vif-plugged)
    if unit == "volume-api":
        return "39,42"
    if unit == "metadata-api":
        return "53"
    return "—"


class _Table:
    """The rows of one set of spans, with each span's unit worked out from its ancestors."""

    def __init__(self, spans: Sequence[StoredSpan]) -> None:
        self.spans = sorted(spans, key=lambda s: s.start_ns)
        self.by_id = {s.span_id: s for s in self.spans}
        self._units: dict[str, str] = {}
        #: When each trace's guests began to spawn: per instance, and under None the
        #: trace's first (for a span naming no instance). Spans are by start time: the
        #: first one seen is the earliest.
        self._spawned: dict[tuple[str, str | None], int] = {}
        for span in self.spans:
            if span.name == "compute.spawn":
                self._spawned.setdefault((span.trace_id, span.instance_uuid), span.start_ns)
                self._spawned.setdefault((span.trace_id, None), span.start_ns)
        #: Each trace's first span (its root, as far as the store has it).
        self.roots: dict[str, StoredSpan] = {}
        for span in self.spans:
            self.roots.setdefault(span.trace_id, span)

    def unit(self, span: StoredSpan) -> str:
        cached = self._units.get(span.span_id)
        if cached is not None:
            return cached
        unit = self._unit(span)
        self._units[span.span_id] = unit
        return unit

    def _unit(self, span: StoredSpan) -> str:
        named = span.attributes.get(UNIT_ATTRIBUTE)
        if isinstance(named, str):
            return named
        if span.kind == SERVER:
            service = span.name.split(" ")[0]
            # The dashboard is a unit of its own, not an API: a launch's trace starts there.
            return service if service == DASHBOARD else f"{service}-api"
        if span.kind == CONSUMER and (parts := _bus_parts(span)) is not None:
            return TOPIC_UNITS.get(parts[0], parts[0])
        parent = self.by_id.get(span.parent_id or "")
        if parent is not None and (parent.host, parent.pid) == (span.host, span.pid):
            return self.unit(parent)
        units = span.units.split(",")
        return units[0] if len(units) == 1 and units[0] != "-" else "stratus"

    def host(self, span: StoredSpan) -> str:
        if span.kind == CONSUMER and (parts := _bus_parts(span)) is not None \
                and parts[0] in HOST_TOPICS and not span.name.startswith("bus.fanout"):
            server = _bus_host(span, parts[0])
            if server is not None:
                return server
        parent = self.by_id.get(span.parent_id or "")
        if span.kind != SERVER and parent is not None and parent.pid == span.pid \
                and parent.host == span.host:
            return self.host(parent)
        return span.host

    def caller(self, span: StoredSpan) -> str:
        parent = self.by_id.get(span.parent_id or "")
        if parent is None:
            return "client"
        return self.unit(parent)

    def row(self, span: StoredSpan, origin: int) -> Row:
        unit = self.unit(span)
        source, target, step = unit, unit, "—"
        what = span.name
        outcome = "error" if span.status == 2 else "ok"
        if span.status == 2 and span.status_message:
            outcome = f"error: {span.status_message}"
        status_code = span.attributes.get("http.status_code")
        if status_code is not None:
            outcome = str(status_code)
        if span.kind == SERVER:
            method = str(span.attributes.get("http.method", ""))
            route = str(span.attributes.get("http.route", span.attributes.get("http.target", "")))
            if unit == "metadata-api":  # one catch-all route: the path says what was asked
                route = str(span.attributes.get("http.target", route))
            what = f"{method} {route}"
            source = self.caller(span)
            step = _http_steps(unit, method, route)
        elif (parts := _bus_parts(span)) is not None:
            topic, method = parts
            served_by = TOPIC_UNITS.get(topic, topic)
            kind = span.name.split(" ")[0].removeprefix("bus.")
            what = f"{kind} {method}"
            if span.kind == CONSUMER:
                source, target = self.caller(span), unit
            else:
                source, target = unit, served_by
            step = _bus_steps(topic, method, span.kind, self._after_spawn(span))
        elif span.kind == CLIENT and "http.url" in span.attributes:
            target, path = _url_unit(str(span.attributes["http.url"]))
            method = str(span.attributes.get("http.method", ""))
            what = f"{method} {path}"
            step = _http_steps(target, method, path)
        elif span.name in INTERNAL_TARGETS:
            target = INTERNAL_TARGETS[span.name]
        recorded = span.attributes.get(SEED_STEP_ATTRIBUTE)
        if isinstance(recorded, str):
            step = recorded
        source = str(span.attributes.get(SOURCE_ATTRIBUTE, source))
        target = str(span.attributes.get(TARGET_ATTRIBUTE, target))
        what = str(span.attributes.get(WHAT_ATTRIBUTE, what))
        if source == "compute-api" and target == "network-api":
            step = "—"  # the API checking the networks asked for: the seed shows no such step
        if step == "1-3" and source != "client":
            step = "—"  # a unit's own service token, not the client's
        root = self.roots[span.trace_id]
        if root is not span and root.kind == SERVER and root.attributes.get(
                "http.method") == "GET" and root.attributes.get(SOURCE_ATTRIBUTE) != "guest":
            step = "—"  # what a read (a poll: 55-58) asks of other services, Stratus's own
        return Row(step=step, source=source, target=target, what=what, unit=unit,
                   host=self.host(span), start_ms=round((span.start_ns - origin) / 1e6, 3),
                   duration_ms=round(span.duration_ns / 1e6, 3), outcome=outcome,
                   trace_id=span.trace_id, span_id=span.span_id)

    def _after_spawn(self, span: StoredSpan) -> bool:
        """Whether ``span`` began after its guest's spawn (in its own trace: a boot of
        several guests spawns each in its time, and a message about one guest's build is
        not past the spawn because another guest's began)."""
        spawned = self._spawned.get((span.trace_id, span.instance_uuid))
        return spawned is not None and span.start_ns > spawned

    def rows(self) -> list[Row]:
        if not self.spans:
            return []
        origin = self.spans[0].start_ns
        return [self.row(span, origin) for span in self.spans]


def _bus_steps(topic: str, method: str, kind: int, after_spawn: bool) -> str:
    sending = kind in (PRODUCER, CLIENT)
    if topic == "scheduler" and method == "schedule_and_build":
        return "6" if sending else "8"
    if topic == "compute" and method == "build_and_run_instance":
        return "12" if sending else "13"
    if topic == "conductor" and method in ("begin_build", "build_started"):
        return "14" if sending else "15-17"
    if topic == "conductor" and method in ("instance_update", "instance_get"):
        if after_spawn:
            return "45" if sending else "46-47"
        return "18" if sending else "16-17"
    if topic in ("compute", "compute-events") and method == "external_instance_event":
        return "38"
    if topic == "dhcp_agent" and method in ("port_updated", "network_updated"):
        return "27" if sending else "29-30"  # 31: dnsmasq's reply, its own span
    if topic == "l2_agent" and method == "port_bound":
        return "28" if sending else "34-35"
    if topic == "network" and method in ("get_network", "ensure_dhcp_port"):
        return "32-33"
    if topic == "network" and method == "get_device_details":
        return "34"
    if topic == "network" and method == "update_device_up":
        return "36"
    return "—"


def table(spans: Sequence[StoredSpan]) -> list[Row]:
    """The rows of ``spans`` (one request's or one server's), by start time."""
    return _Table(spans).rows()


def rows_of(store: SpanStore, key: str) -> list[Row]:
    """The rows of every trace naming ``key`` (a request id or a server's id) in ``store``."""
    return table(store.trace(store.traces_of(key)))


def seed_coverage(rows: Sequence[Row]) -> tuple[list[int], dict[int, str]]:
    """The seed steps the rows show, and those they do not (with why, where known)."""
    seen = sorted({n for row in rows for n in _steps_of_range(row.step)})
    missing = {n: NOT_AS_IN_SEED.get(n, "not seen in this trace") for n in SEED_STEPS
               if n not in seen}
    return seen, missing


def as_json(key: str, rows: Sequence[Row]) -> dict[str, Any]:
    seen, missing = seed_coverage(rows)
    return {"key": key, "traces": list(dict.fromkeys(r.trace_id for r in rows)),
            "steps": [asdict(r) for r in rows], "seed_steps_seen": seen,
            "seed_steps_not_seen": {str(n): why for n, why in missing.items()}}


def as_lines(key: str, rows: Sequence[Row]) -> list[str]:
    """The table as text, then the seed steps not seen."""
    header = ("step", "from → to", "what", "unit@host", "start ms", "ms", "outcome")
    body = [(r.step, f"{r.source} → {r.target}", r.what, f"{r.unit}@{r.host}",
             f"{r.start_ms:.1f}", f"{r.duration_ms:.1f}", r.outcome) for r in rows]
    widths = [max(len(str(line[i])) for line in [header, *body]) for i in range(len(header))]
    lines = [f"{key}: {len(rows)} span(s) in "
             f"{len({r.trace_id for r in rows})} trace(s)"]
    for line in [header, *body]:
        lines.append("  ".join(str(cell).ljust(width) if i < len(line) - 1 else str(cell)
                               for i, (cell, width) in enumerate(zip(line, widths, strict=True))))
    seen, missing = seed_coverage(rows)
    lines.append(f"Seed steps shown: {len(seen)} of {len(SEED_STEPS)}")
    for number, why in missing.items():
        source, target, what = SEED_STEPS[number]
        lines.append(f"  {number} {source} → {target} ({what}): {why}")
    return lines
