"""Routers and floating IPs page in SQL (as every Network API list does, ``test_paging``): with
1,000 of them, page 2 (its ``limit`` and ``marker`` from page 1's next link) holds the right
rows, and the database returned about one page of them to serve it."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import insert

from stratus.network.models import FloatingIP, Network, Port, Router
from tests.dbcount import count_loaded
from tests.integration.network.conftest import NetCloud

ROWS = 1000
LIMIT = 50


async def _routers(cloud: NetCloud, project: str) -> None:
    async with cloud.runtime.db.transaction() as txn:
        await txn.session.execute(insert(Router), [
            {"id": str(uuid.uuid4()), "project_id": project, "name": f"r-{i:04d}"}
            for i in range(ROWS)])


async def _floating_ips(cloud: NetCloud, project: str) -> None:
    """1,000 floating IPs, each with its port on one external network."""
    network = str(uuid.uuid4())
    ports = [str(uuid.uuid4()) for _ in range(ROWS)]
    async with cloud.runtime.db.transaction() as txn:
        await txn.session.execute(insert(Network), [
            {"id": network, "project_id": uuid.uuid4().hex, "name": "public",
             "router_external": True}])
        await txn.session.execute(insert(Port), [
            {"id": port, "project_id": "", "network_id": network,
             "device_owner": "network:floatingip",
             "mac_address": f"fa:16:3e:01:{i // 256:02x}:{i % 256:02x}"}
            for i, port in enumerate(ports)])
        await txn.session.execute(insert(FloatingIP), [
            {"id": str(uuid.uuid4()), "project_id": project, "floating_network_id": network,
             "floating_port_id": port, "floating_ip_address": f"172.30.{i // 250}.{i % 250}",
             "description": f"r-{i:04d}"}
            for i, port in enumerate(ports)])


FAMILIES: dict[str, tuple[str, Any, str, Any]] = {
    "routers": ("/routers", Router, "name", _routers),
    "floatingips": ("/floatingips", FloatingIP, "description", _floating_ips),
}


@pytest.mark.parametrize("name", list(FAMILIES))
async def test_page_two_of_a_thousand(cloud: NetCloud, name: str) -> None:
    path, model, sort_key, fill = FAMILIES[name]
    project = uuid.uuid4().hex
    await fill(cloud, project)
    first = await cloud.call("GET", path, params={
        "project_id": project, "sort_key": sort_key, "sort_dir": "asc", "limit": str(LIMIT)})
    assert first.status_code == 200, first.text
    body = first.json()
    assert [item[sort_key] for item in body[name]] == [f"r-{i:04d}" for i in range(LIMIT)]
    link = next(link["href"] for link in body[f"{name}_links"] if link["rel"] == "next")

    with count_loaded(model) as loaded:
        second = await cloud.client.get(link, headers=cloud.admin.headers)
    assert second.status_code == 200, second.text
    shown = [item[sort_key] for item in second.json()[name]]
    assert shown == [f"r-{i:04d}" for i in range(LIMIT, 2 * LIMIT)]
    assert loaded.count <= LIMIT + 2, loaded.count
