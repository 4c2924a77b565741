"""No secret in any log line, span or metric: a session that uses passwords, tokens and keys
runs against a cloud built as ``stratus up`` builds it (identity, image, compute and its bus
units, fake driver), while every log record at DEBUG (in both formats), every finished span
and the ``/metrics`` exposition are kept; none may hold a secret of the session."""

from __future__ import annotations

import asyncio
import io
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from stratus.core.logging import LOG_FORMAT, JsonFormatter, RequestIdFilter
from tests.integration.clouds import CloudStarter, TestCloud, auth_body

ADMIN_PASSWORD = f"secrets-admin-{uuid.uuid4().hex}"
UNITS = ("identity-api", "image-api", "compute-api", "conductor", "scheduler", "compute-agent")


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Every record of the process at DEBUG, in the text and the JSON format."""
    out = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handlers = []
    for formatter in (logging.Formatter(LOG_FORMAT), JsonFormatter()):
        handler = logging.StreamHandler(out)
        handler.addFilter(RequestIdFilter(spans=True))
        handler.setFormatter(formatter)
        root.addHandler(handler)
        handlers.append(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield out
    finally:
        for handler in handlers:
            root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture
async def cloud(tmp_path: Path, captured_logs: io.StringIO) -> AsyncIterator[TestCloud]:
    starter = CloudStarter("sqlite+aiosqlite:///" + str(tmp_path / "cloud.db"), tmp_path,
                           ADMIN_PASSWORD)
    try:
        yield await starter.start(TestCloud, UNITS, f"memory://secrets-{uuid.uuid4().hex[:8]}",
                                  network={"backend": "noop"})
    finally:
        await starter.aclose()


def span_text(span: ReadableSpan) -> str:
    """Everything a span would carry to an exporter, as text."""
    parts = [span.name, str(dict(span.attributes or {})), span.status.description or ""]
    for event in span.events:
        parts += [event.name, str(dict(event.attributes or {}))]
    parts += [str(dict(link.attributes or {})) for link in span.links]
    return "\n".join(parts)


async def test_no_secret_in_logs_spans_or_metrics(
        cloud: TestCloud, captured_logs: io.StringIO,
        span_exporter: InMemorySpanExporter, tmp_path: Path) -> None:
    client = cloud.client
    admin = cloud.admin.headers
    secrets: dict[str, str] = {"admin password": ADMIN_PASSWORD,
                               "admin token": cloud.admin.token}

    wrong = f"wrong-{uuid.uuid4().hex}"
    secrets["wrong password"] = wrong
    refused = await client.post("/identity/v3/auth/tokens", json=auth_body("admin", wrong,
                                                                           "admin"))
    assert refused.status_code == 401
    bogus = f"gAAAAA{uuid.uuid4().hex}"
    secrets["bogus token"] = bogus
    assert (await client.get("/compute/v2.1/servers",
                             headers={"X-Auth-Token": bogus})).status_code == 401

    password = f"pw-{uuid.uuid4().hex}"
    secrets["user password"] = password
    user = (await client.post("/identity/v3/users", headers=admin, json={"user": {
        "name": "secretive", "password": password}})).json()["user"]
    grant = await client.put(f"/identity/v3/projects/{cloud.admin.project_id}/users/"
                             f"{user['id']}/roles/{cloud.roles['member']}", headers=admin)
    assert grant.status_code == 204
    member = await cloud.token("secretive", password, "admin")
    secrets["user token"] = member.token
    validated = await client.get("/identity/v3/auth/tokens",
                                 headers={**admin, "X-Subject-Token": member.token})
    assert validated.status_code == 200
    reset = f"pw-reset-{uuid.uuid4().hex}"
    secrets["password set by admin"] = reset
    patched = await client.patch(f"/identity/v3/users/{user['id']}", headers=admin,
                                 json={"user": {"password": reset}})
    assert patched.status_code == 200, patched.text
    member = await cloud.token("secretive", reset, "admin")
    secrets["second user token"] = member.token
    changed_to = f"pw-own-{uuid.uuid4().hex}"
    secrets["password the user chose"] = changed_to
    changed = await client.post(f"/identity/v3/users/{user['id']}/password",
                                headers=member.headers, json={"user": {
                                    "original_password": reset, "password": changed_to}})
    assert changed.status_code == 204, changed.text
    member = await cloud.token("secretive", changed_to, "admin")
    secrets["third user token"] = member.token
    credential = (await client.post(
        f"/identity/v3/users/{user['id']}/application_credentials", headers=member.headers,
        json={"application_credential": {"name": "ci"}})).json()["application_credential"]
    secrets["application credential secret"] = credential["secret"]
    by_credential = await client.post("/identity/v3/auth/tokens", json={"auth": {
        "identity": {"methods": ["application_credential"], "application_credential": {
            "id": credential["id"], "secret": credential["secret"]}}}})
    assert by_credential.status_code == 201, by_credential.text
    secrets["application credential token"] = by_credential.headers["X-Subject-Token"]
    revoked = await client.delete("/identity/v3/auth/tokens", headers={
        **admin, "X-Subject-Token": by_credential.headers["X-Subject-Token"]})
    assert revoked.status_code == 204

    keypair = (await client.post("/compute/v2.1/os-keypairs", headers=member.headers,
                                 json={"keypair": {"name": "k"}})).json()["keypair"]
    key_lines = keypair["private_key"].strip().splitlines()[1:-1]
    secrets["private key"] = "".join(key_lines)[:64]
    secrets["private key line"] = key_lines[len(key_lines) // 2]

    image = (await client.post("/image/v2/images", headers=admin, json={
        "name": "tiny", "disk_format": "raw", "container_format": "bare",
        "visibility": "public"})).json()
    uploaded = await client.put(f"/image/v2/images/{image['id']}/file", content=b"\0" * 1024,
                                headers={**admin, "Content-Type": "application/octet-stream"})
    assert uploaded.status_code == 204
    admin_pass = f"ap-{uuid.uuid4().hex}"
    secrets["server admin password"] = admin_pass
    compute = {**member.headers, "OpenStack-API-Version": "compute 2.37"}
    created = await client.post("/compute/v2.1/servers", headers=compute, json={"server": {
        "name": "s", "imageRef": image["id"], "flavorRef": "1", "networks": "none",
        "key_name": "k", "adminPass": admin_pass,
        # The password goes to the host with the build, into the config drive's files.
        "config_drive": True}})
    assert created.status_code == 202, created.text
    server_id = created.json()["server"]["id"]
    deadline = time.monotonic() + 30
    while (status := (await client.get(f"/compute/v2.1/servers/{server_id}",
                                       headers=compute)).json()["server"]["status"]) != "ACTIVE":
        assert status == "BUILD" and time.monotonic() < deadline, status
        await asyncio.sleep(0.05)
    new_admin_pass = f"ap2-{uuid.uuid4().hex}"
    secrets["changed server password"] = new_admin_pass
    action = await client.post(f"/compute/v2.1/servers/{server_id}/action", headers=compute,
                               json={"changePassword": {"adminPass": new_admin_pass}})
    assert action.status_code in (202, 409), action.text
    deadline = time.monotonic() + 30
    while (await client.get(f"/compute/v2.1/servers/{server_id}", headers=compute)).json()[
            "server"]["OS-EXT-STS:task_state"] is not None:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    rescue_pass = f"ap3-{uuid.uuid4().hex}"
    secrets["rescue password"] = rescue_pass
    rescued = await client.post(f"/compute/v2.1/servers/{server_id}/action", headers=compute,
                                json={"rescue": {"adminPass": rescue_pass}})
    assert rescued.status_code == 200, rescued.text
    while (await client.get(f"/compute/v2.1/servers/{server_id}", headers=compute)).json()[
            "server"]["status"] != "RESCUE":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)

    exposition = (await client.get("/metrics")).text
    assert "stratus_compute_boots_total" in exposition
    logs = captured_logs.getvalue()
    assert cloud.admin.project_id in logs and server_id in logs, "the logs were captured"
    spans = [span_text(s) for s in span_exporter.get_finished_spans()]
    assert len(spans) > 30, "the spans were captured"

    places: dict[str, str] = {"log lines": logs, "metrics": exposition,
                              "spans": "\n".join(spans)}
    leaks = [f"{what} in {where}" for what, secret in secrets.items()
             for where, text in places.items() if secret in text]
    assert not leaks, leaks

