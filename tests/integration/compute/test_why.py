"""``stratus why SERVER`` on servers that failed: the cloud built as ``stratus up`` builds it
(fake driver), its spans kept in the data directory's span store and its log written as
``--log-json`` lines to ``DIR/stratus.log``, and the command run on that directory; and the
same diagnosis through the operator route ``os-stratus-why`` (``stratus why --os-cloud``)."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from typer.testing import CliRunner

from stratus.cli.cloud import CloudError, get_json
from stratus.cli.main import LOG_FILE, app
from stratus.compute.diagnosis import Diagnosis
from stratus.compute.virt.fake import FakeDriver
from stratus.core.spanstore import SpanStore, SpanStoreExporter
from tests.integration.asgi import LateASGITransport
from tests.integration.clouds import ROOT, CloudStarter, TestCloud
from tests.json_logs import json_lines_to

UNITS = ("identity-api", "image-api", "compute-api", "conductor", "scheduler", "compute-agent")


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[TestCloud]:
    starter = CloudStarter("sqlite+aiosqlite:///" + str(tmp_path / "cloud.db"), tmp_path,
                           "why-admin-pw")
    try:
        yield await starter.start(TestCloud, UNITS, f"memory://why-{uuid.uuid4().hex[:8]}",
                                  network={"backend": "noop"}, compute={"fake_hosts": 2})
    finally:
        await starter.aclose()


@pytest.fixture
def json_log(cloud: TestCloud) -> Iterator[Path]:
    """The process's log as ``--log-json`` writes it, in the data directory."""
    path = cloud.settings.data_dir / LOG_FILE
    with json_lines_to(logging.FileHandler(path, encoding="utf-8")):
        yield path


async def boot_until_error(cloud: TestCloud, flavor: str) -> str:
    admin = cloud.admin.headers
    image = (await cloud.client.post("/image/v2/images", headers=admin, json={
        "name": "tiny", "disk_format": "raw", "container_format": "bare"})).json()
    await cloud.client.put(f"/image/v2/images/{image['id']}/file", content=b"\0" * 1024,
                           headers={**admin, "Content-Type": "application/octet-stream"})
    created = await cloud.client.post("/compute/v2.1/servers", headers={
        **admin, "OpenStack-API-Version": "compute 2.37"}, json={"server": {
            "name": "doomed", "imageRef": image["id"], "flavorRef": flavor,
            "networks": "none"}})
    assert created.status_code == 202, created.text
    server_id: str = created.json()["server"]["id"]
    for _ in range(1500):
        server = (await cloud.client.get(f"/compute/v2.1/servers/{server_id}",
                                         headers=admin)).json()["server"]
        if server["status"] == "ERROR":
            return server_id
        assert server["status"] == "BUILD", server
        await asyncio.sleep(0.02)
    raise AssertionError(f"{server_id} never reached ERROR")


async def stratus_why(cloud: TestCloud, spans: InMemorySpanExporter, *args: str) -> str:
    """``stratus why ARGS --data-dir DIR`` once the spans so far are in DIR's span store."""
    await asyncio.sleep(0.1)  # the agent's handler ends just after the ERROR commit
    store = SpanStore(cloud.settings.data_dir)
    SpanStoreExporter(store).export(spans.get_finished_spans())
    store.close()
    result = await asyncio.to_thread(
        CliRunner().invoke, app, ["why", *args, "--data-dir", str(cloud.settings.data_dir)],
        env={"STRATUS_DATABASE_URL": cloud.settings.database_url or ""})
    assert result.exit_code == 0, result.output
    return result.output


async def test_why_no_valid_host_names_each_filter_and_the_hosts_it_removed(
        cloud: TestCloud, span_exporter: InMemorySpanExporter, json_log: Path) -> None:
    huge = await cloud.client.post("/compute/v2.1/flavors", headers=cloud.admin.headers,
                                   json={"flavor": {"name": "huge", "ram": 512,
                                                    "vcpus": 1, "disk": 1_000_000}})
    assert huge.status_code == 200, huge.text
    server_id = await boot_until_error(cloud, huge.json()["flavor"]["id"])

    output = await stratus_why(cloud, span_exporter, server_id)
    lines = output.splitlines()
    assert lines[0].startswith(f"Server {server_id} (doomed): error"), output
    assert any(line.startswith("Fault (500): No valid host was found.") for line in lines)
    (failed,) = [line for line in lines if line.startswith("Failed step:")]
    assert "step 9-11" in failed and "scheduler.select_and_claim" in failed, failed
    assert "scheduler@" in failed and "NoValidHost" in failed, failed
    assert not any(line.startswith("Host:") for line in lines)  # it was never placed
    evidence = lines[lines.index("Evidence:") + 1:]
    assert evidence[:2] == [
        "  ComputeFilter kept all 2 hosts",
        "  ResourceFilter removed 2 of 2 hosts:"]
    assert sorted(evidence[2:4]) == sorted(
        f"    {agent.host}: DISK_GB 1000000 wanted, 4000 free"
        for agent in cloud.stack.agents), evidence
    # The scheduler's own log line, found by the create's request id in the JSON log.
    assert any("WARNING stratus.compute.scheduler.manager [req-" in line
               and f"Filtering removed all hosts for the request with instance ID '{server_id}'"
               in line for line in lines), output


