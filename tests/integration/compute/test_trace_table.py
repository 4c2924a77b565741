"""A boot's spans as the seeds' step table: the cloud built as ``stratus up`` builds it (fake
driver), its spans kept in a span store as the CLI's processes keep them, and the table of
the server read back as ``stratus trace`` reads it."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from stratus.cli.cloud import CloudError, get_json
from stratus.core.spanstore import SpanStore, SpanStoreExporter
from stratus.core.trace_table import as_json, as_lines, seed_coverage, table
from tests.integration.asgi import LateASGITransport
from tests.integration.clouds import ROOT, CloudStarter, TestCloud

UNITS = ("identity-api", "image-api", "compute-api", "conductor", "scheduler", "compute-agent",
         "network-api", "volume-api")


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[TestCloud]:
    starter = CloudStarter("sqlite+aiosqlite:///" + str(tmp_path / "cloud.db"), tmp_path,
                           "trace-admin-pw")
    try:
        yield await starter.start(TestCloud, UNITS, f"memory://trace-{uuid.uuid4().hex[:8]}",
                                  network={"backend": "noop"})
    finally:
        await starter.aclose()


def order_of(steps: list[str], *wanted: str) -> list[int]:
    return [steps.index(step) for step in wanted]


async def test_a_boot_reads_as_the_seed_table(cloud: TestCloud, tmp_path: Path,
                                              span_exporter: InMemorySpanExporter) -> None:
    client, admin = cloud.client, cloud.admin.headers
    network = (await client.post("/network/v2.0/networks", headers=admin, json={
        "network": {"name": "net"}})).json()["network"]
    subnet = await client.post("/network/v2.0/subnets", headers=admin, json={"subnet": {
        "network_id": network["id"], "cidr": "10.9.0.0/24", "ip_version": 4}})
    assert subnet.status_code == 201, subnet.text
    image = (await client.post("/image/v2/images", headers=admin, json={
        "name": "tiny", "disk_format": "raw", "container_format": "bare"})).json()
    await client.put(f"/image/v2/images/{image['id']}/file", content=b"\0" * 1024,
                     headers={**admin, "Content-Type": "application/octet-stream"})
    span_exporter.clear()

    started = time.monotonic()
    created = await client.post("/compute/v2.1/servers", headers=admin, json={"server": {
        "name": "traced", "imageRef": image["id"], "flavorRef": "1",
        "networks": [{"uuid": network["id"]}]}})
    assert created.status_code == 202, created.text
    server_id = created.json()["server"]["id"]
    while (server := (await client.get(f"/compute/v2.1/servers/{server_id}",
                                       headers=admin)).json()["server"])["status"] != "ACTIVE":
        assert server["status"] == "BUILD", server
        assert time.monotonic() - started < 30
        await asyncio.sleep(0.02)
    client_ms = (time.monotonic() - started) * 1000
    await asyncio.sleep(0.1)  # the agent's handler ends just after the ACTIVE commit

    store = SpanStore(cloud.settings.data_dir)
    SpanStoreExporter(store).export(span_exporter.get_finished_spans())
    rows = table(store.trace(store.traces_of(server_id)))
    store.close()

    request_id = created.headers["x-openstack-request-id"]
    create = [r for r in rows if r.trace_id == rows[0].trace_id]
    assert rows[0].what == "POST /v2.1/servers" and rows[0].step == "4,7"
    assert rows[0].source == "client" and rows[0].outcome == "202"
    steps = [r.step for r in create]
    # The flow in the seed's order: the API's row, cast, the scheduler's choice and cast,
    # the host taking the build up from the cast (the scheduler's claim took it up: no
    # call to the conductor, steps 14-15), the network, the driver, ACTIVE.
    assert order_of(steps, "4,7", "5", "6", "8", "9-11", "12", "13",
                    "26", "43-44", "45", "46-47") == sorted(
        order_of(steps, "4,7", "5", "6", "8", "9-11", "12", "13",
                 "26", "43-44", "45", "46-47"))
    assert "14" not in steps and "15-17" not in steps
    units = {r.unit for r in create}
    assert units >= {"compute-api", "scheduler", "compute-agent", "conductor", "network-api",
                     "image-api"}
    # One trace: the bus envelope and the HTTP headers carried it everywhere.
    assert {r.trace_id for r in create} == {rows[0].trace_id}
    # The spans fit in the time the client measured, POST to ACTIVE.
    (activating,) = [r for r in create if r.step == "45"]
    assert activating.start_ms <= client_ms
    assert max(r.start_ms + r.duration_ms for r in create) <= client_ms + 500
    polls = [r for r in rows if r.step == "55-58"]
    assert polls and all(r.trace_id != rows[0].trace_id for r in polls)
    seen, missing = seed_coverage(rows)
    # Without the DHCP and L2 agents (noop networking), Ceph, volumes (a build without
    # any goes from networking to spawning in one conductor call: no block device mapping
    # steps 39, 42, 48), a guest asking for its metadata, or the host's call to the
    # conductor for the instance (the scheduler's claim took the build up and its cast
    # carries it: steps 14 and 15): 29 of the seed's 58 steps.
    assert len(seen) >= 29, (seen, as_lines(server_id, rows))
    assert not {14, 15, 39, 42, 48} & set(seen)
    assert "cast carries" in missing[14] and "cast carries" in missing[15]
    assert {38, 43, 44, 45, 46, 47} <= set(seen)
    assert missing[49] == "no Ceph here"
    document = as_json(server_id, rows)
    assert document["traces"][0] == rows[0].trace_id
    assert document["steps"][0]["what"] == "POST /v2.1/servers"
    assert any(r.trace_id == rows[0].trace_id for r in rows)
    assert request_id  # the create's request id names the same trace
    store = SpanStore(cloud.settings.data_dir)
    assert store.traces_of(request_id)[0] == rows[0].trace_id
    store.close()

    # The operator API's route answers the same table from this host's span store.
    routed = await client.get(f"/compute/v2.1/os-stratus-trace/{server_id}", headers=admin)
    assert routed.status_code == 200, routed.text
    assert routed.json()["trace"] == json.loads(json.dumps(as_json(server_id, rows)))


async def test_the_trace_route_is_for_admins_only(cloud: TestCloud,
                                                  span_exporter: InMemorySpanExporter) -> None:
    client, admin = cloud.client, cloud.admin.headers
    listed = await client.get("/compute/v2.1/flavors", headers=admin)
    request_id = listed.headers["x-openstack-request-id"]
    store = SpanStore(cloud.settings.data_dir)
    SpanStoreExporter(store).export(span_exporter.get_finished_spans())
    store.close()
    route = f"/compute/v2.1/os-stratus-trace/{request_id}"

    member = await cloud.project("member")
    refused = await client.get(route, headers=member.headers)
    assert refused.status_code == 403, refused.text
    assert "os_compute_api:os-stratus-trace:show" in refused.json()["forbidden"]["message"]

    shown = (await client.get(route, headers=admin)).json()["trace"]
    assert shown["key"] == request_id and len(shown["traces"]) == 1
    (row,) = [r for r in shown["steps"] if r["what"] == "GET /v2.1/flavors"]
    assert row["unit"] == "compute-api" and row["source"] == "client"
    assert row["outcome"] == "200" and row["trace_id"] == shown["traces"][0]
    assert shown["seed_steps_not_seen"]["2"] == "Fernet tokens: identity stores none " \
        "(nothing to save)"

    unknown = await client.get("/compute/v2.1/os-stratus-trace/req-unknown", headers=admin)
    assert unknown.status_code == 404
    assert "No spans of req-unknown" in unknown.json()["itemNotFound"]["message"]
    too_long = await client.get(f"/compute/v2.1/os-stratus-trace/{'x' * 256}", headers=admin)
    assert too_long.status_code == 400, too_long.text

    # ``stratus trace --os-cloud``: clouds.yaml's user, the catalog's compute endpoint.
    cloud_yaml = {"auth": {"auth_url": f"{ROOT}/identity", "username": "admin",
                           "password": "trace-admin-pw", "project_name": "admin"}}
    late = cloud.stack.http_transport
    assert isinstance(late, LateASGITransport)
    transport = httpx.ASGITransport(app=late.app)
    fetched = await get_json(cloud_yaml, "compute", f"/os-stratus-trace/{request_id}",
                             transport=transport)
    assert fetched["trace"] == shown
    with pytest.raises(CloudError, match=r"^404: No spans of req-unknown"):
        await get_json(cloud_yaml, "compute", "/os-stratus-trace/req-unknown",
                       transport=transport)
