"""A port list that asks a few ``fields`` loads none of the related rows it does not show
(compute asks ``device_id,security_groups`` of a page of servers' ports); what it shows, and
what a full list or a filter on a relation shows, stay the same."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from tests.integration.network.conftest import NetCloud


@contextmanager
def _statements(cloud: NetCloud) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    engine = cloud.runtime.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def test_a_few_fields_load_only_the_relations_they_show(cloud: NetCloud) -> None:
    net, sub = await cloud.network_with_subnet()
    group = await cloud.create("security-group", name="web")
    ports = [await cloud.create("port", network_id=net["id"], device_id=f"server-{n}",
                                security_groups=[group["id"]],
                                allowed_address_pairs=[{"ip_address": "10.1.0.200"}])
             for n in range(3)]

    with _statements(cloud) as seen:
        few = await cloud.call("GET", "/ports", params=[
            ("device_id", p["device_id"]) for p in ports] + [
            ("fields", "device_id"), ("fields", "security_groups")])
    assert few.status_code == 200, few.text
    assert sorted((p["device_id"], p["security_groups"]) for p in few.json()["ports"]) == [
        (f"server-{n}", [group["id"]]) for n in range(3)]
    read = " ".join(seen)
    assert "network_port_security_groups" in read
    assert "network_ip_allocations" not in read
    assert "network_port_allowed_address_pairs" not in read

    # Asked for, or filtered on, a relation is loaded as before.
    full = await cloud.call("GET", "/ports", params={"device_id": "server-0",
                                                     "fields": "fixed_ips"})
    (shown,) = full.json()["ports"]
    assert shown["fixed_ips"] == ports[0]["fixed_ips"] and shown["fixed_ips"]
    address = ports[1]["fixed_ips"][0]["ip_address"]
    filtered = await cloud.call("GET", "/ports", params=[
        ("fixed_ips", f"ip_address={address}"), ("fields", "id")])
    assert [p["id"] for p in filtered.json()["ports"]] == [ports[1]["id"]]
    whole = await cloud.call("GET", "/ports", params={"device_id": "server-2"})
    (port,) = whole.json()["ports"]
    assert port["allowed_address_pairs"][0]["ip_address"] == "10.1.0.200"
    assert port["fixed_ips"] and port["security_groups"] == [group["id"]]
    assert sub["id"] == port["fixed_ips"][0]["subnet_id"]
