"""Observability of a running ``stratus up --log-json`` (fake driver): ``/metrics`` scraped
around and during a boot, every log line a JSON object naming its request, trace and server,
``stratus trace`` showing the boot as the seed's table, and no secret used in the session
anywhere in the log, the metrics or the span store."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.cloud import BIN, Cloud, base_env, free_port

pytestmark = pytest.mark.e2e

ADMIN_PASSWORD = f"obs-admin-{uuid.uuid4().hex}"


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[Cloud]:
    env = base_env(STRATUS_ADMIN_PASSWORD=ADMIN_PASSWORD, STRATUS_NETWORK__BACKEND="noop",
                   STRATUS_LOG_LEVEL="DEBUG")
    instance = Cloud(tmp_path / "data", free_port(), env, args=["up", "--log-json"])
    await asyncio.to_thread(instance.start)
    try:
        yield instance
    finally:
        await asyncio.to_thread(instance.stop)


class Scrape:
    """One ``/metrics`` exposition, parsed with prometheus-client's own parser."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples = [s for family in text_string_to_metric_families(text)
                        for s in family.samples]

    def value(self, name: str, **labels: str) -> float:
        return sum(s.value for s in self.samples
                   if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


async def scrape(client: httpx.AsyncClient) -> Scrape:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    return Scrape(response.text)


async def token_for(client: httpx.AsyncClient, name: str, password: str) -> str:
    response = await client.post("/identity/v3/auth/tokens", json={"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": name, "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}})
    assert response.status_code == 201, response.text
    return response.headers["X-Subject-Token"]


async def test_metrics_logs_and_trace_of_a_boot_and_no_secret_anywhere(cloud: Cloud) -> None:
    secrets: list[str] = [ADMIN_PASSWORD]
    route = "/v2.1/servers"
    async with httpx.AsyncClient(base_url=cloud.url, timeout=30) as client:
        admin = await token_for(client, "admin", ADMIN_PASSWORD)
        secrets.append(admin)
        headers = {"X-Auth-Token": admin}

        # A session that uses secrets: a user with a password, its token, a password
        # change, an application credential and its use, a generated key pair.
        password = f"pw-{uuid.uuid4().hex}"
        user = (await client.post("/identity/v3/users", headers=headers, json={"user": {
            "name": "obs-user", "password": password}})).json()["user"]
        secrets.append(password)
        roles = (await client.get("/identity/v3/roles?name=member", headers=headers)).json()
        project = (await client.get("/identity/v3/projects?name=admin",
                                    headers=headers)).json()["projects"][0]
        grant = await client.put(f"/identity/v3/projects/{project['id']}/users/{user['id']}"
                                 f"/roles/{roles['roles'][0]['id']}", headers=headers)
        assert grant.status_code == 204, grant.text
        user_token = await token_for(client, "obs-user", password)
        secrets.append(user_token)
        checked = await client.get("/identity/v3/auth/tokens", headers={
            **headers, "X-Subject-Token": user_token})
        assert checked.status_code == 200
        new_password = f"pw2-{uuid.uuid4().hex}"
        changed = await client.post(f"/identity/v3/users/{user['id']}/password", json={
            "user": {"original_password": password, "password": new_password}},
            headers={"X-Auth-Token": user_token})
        assert changed.status_code == 204, changed.text
        secrets.append(new_password)
        user_token = await token_for(client, "obs-user", new_password)
        secrets.append(user_token)
        credential = (await client.post(
            f"/identity/v3/users/{user['id']}/application_credentials",
            headers={"X-Auth-Token": user_token},
            json={"application_credential": {"name": "obs"}})).json()["application_credential"]
        secrets.append(credential["secret"])
        by_credential = await client.post("/identity/v3/auth/tokens", json={"auth": {
            "identity": {"methods": ["application_credential"], "application_credential": {
                "id": credential["id"], "secret": credential["secret"]}}}})
        assert by_credential.status_code == 201, by_credential.text
        secrets.append(by_credential.headers["X-Subject-Token"])
        keypair = (await client.post("/compute/v2.1/os-keypairs", headers=headers, json={
            "keypair": {"name": "obs-key"}})).json()["keypair"]
        private_key = keypair["private_key"]
        secrets.append("".join(private_key.strip().splitlines()[1:-1])[:64])

        image = (await client.post("/image/v2/images", headers=headers, json={
            "name": "tiny", "disk_format": "raw", "container_format": "bare"})).json()
        uploaded = await client.put(
            f"/image/v2/images/{image['id']}/file", content=b"\0" * 4096,
            headers={**headers, "Content-Type": "application/octet-stream"})
        assert uploaded.status_code == 204

        headers["OpenStack-API-Version"] = "compute 2.37"
        before = await scrape(client)
        admin_pass = f"ap-{uuid.uuid4().hex}"
        secrets.append(admin_pass)
        posted = time.monotonic()
        created = await client.post("/compute/v2.1/servers", headers=headers, json={"server": {
            "name": "observed", "imageRef": image["id"], "flavorRef": "1",
            "networks": "none", "key_name": "obs-key", "adminPass": admin_pass}})
        assert created.status_code == 202, created.text
        server_id = created.json()["server"]["id"]
        post_request = created.headers["x-openstack-request-id"]
        during = await scrape(client)
        deadline = time.monotonic() + 60
        while True:
            server = (await client.get(f"/compute/v2.1/servers/{server_id}",
                                       headers=headers)).json()["server"]
            assert server["status"] in ("BUILD", "ACTIVE"), server
            if server["status"] == "ACTIVE":
                client_ms = (time.monotonic() - posted) * 1000
                break
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        after = await scrape(client)

    # The boot counter and the API's latency histogram moved, by route template.
    boots = "stratus_compute_boots_total"
    assert after.value(boots, outcome="active") == before.value(boots, outcome="active") + 1
    posts = "stratus_api_request_duration_seconds_count"
    post_labels = {"service": "compute", "method": "POST", "route": route, "status": "202"}
    assert before.value(posts, **post_labels) == 0
    assert during.value(posts, **post_labels) == 1
    shows = {"service": "compute", "method": "GET", "route": route + "/{server_id}",
             "status": "200"}
    assert after.value(posts, **shows) >= 1
    assert after.value("stratus_api_request_duration_seconds_bucket", le="+Inf",
                       **post_labels) == 1
    assert server_id not in after.text
    assert after.value("stratus_scheduler_decision_seconds_count", outcome="placed") == 1
    assert after.value("stratus_bus_messages_handled_total", topic="scheduler",
                       method="schedule_and_build", outcome="ok") == 1
    assert after.value("stratus_image_bytes_total", direction="uploaded") == 4096
    assert after.value("stratus_compute_agent_builds_in_flight") == 0

    # Every log line is a JSON object; the request's lines name it, its trace and server.
    lines = [json.loads(line) for line in
             (cloud.data_dir / "stratus.log").read_text().splitlines()]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    post_lines = [line for line in lines if line.get("request_id") == post_request]
    assert post_lines and all(line["instance_uuid"] == server_id for line in post_lines
                              if line["message"].startswith("POST"))
    assert {len(line.get("trace_id", "")) for line in post_lines} == {32}
    about_server = [line for line in lines if line.get("instance_uuid") == server_id]
    assert {line["logger"] for line in about_server} >= {"stratus.web"}
    assert any(line["message"].startswith(f"GET /compute/v2.1/servers/{server_id}")
               for line in about_server)

    # stratus trace: the boot as the seed's table, from the span store.
    document = await trace_of(cloud, server_id)
    create = [r for r in document["steps"] if r["trace_id"] == document["steps"][0]["trace_id"]]
    assert create[0]["what"] == "POST /v2.1/servers" and create[0]["outcome"] == "202"
    steps = [r["step"] for r in create]
    wanted = ["4,7", "5", "6", "8", "9-11", "12", "13", "43-44", "45", "46-47"]
    positions = [steps.index(step) for step in wanted]
    assert positions == sorted(positions), steps
    assert {r["unit"] for r in create} >= {"compute-api", "scheduler", "compute-agent",
                                           "conductor"}
    activating = next(r for r in create if r["step"] == "45")
    assert activating["start_ms"] <= client_ms
    # Every step of the boot itself (a poll's 55-58 is in the trace only once its span is
    # stored, so it is not counted on). Not 14 and 15: the scheduler's claim took the build
    # up, its cast carries the instance.
    boot_steps = {*range(4, 14), *range(16, 21), 23, 25, 26, 38, *range(43, 48)}
    assert boot_steps <= set(document["seed_steps_seen"]), document["seed_steps_seen"]
    assert {"14", "15"} <= set(document["seed_steps_not_seen"])
    assert document["seed_steps_not_seen"]["49"] == "no Ceph here"
    text = await asyncio.to_thread(subprocess.run, [
        str(BIN / "stratus"), "trace", post_request, "--data-dir", str(cloud.data_dir)],
        capture_output=True, text=True, env=cloud.env, timeout=60)
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[1].split()[:3] == ["step", "from", "→"]
    assert "POST /v2.1/servers" in text.stdout and "Seed steps shown:" in text.stdout
    spans = sqlite3.connect(cloud.data_dir / "traces.db")
    stored = "\n".join(str(row) for row in spans.execute("SELECT * FROM spans"))
    spans.close()

    # No secret of the session in any log line, metric or span.
    everything = {"log": (cloud.data_dir / "stratus.log").read_text(),
                  "console": cloud.console(), "metrics": after.text, "spans": stored}
    leaks = [(where, secret[:12]) for where, text in everything.items()
             for secret in secrets if secret in text]
    assert not leaks, leaks



async def trace_of(cloud: Cloud, key: str) -> dict[str, Any]:
    """``stratus trace KEY --json``, once the spans up to ACTIVE are in the store (they are
    written about a second after they end)."""
    deadline = time.monotonic() + 30
    while True:
        done = await asyncio.to_thread(subprocess.run, [
            str(BIN / "stratus"), "trace", key, "--json", "--data-dir", str(cloud.data_dir)],
            capture_output=True, text=True, env=cloud.env, timeout=60)
        if done.returncode == 0:
            document: dict[str, Any] = json.loads(done.stdout)
            if any(r["step"] == "46-47" for r in document["steps"]):
                return document
        assert time.monotonic() < deadline, done.stdout + done.stderr
        await asyncio.sleep(0.5)
