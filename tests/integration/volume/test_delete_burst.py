"""A burst of server deletes while block storage and the network service are overloaded:
each answers some of the compute hosts' calls with a 503, drops the connection, or does the
work and loses the answer (a timeout), as the one API process of ``benchmarks chaos`` did
under 20 deletes at once. Every server is still deleted, none goes to ERROR, and nothing it
held is left; a service that stays away still ends the delete in ERROR with a fault (see
``test_server_volumes``)."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from stratus.core.config import Settings
from tests.integration.compute.test_boot_flow import boot_body, upload_image
from tests.integration.volume.test_server_volumes import (
    ADMIN_PASSWORD,
    ROOT,
    UNITS,
    Cloud,
    started_cloud,
)

SERVERS = 8  # within the default quotas (10 instances, 10 volumes)


@pytest.fixture
async def cloud(db_url: str, tmp_path: Path) -> AsyncIterator[Cloud]:
    settings = Settings(data_dir=tmp_path, database_url=db_url, public_url=ROOT,
                        admin_password=ADMIN_PASSWORD, identity={"bcrypt_rounds": 4},
                        network={"backend": "noop"}, volume={"host": "storage"},
                        compute={"fake_hosts": 3, "host": "node", "release_retry_delay": 0.01})
    async with started_cloud(settings, UNITS) as started:
        yield started


class Overloaded:
    """The services' side of the hosts' HTTP: the first call of each kind to each resource
    fails, each kind its own way, then the service answers."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.seen: Counter[tuple[str, str]] = Counter()
        self.failed: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        key = (request.method, f"{path}?{request.url.query.decode()}")
        self.seen[key] += 1
        first = self.seen[key] == 1
        if first and request.method == "DELETE" and "/attachments/" in path:
            self.failed["attachment 503"] += 1
            return httpx.Response(503, json={"serviceUnavailable": {
                "code": 503, "message": "The service is overloaded."}})
        if first and request.method == "DELETE" and re.search(r"/volumes/[^/]+$", path):
            await self.inner.handle_async_request(request)  # done, but the answer is lost
            self.failed["volume delete timed out"] += 1
            raise httpx.ReadTimeout("timed out", request=request)
        if first and request.method == "GET" and path.endswith("/attachments/detail"):
            self.failed["attachments refused"] += 1
            raise httpx.ConnectError("connection refused", request=request)
        if first and request.method == "DELETE" and "/network/v2.0/ports/" in path:
            self.failed["port 503"] += 1
            return httpx.Response(503, json={"NeutronError": {
                "type": "ServiceUnavailable", "message": "overloaded", "detail": ""}})
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _network(cloud: Cloud) -> str:
    headers = cloud.headers()
    network = await cloud.client.post("/network/v2.0/networks", headers=headers,
                                      json={"network": {"name": "burst"}})
    assert network.status_code == 201, network.text
    network_id: str = network.json()["network"]["id"]
    subnet = await cloud.client.post("/network/v2.0/subnets", headers=headers, json={
        "subnet": {"network_id": network_id, "ip_version": 4, "cidr": "10.9.0.0/24"}})
    assert subnet.status_code == 201, subnet.text
    return network_id


async def _boot(cloud: Cloud, image_id: str, network_id: str, n: int) -> str:
    body: dict[str, Any] = boot_body(image_id, name=f"burst-{n}",
                                     networks=[{"uuid": network_id}])
    body["server"]["block_device_mapping_v2"].append({
        "boot_index": -1, "source_type": "blank", "destination_type": "volume",
        "volume_size": 1, "delete_on_termination": True})
    created = await cloud.compute("POST", "/servers", json=body)
    assert created.status_code == 202, created.text
    server_id: str = created.json()["server"]["id"]
    return server_id


async def _gone_or_error(cloud: Cloud, server_id: str) -> dict[str, Any] | None:
    """None once the server is gone; the server if its delete ended in ERROR."""
    for _ in range(2000):
        response = await cloud.compute("GET", f"/servers/{server_id}")
        if response.status_code == 404:
            return None
        server: dict[str, Any] = response.json()["server"]
        if server["status"] == "ERROR" and server["OS-EXT-STS:task_state"] is None:
            return server
        await asyncio.sleep(0.05)
    raise AssertionError(f"the delete of {server_id} did not end")