async def test_why_failed_spawn_names_the_host_the_step_and_the_error(
        cloud: TestCloud, span_exporter: InMemorySpanExporter, json_log: Path) -> None:
    for each in cloud.stack.agents:  # the build fails on the first host, then on the other
        assert isinstance(each.driver, FakeDriver)
        each.driver.fail_next("spawn", f"qcow2 image is corrupt on {each.host}: bad L1 table")
    server_id = await boot_until_error(cloud, "1")
    server = (await cloud.client.get(f"/compute/v2.1/servers/{server_id}",
                                     headers=cloud.admin.headers)).json()["server"]
    last = server["OS-EXT-SRV-ATTR:host"]
    (other,) = {a.host for a in cloud.stack.agents} - {last}

    document = json.loads(await stratus_why(cloud, span_exporter, server_id, "--json"))
    assert document["verdict"] == "error"
    assert document["server"]["vm_state"] == "error"
    assert document["step"]["what"] == "compute.spawn"
    assert document["step"]["step"] == "43-44"
    assert document["step"]["unit"] == "compute-agent"
    assert document["step"]["host"] == document["host"] == last
    assert f"qcow2 image is corrupt on {last}: bad L1 table" in document["error"]
    # The host the build was rescheduled from, with its own failure.
    (earlier,) = document["earlier"]
    assert earlier["host"] == other and earlier["what"] == "compute.spawn"
    assert f"corrupt on {other}" in earlier["outcome"]
    # Every unit's log lines of the create: the API's, the scheduler's, the host's failure.
    messages = [json.loads(line)["message"] for line in document["log_lines"]]
    assert any(f"build of {server_id} on {last} failed" in m for m in messages), messages
    loggers = {json.loads(line)["logger"] for line in document["log_lines"]}
    assert any(name.startswith("stratus.compute.agent") for name in loggers), loggers


async def test_why_through_the_operator_route_is_the_commands_diagnosis(
        cloud: TestCloud, span_exporter: InMemorySpanExporter, json_log: Path) -> None:
    huge = await cloud.client.post("/compute/v2.1/flavors", headers=cloud.admin.headers,
                                   json={"flavor": {"name": "huge", "ram": 512,
                                                    "vcpus": 1, "disk": 1_000_000}})
    server_id = await boot_until_error(cloud, huge.json()["flavor"]["id"])
    local = json.loads(await stratus_why(cloud, span_exporter, server_id, "--json"))
    span_exporter.clear()  # in the store now: stored twice, each failure would show twice
    route = f"/compute/v2.1/os-stratus-why/{server_id}"

    answered = await cloud.client.get(route, headers=cloud.admin.headers)
    assert answered.status_code == 200, answered.text
    document = answered.json()["why"]
    for each in (document, local):  # seconds since the row changed: read at another time
        assert each["server"].pop("idle_seconds") >= 0
    assert document == local  # the same diagnosis, read by the API's host
    assert document["verdict"] == "error" and document["step"]["step"] == "9-11"
    assert document["evidence"][1] == "ResourceFilter removed 2 of 2 hosts:"
    assert document["log_lines"]

    # ``stratus why --os-cloud`` prints what the local command prints, from the route.
    cloud_yaml = {"auth": {"auth_url": f"{ROOT}/identity", "username": "admin",
                           "password": "why-admin-pw", "project_name": "admin"}}
    late = cloud.stack.http_transport
    assert isinstance(late, LateASGITransport)
    transport = httpx.ASGITransport(app=late.app)
    fetched = await get_json(cloud_yaml, "compute", f"/os-stratus-why/{server_id}",
                             transport=transport)
    text = await stratus_why(cloud, span_exporter, server_id)
    assert Diagnosis.from_json(fetched["why"]).lines() == text.splitlines()

    # Admins only (the fault's details, hosts and log lines); a member gets 403.
    member = await cloud.project("member")
    refused = await cloud.client.get(route, headers=member.headers)
    assert refused.status_code == 403, refused.text
    assert "os_compute_api:os-stratus-why:show" in refused.json()["forbidden"]["message"]
    unknown = await cloud.client.get(f"/compute/v2.1/os-stratus-why/{uuid.uuid4()}",
                                     headers=cloud.admin.headers)
    assert unknown.status_code == 404, unknown.text
    assert "itemNotFound" in unknown.json()
    with pytest.raises(CloudError, match=r"^404: "):
        await get_json(cloud_yaml, "compute", f"/os-stratus-why/{uuid.uuid4()}",
                       transport=transport)
    too_long = await cloud.client.get(f"/compute/v2.1/os-stratus-why/{'x' * 256}",
                                      headers=cloud.admin.headers)
    assert too_long.status_code == 400, too_long.text

