"""This process's metrics, in Prometheus' text format at ``/metrics``.

One registry per process (prometheus-client's default, with its process and Python
collectors): the all-in-one ``stratus up`` has one ``/metrics`` for everything it runs; in
split mode each ``stratus serve`` process has its own (bus-only units on ``metrics.port``).

Contracts:

* Labels are bounded sets named by code, never by a caller: an API request is labelled with
  its route's template (``/v2.1/servers/{server_id}``, ``unmatched`` when no route took it),
  never its raw path; a bus message with its topic (not the host of a host's queue) and
  method; errors with a category. No label or value ever holds a token, password or key.
* Recording is cheap: a labelled child is looked up once per label set (``child``) and then
  costs an increment or an observation; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import lru_cache
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response

#: Latency buckets (seconds) of API requests and bus calls: a cached token check takes
#: well under a millisecond, an image upload minutes.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0, 300.0)

# API (core/web/middleware.py) -------------------------------------------------------------

API_REQUESTS = Histogram(
    "stratus_api_request_duration_seconds",
    "API requests by service, method, route template and status, with their latency.",
    ["service", "method", "route", "status"], buckets=LATENCY_BUCKETS)
API_IN_PROGRESS = Gauge(
    "stratus_api_requests_in_progress", "API requests being answered now.", ["service"])

#: The route label of a request no route matched (an unknown path: a 404 or 405).
UNMATCHED_ROUTE = "unmatched"

# Bus (core/bus/client.py, core/bus/server.py) ---------------------------------------------

BUS_SENT = Counter(
    "stratus_bus_messages_sent_total",
    "Messages sent on the bus, by kind (cast, call, fanout), topic and method.",
    ["kind", "topic", "method"])
BUS_SEND_ERRORS = Counter(
    "stratus_bus_send_errors_total",
    "Casts and calls that failed on the sending side, by kind, topic and error: delivery "
    "(the broker did not take it), timeout (no reply in time), remote (the handler raised).",
    ["kind", "topic", "error"])
BUS_CALL_DURATION = Histogram(
    "stratus_bus_call_duration_seconds", "Bus calls from send to reply, by topic and method.",
    ["topic", "method"], buckets=LATENCY_BUCKETS)
BUS_HANDLED = Counter(
    "stratus_bus_messages_handled_total",
    "Messages this process's bus servers handled, by kind, topic, method and outcome: ok, "
    "error (the handler raised), rejected (can never succeed), invalid (not a message), "
    "duplicate (already handled), expired (its caller stopped waiting).",
    ["kind", "topic", "method", "outcome"])
BUS_IN_FLIGHT = Gauge(
    "stratus_bus_handlers_in_flight", "Bus messages being handled now, by topic.", ["topic"])

#: The method label of a message whose method this server does not serve.
UNKNOWN_METHOD = "unknown"

# Compute --------------------------------------------------------------------------------

BOOTS = Counter(
    "stratus_compute_boots_total",
    "Boots by outcome: active (built on a host), rescheduled (a host failed; an alternate "
    "takes it), error (the build failed for good), no_valid_host (the scheduler found none), "
    "cancelled (deleted while building).",
    ["outcome"])
SCHEDULER_DECISIONS = Histogram(
    "stratus_scheduler_decision_seconds",
    "Time the scheduler took to place and claim one instance, by outcome (placed, "
    "no_valid_host, gone).",
    ["outcome"], buckets=LATENCY_BUCKETS)
AGENT_BUILDS_IN_FLIGHT = Gauge(
    "stratus_compute_agent_builds_in_flight", "Builds a compute host is running now.",
    ["host"])
AGENT_DELETES_IN_FLIGHT = Gauge(
    "stratus_compute_agent_deletes_in_flight", "Deletes a compute host is running now.",
    ["host"])
AGENT_RELEASE_RETRIES = Counter(
    "stratus_compute_agent_release_retries_total",
    "A deleted guest's ports or volumes asked again of a service that failed transiently.",
    ["host"])

# Bytes moved ----------------------------------------------------------------------------

IMAGE_BYTES = Counter(
    "stratus_image_bytes_total",
    "Image data moved by the image service: uploaded (into its store) or downloaded.",
    ["direction"])
IMAGE_CACHE_BYTES = Counter(
    "stratus_image_cache_fetched_bytes_total",
    "Image data fetched from the image service into this host's image cache (compute and "
    "volume hosts).")
VOLUME_BYTES = Counter(
    "stratus_volume_bytes_total",
    "Data the volume hosts moved between volumes and images, by operation (from_image, "
    "to_image).",
    ["operation"])


@lru_cache(maxsize=8192)
def child(metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, looked up once per label set (a cached dictionary hit
    afterwards, which prometheus-client's own lookup is not: it validates and locks)."""
    return metric.labels(*labels)


async def counting(chunks: AsyncIterator[bytes], counter: Any) -> AsyncIterator[bytes]:
    """``chunks`` as they are, each one's length added to ``counter`` as it passes."""
    async for chunk in chunks:
        counter.inc(len(chunk))
        yield chunk


def exposition() -> tuple[bytes, str]:
    """This process's metrics in Prometheus' text format, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


async def metrics_endpoint(_: Request) -> Response:
    """``GET /metrics``: unauthenticated, as Prometheus scrapes it; nothing in it is secret."""
    body, content_type = exposition()
    return Response(body, media_type=content_type)