async def test_a_burst_of_deletes_against_overloaded_services_leaves_no_server_in_error(
        cloud: Cloud) -> None:
    image_id = await upload_image(cloud)  # type: ignore[arg-type]
    network_id = await _network(cloud)
    ids = await asyncio.gather(*(_boot(cloud, image_id, network_id, n)
                                 for n in range(SERVERS)))
    for server_id in ids:
        await cloud.wait("compute", f"/servers/{server_id}", "server", "ACTIVE")
    volumes = (await cloud.volume("GET", "/volumes/detail")).json()["volumes"]
    assert len(volumes) == SERVERS and all(v["status"] == "in-use" for v in volumes)

    transport = cloud.stack.http_transport
    assert transport is not None
    overloaded = Overloaded(transport)
    for agent in cloud.stack.agents:  # the hosts' clients send through it
        for client in (agent.volumes.client if agent.volumes else None,
                       agent.network.client if agent.network else None):
            assert client is not None
            client.client._transport.inner = overloaded  # type: ignore[attr-defined]

    deleted = await asyncio.gather(*(cloud.compute("DELETE", f"/servers/{i}") for i in ids))
    assert [r.status_code for r in deleted] == [204] * SERVERS
    ended = await asyncio.gather(*(_gone_or_error(cloud, i) for i in ids))
    errored = [(s["id"], s["fault"]["message"]) for s in ended if s is not None]
    assert errored == [], errored
    # Every kind of failure happened (to the first call of each kind to each resource).
    assert overloaded.failed == {"attachment 503": SERVERS, "volume delete timed out": SERVERS,
                                 "attachments refused": SERVERS, "port 503": SERVERS}

    # Nothing the servers held is left: volumes (deleted with them), attachments, ports.
    for _ in range(400):
        left = (await cloud.volume("GET", "/volumes/detail")).json()["volumes"]
        if not left:
            break
        await asyncio.sleep(0.05)
    assert left == []
    assert (await cloud.volume("GET", "/attachments")).json()["attachments"] == []
    ports = (await cloud.client.get(f"/network/v2.0/ports?network_id={network_id}",
                                    headers=cloud.headers())).json()["ports"]
    assert [p for p in ports if p["device_owner"].startswith("compute:")] == []


class Recorded:
    """The calls the hosts' clients made (method, path without the project)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.calls: list[tuple[str, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.startswith("/volume/v3/"):
            self.calls.append((request.method, path.split("/", 4)[-1].split("/")[0]))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_deleting_a_server_with_no_volume_asks_block_storage_once(
        cloud: Cloud) -> None:
    """A server booted from an image with no volume in its mappings can hold attachments
    (volumes attached later), never volumes made to go with it: its delete asks block
    storage for its attachments only; one that booted with a volume also looks for those."""
    image_id = await upload_image(cloud)  # type: ignore[arg-type]
    network_id = await _network(cloud)
    plain = await cloud.compute("POST", "/servers", json=boot_body(image_id, name="plain"))
    assert plain.status_code == 202, plain.text
    plain_id = plain.json()["server"]["id"]
    with_volume = await _boot(cloud, image_id, network_id, 0)
    for server_id in (plain_id, with_volume):
        await cloud.wait("compute", f"/servers/{server_id}", "server", "ACTIVE")
    recorded = Recorded(cloud.stack.http_transport)  # type: ignore[arg-type]
    for agent in cloud.stack.agents:
        assert agent.volumes is not None
        agent.volumes.client.client._transport.inner = recorded  # type: ignore[attr-defined]

    assert (await cloud.compute("DELETE", f"/servers/{plain_id}")).status_code == 204
    assert await _gone_or_error(cloud, plain_id) is None
    assert recorded.calls == [("GET", "attachments")]

    recorded.calls.clear()
    assert (await cloud.compute("DELETE", f"/servers/{with_volume}")).status_code == 204
    assert await _gone_or_error(cloud, with_volume) is None
    assert ("DELETE", "volumes") in recorded.calls, recorded.calls


async def test_a_volume_delete_is_one_transaction(cloud: Cloud) -> None:
    """The policy check sees the volume in the delete's own transaction, not in one of its
    own before it: under a burst of deletes each round trip to the database waited its
    turn on the API process's event loop (11-28 s per delete in ``benchmarks chaos``)."""
    created = await cloud.volume("POST", "/volumes", json={"volume": {"size": 1}})
    volume_id = created.json()["volume"]["id"]
    await cloud.wait("volume", f"/volumes/{volume_id}", "volume", "available")
    runtime = cloud.stack.volume
    assert runtime is not None
    begun: list[int] = []

    def on_begin(connection: Any) -> None:
        begun.append(1)

    engine = runtime.db.engine.sync_engine
    event.listen(engine, "begin", on_begin)
    try:
        response = await cloud.volume("DELETE", f"/volumes/{volume_id}")
    finally:
        event.remove(engine, "begin", on_begin)
    assert response.status_code == 202, response.text
    assert len(begun) == 1
    # A volume of nobody's is still a 404 (a reader's 403: test_isolation_matrix).
    missing = await cloud.volume("DELETE", f"/volumes/{uuid.uuid4()}")
    assert missing.status_code == 404 and "itemNotFound" in missing.json()
