"""Every list of the Network API pages in SQL: with 1,000 rows of a resource, page 2 (its
``limit`` and ``marker`` from page 1's next link) holds the right rows, and the database
returned about one page of that resource's rows to serve it, not all of them."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import insert, select

from stratus.network.models import (
    Agent,
    Network,
    Port,
    PortSecurityGroup,
    SecurityGroup,
    SecurityGroupRule,
    Subnet,
)
from tests.dbcount import count_loaded, postgres_plan_unsorted, sqlite_plan, statements_of
from tests.integration.network.conftest import NetCloud

ROWS = 1000
LIMIT = 50


@dataclass(frozen=True)
class Family:
    """A paged list: its URL, the body key, its model and how to make row ``i`` (every
    row is named or hosted ``r-0000``… so that sorting on it gives a known order)."""

    path: str
    key: str
    model: Any
    sort_key: str
    row: Callable[[int, dict[str, str]], dict[str, Any]]


def _network(i: int, ids: dict[str, str]) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "project_id": ids["project"], "name": f"r-{i:04d}"}


def _subnet(i: int, ids: dict[str, str]) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "project_id": ids["project"], "name": f"r-{i:04d}",
            "network_id": ids["network"], "cidr": f"10.{i // 250}.{i % 250}.0/24"}


def _port(i: int, ids: dict[str, str]) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "project_id": ids["project"], "name": f"r-{i:04d}",
            "network_id": ids["network"], "mac_address": f"fa:16:3e:00:{i // 256:02x}:"
                                                         f"{i % 256:02x}"}


def _group(i: int, ids: dict[str, str]) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "project_id": ids["project"], "name": f"r-{i:04d}"}


def _rule(i: int, ids: dict[str, str]) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "project_id": ids["project"],
            "security_group_id": ids["group"], "direction": "ingress",
            "description": f"r-{i:04d}", "fingerprint": f"rule-{i}"}


def _agent(i: int, ids: dict[str, str]) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "agent_type": ids["project"], "binary": "test-agent",
            "topic": "test", "host": f"r-{i:04d}"}


FAMILIES = {
    "networks": Family("/networks", "networks", Network, "name", _network),
    "subnets": Family("/subnets", "subnets", Subnet, "name", _subnet),
    "ports": Family("/ports", "ports", Port, "name", _port),
    "security-groups": Family("/security-groups", "security_groups", SecurityGroup, "name",
                              _group),
    "security-group-rules": Family("/security-group-rules", "security_group_rules",
                                   SecurityGroupRule, "description", _rule),
    "agents": Family("/agents", "agents", Agent, "host", _agent),
}


async def _insert(cloud: NetCloud, family: Family) -> dict[str, str]:
    """1,000 rows of the family (and, in another project, what they hang on), straight
    into the database."""
    ids = {"project": uuid.uuid4().hex, "network": str(uuid.uuid4()),
           "group": str(uuid.uuid4())}
    elsewhere = uuid.uuid4().hex
    async with cloud.runtime.db.transaction() as txn:
        await txn.session.execute(insert(Network), [
            {"id": ids["network"], "project_id": elsewhere, "name": "holder"}])
        await txn.session.execute(insert(SecurityGroup), [
            {"id": ids["group"], "project_id": elsewhere, "name": "holder"}])
        await txn.session.execute(insert(family.model),
                                  [family.row(i, ids) for i in range(ROWS)])
    return ids


@pytest.mark.parametrize("name", list(FAMILIES))
async def test_page_two_of_a_thousand_rows(cloud: NetCloud, name: str) -> None:
    family = FAMILIES[name]
    ids = await _insert(cloud, family)
    scope = "agent_type" if family.model is Agent else "project_id"
    first = await cloud.call("GET", family.path, params={
        scope: ids["project"], "sort_key": family.sort_key, "sort_dir": "asc",
        "limit": str(LIMIT)})
    assert first.status_code == 200, first.text
    body = first.json()
    link = next(link["href"] for link in body[f"{family.key}_links"] if link["rel"] == "next")

    with count_loaded(family.model) as loaded:
        second = await cloud.client.get(link, headers=cloud.admin.headers)
    assert second.status_code == 200, second.text
    shown = [item[family.sort_key] for item in second.json()[family.key]]
    assert shown == [f"r-{i:04d}" for i in range(LIMIT, 2 * LIMIT)]
    # One page and the row that says another follows; never the thousand.
    assert loaded.count <= LIMIT + 2, loaded.count


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_ports_in_their_own_order_are_a_range_of_an_index(cloud: NetCloud) -> None:
    """Page 2 of an admin's port list in its default order (creation, then id) seeks into
    an index after the marker: no scan of every port, no sort of them (SQLite's plan)."""
    await _insert(cloud, FAMILIES["ports"])
    first = await cloud.call("GET", "/ports", params={"limit": str(LIMIT)})
    link = next(link["href"] for link in first.json()["ports_links"] if link["rel"] == "next")
    engine = cloud.runtime.db.engine
    with statements_of(engine) as ran:
        second = await cloud.client.get(link, headers=cloud.admin.headers)
    assert second.status_code == 200, second.text
    assert len(second.json()["ports"]) == LIMIT
    (page,) = [s for s in ran.selecting("network_ports") if "ORDER BY" in s[0]]
    plan = await sqlite_plan(engine, *page)
    assert "ix_network_ports_created (created_at>?)" in plan and "TEMP B-TREE" not in plan, \
        plan


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_ports_first_page_on_postgresql_is_read_off_an_index(cloud: NetCloud) -> None:
    """PostgreSQL reads an admin's first page of ports in their default order off the
    index (creation, then id) rather than sorting every port: the ORDER BY names no NULLS
    FIRST on columns that cannot be NULL, which a default index could not give."""
    await _insert(cloud, FAMILIES["ports"])
    engine = cloud.runtime.db.engine
    with statements_of(engine) as ran:
        first = await cloud.call("GET", "/ports", params={"limit": str(LIMIT)})
    assert first.status_code == 200, first.text
    (page,) = [s for s in ran.selecting("network_ports") if "ORDER BY" in s[0]]
    plan = await postgres_plan_unsorted(engine, *page)
    assert "ix_network_ports_created" in plan and "Sort" not in plan, plan


async def test_a_ports_page_reads_the_security_groups_of_its_own_ports(
        cloud: NetCloud) -> None:
    """A page of ports reads its ports' security groups with the page, by a subquery of each
    row it returns (a lookup by the port's id), not by a statement of their own: PostgreSQL
    answered a select-in of the page's ids (``port_id IN (...)``) by reading every port's
    links until the table was many pages bigger than the page. Each port still shows its
    own groups: two, one or none."""
    ids = await _insert(cloud, FAMILIES["ports"])
    second = str(uuid.uuid4())
    async with cloud.runtime.db.transaction() as txn:
        await txn.session.execute(insert(SecurityGroup), [
            {"id": second, "project_id": ids["project"], "name": "second"}])
        ports = (await txn.session.execute(
            select(Port.id).where(Port.project_id == ids["project"]))).scalars().all()
        await txn.session.execute(insert(PortSecurityGroup), [
            *({"port_id": port, "security_group_id": ids["group"]}
              for n, port in enumerate(ports) if n % 5),
            *({"port_id": port, "security_group_id": second} for port in ports[1::2])])
    expected = {port: {ids["group"]} if n % 5 else set() for n, port in enumerate(ports)}
    for port in ports[1::2]:
        expected[port].add(second)
    engine = cloud.runtime.db.engine
    with statements_of(engine) as ran:
        page = await cloud.call("GET", "/ports", params={
            "project_id": ids["project"], "limit": str(LIMIT)})
    assert page.status_code == 200, page.text
    shown = page.json()["ports"]
    assert len(shown) == LIMIT
    assert {p["id"]: set(p["security_groups"]) for p in shown} == {
        p["id"]: expected[p["id"]] for p in shown}
    assert {len(p["security_groups"]) for p in shown} == {0, 1, 2}
    (statement, parameters), = ran.selecting("network_port_security_groups")
    assert ran.selecting("network_ports")[0][0] == statement
    assert "network_port_security_groups.port_id = network_ports.id" in statement, statement
    if engine.dialect.name == "postgresql":
        async with engine.connect() as conn:
            plan = "\n".join(str(row[0]) for row in await conn.exec_driver_sql(
                f"EXPLAIN {statement}", parameters))
        assert "SubPlan" in plan and "Seq Scan on network_port_security_groups" not in plan, \
            plan
    else:
        plan = await sqlite_plan(engine, statement, parameters)
        assert "CORRELATED SCALAR SUBQUERY" in plan and "SCAN network_port_security" not in plan, \
            plan

    with statements_of(engine) as ran:
        fields = await cloud.call("GET", "/ports", params={
            "project_id": ids["project"], "limit": str(LIMIT), "fields": "id"})
    assert fields.status_code == 200, fields.text
    # A list that does not show the groups does not read them with its page.
    assert "network_port_security_groups" not in ran.selecting("network_ports")[0][0]
