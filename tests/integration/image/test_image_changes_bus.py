"""Image changes reach the image records of other processes over RabbitMQ
(``stratus.core.image_caches``), wired as ``Stack.share_image_changes`` wires them.

Each ``Stack`` here has a transport of its own, as a process would: ``worker`` runs the image
service (and a compute-api's records beside it, as a ``stratus serve --workers`` worker
does); ``other`` and ``third`` are compute-api processes with records only. A change
committed by the image service drops the records of its own process before the commit's
context ends, and those of the others when the fanout arrives; while a process's bus
connection is down its records serve nothing, and those filled before the outage never come
back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stratus.core.bus.transport.amqp import AmqpTransport
from stratus.core.bus.url import TransportURL
from stratus.core.config import Settings
from stratus.core.context import RequestContext
from stratus.core.image_caches import ImageRecords
from stratus.image.service import ImageRuntime
from stratus.stack import Stack
from tests.conftest import rabbitmqctl
from tests.integration.bus.conftest import eventually

pytestmark = pytest.mark.rabbitmq

ENDPOINT = "http://test/image"
IMAGE_A = "0f1d6a52-59f4-4d09-9f4b-3a47b3f9f0a1"
IMAGE_B = "5c9e1e8e-1b0a-4c55-b0a6-6a3c1b1f2e77"
ALICE = RequestContext(user_id="u-alice", project_id="p-alice", roles=["member", "reader"])
BOB = RequestContext(user_id="u-bob", project_id="p-bob", roles=["member", "reader"])


@dataclass
class Process:
    stack: Stack
    records: ImageRecords

    def fill(self, *image_ids: str) -> None:
        for image_id in image_ids:
            for ctx in (ALICE, BOB):
                self.records.put(image_id, ENDPOINT, ctx, record(image_id, ctx),
                                 self.records.generation)

    def has(self, image_id: str, ctx: RequestContext = ALICE) -> bool:
        return self.records.get(image_id, ENDPOINT, ctx) is not None


def record(image_id: str, ctx: RequestContext) -> dict[str, object]:
    return {"id": image_id, "status": "active", "seen_by": ctx.project_id}


@pytest.fixture
async def processes(tmp_path: Path, rabbit_url: str) -> AsyncIterator[dict[str, Process]]:
    # Quick reconnection: the outage test waits for it.
    url = f"{rabbit_url}?reconnect_min=0.05&reconnect_max=0.5"
    stacks: dict[str, Stack] = {}
    try:
        for name in ("worker", "other", "third"):
            stack = Stack(Settings(data_dir=tmp_path / name, bus_url=url))
            stacks[name] = stack
            records = stack.image_records()
            if name == "worker":
                await stack.runtime("image", lambda stack=stack: ImageRuntime(stack.settings))
            await stack.share_image_changes()
            assert records.enabled
        yield {name: Process(stack, stack.image_records()) for name, stack in stacks.items()}
    finally:
        for stack in stacks.values():
            await stack.aclose()


async def change(worker: Process, *image_ids: str, fail: bool = False) -> None:
    """Record changes of ``image_ids`` in one image service transaction (rolled back by an
    error when ``fail``)."""
    image = worker.stack.image
    assert image is not None
    try:
        async with image.service() as svc:
            for image_id in image_ids:
                svc.changes.changed(image_id)
            if fail:
                raise RuntimeError("rolled back")
    except RuntimeError:
        assert fail


async def test_a_change_empties_the_records_of_every_process(
        processes: dict[str, Process]) -> None:
    worker, other, third = processes["worker"], processes["other"], processes["third"]
    for process in processes.values():
        process.fill(IMAGE_A, IMAGE_B)
        assert process.has(IMAGE_A) and process.has(IMAGE_A, BOB) and process.has(IMAGE_B)
    # Each caller's own view: bob's record is not alice's.
    kept = other.records.get(IMAGE_A, ENDPOINT, BOB)
    assert kept is not None and kept["seen_by"] == "p-bob"

    # Rolled back: nothing told.
    await change(worker, IMAGE_A, fail=True)
    assert worker.has(IMAGE_A)

    await change(worker, IMAGE_A)
    # This process's records: dropped before the change's transaction context ended.
    assert not worker.has(IMAGE_A) and not worker.has(IMAGE_A, BOB)
    await eventually(lambda: not other.has(IMAGE_A) and not third.has(IMAGE_A),
                     within=30, message="the other processes' records of A dropped")
    assert not other.has(IMAGE_A, BOB) and not third.has(IMAGE_A, BOB)
    for process in processes.values():
        assert process.has(IMAGE_B) and process.has(IMAGE_B, BOB), "B did not change"


def amqp(process: Process) -> AmqpTransport:
    bus = process.stack.bus
    assert isinstance(bus, AmqpTransport)
    return bus


async def test_records_serve_nothing_while_the_bus_is_down_and_none_survive_it(
        processes: dict[str, Process], rabbit_url: str) -> None:
    worker, other = processes["worker"], processes["other"]
    for process in processes.values():
        process.fill(IMAGE_A, IMAGE_B)
    before = amqp(other).connections_made

    await rabbitmqctl("close_all_connections", "--vhost",
                      TransportURL.parse(rabbit_url).virtual_host, "stratus test: outage")
    await eventually(lambda: amqp(other).connection_epoch is None
                     or amqp(other).connections_made > before,
                     within=30, message="the outage noticed")
    # Whether still down or already back: nothing from before the outage is served.
    assert not other.has(IMAGE_A) and not other.has(IMAGE_B)
    other.fill(IMAGE_A)  # kept only if connected now (and then dropped by a change below)

    await eventually(lambda: all(amqp(p).connection_epoch == amqp(p).connections_made
                                 and amqp(p).connections_made > before
                                 for p in processes.values()),
                     within=60, message="every process reconnected")
    other.fill(IMAGE_A, IMAGE_B)
    assert other.has(IMAGE_A) and other.has(IMAGE_B), "kept again once reconnected"
    await change(worker, IMAGE_A)
    await eventually(lambda: not other.has(IMAGE_A), within=30,
                     message="a change after the outage reaches the other process")
    assert other.has(IMAGE_B)
