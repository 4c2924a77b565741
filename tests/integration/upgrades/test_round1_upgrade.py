"""A round-1 database upgraded to head loses nothing (SQLite and PostgreSQL).

The database is made by the round-1 migrations (the heads that were released at the end of
round 1, ``ROUND1``) and filled with ``round1_rows.json``: every table's rows as the round-1
code wrote them (``make_round1_rows.py`` says how it was made). ``stratus db upgrade`` brings
it to head as an operator would; then the APIs, started on it, serve every row: the users log
in with their passwords and their application credential, and the servers, flavors, images,
networks, ports, security groups, volumes, snapshots, quotas and the rest are there with
their fields.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import DateTime, Integer, MetaData, Table, select, text
from sqlalchemy.engine import Connection

from stratus.core.db import Database
from stratus.schemas import all_schemas
from tests.e2e.cloud import BIN, base_env
from tests.integration.clouds import CloudStarter, TestCloud, Who, auth_body

#: Each service's head revision at the end of round 1 (commit e7adba3).
ROUND1 = {"identity": "0001", "image": "0001", "compute": "0004", "network": "0001",
          "volume": "0001"}
#: Tables a later migration drops on purpose: image 0002 drops the unused project lock.
DROPPED = {"image_project_lock"}
ROWS: dict[str, list[dict[str, Any]]] = json.loads(
    (Path(__file__).with_name("round1_rows.json")).read_text())
ADMIN_PASSWORD = "round1-admin-pw"  # the admin's password in the round-1 cloud
API_UNITS = ("identity-api", "image-api", "compute-api", "network-api", "volume-api")


def rows(table: str, **match: Any) -> list[dict[str, Any]]:
    return [r for r in ROWS[table] if all(r[k] == v for k, v in match.items())]


def row(table: str, **match: Any) -> dict[str, Any]:
    found = rows(table, **match)
    assert len(found) == 1, (table, match, found)
    return found[0]


def _insert_fixture(connection: Connection) -> None:
    metadata = MetaData()
    metadata.reflect(connection)
    assert set(ROWS) == {t for t in metadata.tables if not t.startswith("alembic_version")}
    for table in metadata.sorted_tables:
        data = ROWS.get(table.name)
        if not data:
            continue
        stamps = [c.name for c in table.columns if isinstance(c.type, DateTime)]
        connection.execute(table.insert(), [
            {**r, **{c: dt.datetime.fromisoformat(r[c]) for c in stamps if r[c] is not None}}
            for r in data])
        if connection.dialect.name == "postgresql":
            _advance_sequence(connection, table)


def _advance_sequence(connection: Connection, table: Table) -> None:
    """Rows inserted with their ids leave a serial's sequence behind; round 1's own inserts
    had moved it, so the next id must follow the fixture's as it followed theirs."""
    for column in table.primary_key.columns:
        if isinstance(column.type, Integer) and column.autoincrement in (True, "auto"):
            connection.execute(text(
                f"SELECT setval(pg_get_serial_sequence('\"{table.name}\"', '{column.name}'), "
                f"(SELECT max(\"{column.name}\") FROM \"{table.name}\"))"))


def _primary_keys(connection: Connection) -> dict[str, set[tuple[Any, ...]]]:
    metadata = MetaData()
    metadata.reflect(connection)
    keys: dict[str, set[tuple[Any, ...]]] = {}
    for name, table in metadata.tables.items():
        columns = list(table.primary_key.columns)
        keys[name] = {tuple(r) for r in connection.execute(select(*columns))}
    return keys


@pytest.fixture
async def round1_db(empty_db_url: str) -> AsyncIterator[str]:
    """A database at the round-1 revisions holding the round-1 rows."""
    db = Database(empty_db_url)
    try:
        for schema in all_schemas():
            await db.upgrade(schema.script_location, schema.version_table,
                             ROUND1[schema.service])
        async with db.engine.begin() as conn:
            await conn.run_sync(_insert_fixture)
    finally:
        await db.dispose()
    yield empty_db_url


def stratus_db_upgrade(db_url: str, data_dir: Path) -> str:
    done = subprocess.run([str(BIN / "stratus"), "db", "upgrade", "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=120,
                          env=base_env(STRATUS_DATABASE_URL=db_url))
    assert done.returncode == 0, done.stderr
    return done.stderr + done.stdout


async def login(cloud: TestCloud, user: str, password: str, project: str,
                domain: str = "default") -> Who:
    body = auth_body(user, password, project)
    body["auth"]["identity"]["password"]["user"]["domain"] = {"id": domain}
    body["auth"]["scope"]["project"]["domain"] = {"id": domain}
    response = await cloud.client.post("/identity/v3/auth/tokens", json=body)
    assert response.status_code == 201, response.text
    token = response.json()["token"]
    return Who(response.headers["X-Subject-Token"], token["project"]["id"],
               token["user"]["id"])


async def get(cloud: TestCloud, who: Who, path: str, version: str | None = None) -> Any:
    headers = dict(who.headers)
    if version:
        headers["OpenStack-API-Version"] = version
    response = await cloud.client.get(path, headers=headers)
    assert response.status_code == 200, (path, response.status_code, response.text)
    return response.json()


async def test_a_round1_database_upgraded_to_head_serves_every_row(
        round1_db: str, tmp_path: Path) -> None:
    before = Database(round1_db)
    try:
        async with before.engine.connect() as conn:
            keys_before = await conn.run_sync(_primary_keys)
    finally:
        await before.dispose()

    output = stratus_db_upgrade(round1_db, tmp_path / "upgrade")
    after = Database(round1_db)
    try:
        for schema in all_schemas():
            assert f"{schema.service}: at revision {schema.head}" in output
            assert await after.current_revision(schema.version_table) == schema.head
        async with after.engine.connect() as conn:
            keys_after = await conn.run_sync(_primary_keys)
    finally:
        await after.dispose()
    # Nothing lost in SQL: every row of every table kept (bar a table dropped on purpose).
    for table, keys in keys_before.items():
        if table in DROPPED or table.startswith("alembic_version"):
            assert table not in keys_after or table.startswith("alembic_version")
            continue
        assert keys <= keys_after[table], (table, keys - keys_after[table])

    starter = CloudStarter(round1_db, tmp_path, ADMIN_PASSWORD)
    try:
        cloud = await starter.start(TestCloud, API_UNITS, f"memory://up-{uuid.uuid4().hex[:8]}",
                                    network={"backend": "noop"})
        await _identity_served(cloud)
        await _images_served(cloud)
        await _compute_served(cloud)
        await _network_served(cloud)
        await _volumes_served(cloud)
    finally:
        await starter.aclose()


DEMO = row("project", name="demo")
COMPILERS = row("project", name="compilers")


async def _identity_served(cloud: TestCloud) -> None:
    admin = cloud.admin
    alice = await login(cloud, "alice", "alice-pw-1", "demo")
    assert alice.user_id == row("user", name="alice")["id"]
    bob = await login(cloud, "bob", "bob-pw-1", "compilers", domain=COMPILERS["domain_id"])
    assert bob.project_id == COMPILERS["id"]

    users = (await get(cloud, admin, "/identity/v3/users"))["users"]
    assert {u["id"] for u in users} >= {r["id"] for r in rows("user", domain_id="default")}
    shown = (await get(cloud, admin, f"/identity/v3/users/{alice.user_id}"))["user"]
    assert shown["email"] == "alice@example.org"
    assert shown["default_project_id"] == DEMO["id"]
    projects = (await get(cloud, admin, "/identity/v3/projects"))["projects"]
    assert {p["id"] for p in projects} == {r["id"] for r in ROWS["project"]}
    compilers = (await get(cloud, admin, f"/identity/v3/projects/{COMPILERS['id']}"))["project"]
    assert (compilers["name"], compilers["tags"]) == ("compilers", ["team-a"])
    domains = (await get(cloud, admin, "/identity/v3/domains"))["domains"]
    assert {d["id"] for d in domains} == {r["id"] for r in ROWS["domain"]}
    group = row("group", name="operators")
    members = (await get(cloud, admin, f"/identity/v3/groups/{group['id']}/users"))["users"]
    assert [u["id"] for u in members] == [alice.user_id]
    roles = (await get(cloud, admin, "/identity/v3/roles"))["roles"]
    assert {r["id"] for r in roles} == {r["id"] for r in ROWS["role"]}
    assignments = (await get(cloud, admin, "/identity/v3/role_assignments"))["role_assignments"]
    held = {(a.get("user", a.get("group", {})).get("id"), a["role"]["id"],
             a["scope"].get("project", a["scope"].get("domain", {})).get("id", "system"))
            for a in assignments}
    for assignment in ROWS["assignment"]:
        assert (assignment["actor_id"], assignment["role_id"],
                assignment["target_id"]) in held, assignment
    regions = (await get(cloud, admin, "/identity/v3/regions"))["regions"]
    assert {"RegionOne", "RegionTwo"} <= {r["id"] for r in regions}
    # The application credential made in round 1 still authenticates with its secret.
    credential = row("application_credential", name="ci-runner")
    response = await cloud.client.post("/identity/v3/auth/tokens", json={"auth": {"identity": {
        "methods": ["application_credential"], "application_credential": {
            "id": credential["id"], "secret": "app-cred-secret-1"}}}})
    assert response.status_code == 201, response.text
    assert response.json()["token"]["project"]["id"] == DEMO["id"]


async def _images_served(cloud: TestCloud) -> None:
    images = (await get(cloud, cloud.admin, "/image/v2/images"))["images"]
    assert {i["id"] for i in images} == {r["id"] for r in ROWS["image"]}
    cirros = next(i for i in images if i["name"] == "cirros")
    stored = row("image", name="cirros")
    for field in ("status", "visibility", "size", "virtual_size", "checksum", "os_hash_value",
                  "min_disk", "disk_format", "owner"):
        assert cirros[field] == stored[field], field
    assert cirros["tags"] == ["base"]
    assert (cirros["os_distro"], cirros["hw_disk_bus"]) == ("cirros", "virtio")
    shared = row("image", name="alice-shared")
    bob = await login(cloud, "bob", "bob-pw-1", "compilers", domain=COMPILERS["domain_id"])
    member = await get(cloud, bob, f"/image/v2/images/{shared['id']}/members/{bob.project_id}")
    assert member["status"] == "pending"
    alice = await login(cloud, "alice", "alice-pw-1", "demo")
    mine = await get(cloud, alice, f"/image/v2/images/{shared['id']}")
    assert (mine["owner_note"], mine["tags"], mine["visibility"]) == ("for bob", ["team"],
                                                                     "shared")


async def _compute_served(cloud: TestCloud) -> None:
    nova, version = "/compute/v2.1", "compute 2.96"
    alice = await login(cloud, "alice", "alice-pw-1", "demo")
    servers = (await get(cloud, alice, f"{nova}/servers/detail", version))["servers"]
    assert {s["id"] for s in servers} == {r["uuid"] for r in ROWS["instance"]}
    by_name = {s["name"]: s for s in servers}
    web, stored = by_name["web-1"], row("instance", display_name="web-1")
    assert (web["status"], web["key_name"], web["metadata"], web["tags"]) == (
        "ACTIVE", "laptop", {"role": "frontend"}, ["prod"])
    assert web["flavor"]["original_name"] == "m1.private"
    assert web["flavor"]["vcpus"] == 2 and web["flavor"]["ram"] == 1024
    assert web["image"]["id"] == stored["image_ref"]
    port = row("network_ports", device_id=stored["uuid"])
    address = row("network_ip_allocations", port_id=port["id"])["ip_address"]
    assert [a["addr"] for a in web["addresses"]["app-net"]] == [address]
    assert web["security_groups"] == [{"name": "web"}]
    volume = row("volume_volumes", name="data")
    assert [v["id"] for v in web["os-extended-volumes:volumes_attached"]] == [volume["id"]]
    assert by_name["batch-1"]["status"] == "SHUTOFF"
    failed = by_name["too-big"]
    assert failed["status"] == "ERROR"
    assert failed["fault"]["message"] == row("instance_fault")["message"]

    password = await get(cloud, alice, f"{nova}/servers/{web['id']}/os-server-password",
                         version)
    assert password["password"] == row("instance_password")["password"]
    actions = (await get(cloud, alice, f"{nova}/servers/{web['id']}/os-instance-actions",
                         version))["instanceActions"]
    assert {a["request_id"] for a in actions} == {
        a["request_id"] for a in rows("instance_action", instance_uuid=web["id"])}
    action = row("instance_action", instance_uuid=web["id"], action="create")
    events = (await get(cloud, cloud.admin, f"{nova}/servers/{web['id']}/os-instance-actions/"
                        f"{action['request_id']}", version))["instanceAction"]["events"]
    assert {e["event"] for e in events} == {
        e["event"] for e in rows("instance_action_event", action_id=action["id"])}

    flavors = (await get(cloud, cloud.admin, f"{nova}/flavors/detail?is_public=None",
                         version))["flavors"]
    assert {f["id"] for f in flavors} == {r["id"] for r in ROWS["flavor"]}
    access = (await get(cloud, cloud.admin, f"{nova}/flavors/private-1/os-flavor-access",
                        version))["flavor_access"]
    assert [a["tenant_id"] for a in access] == [DEMO["id"]]
    specs = await get(cloud, cloud.admin, f"{nova}/flavors/private-1/os-extra_specs", version)
    assert specs["extra_specs"] == {"hw:cpu_policy": "shared"}
    keypair = (await get(cloud, alice, f"{nova}/os-keypairs/laptop", version))["keypair"]
    assert keypair["fingerprint"] == row("key_pair")["fingerprint"]
    assert keypair["public_key"] == row("key_pair")["public_key"]
    group = (await get(cloud, alice, f"{nova}/os-server-groups", version))["server_groups"]
    assert [(g["name"], g["policy"], g["members"]) for g in group] == [
        ("spread", "anti-affinity", [web["id"]])]
    quotas = (await get(cloud, cloud.admin, f"{nova}/os-quota-sets/{DEMO['id']}",
                        version))["quota_set"]
    assert (quotas["instances"], quotas["cores"], quotas["ram"]) == (20, 100, 2 * 1024 * 1024)
    usage = (await get(cloud, alice, f"{nova}/limits", version))["limits"]["absolute"]
    assert usage["totalInstancesUsed"] == len(ROWS["instance"])
    hypervisors = (await get(cloud, cloud.admin, f"{nova}/os-hypervisors/detail",
                             version))["hypervisors"]
    provider = row("resource_provider")
    assert [h["hypervisor_hostname"] for h in hypervisors] == [provider["name"]]
    services = (await get(cloud, cloud.admin, f"{nova}/os-services", version))["services"]
    assert row("compute_service")["uuid"] in {s["id"] for s in services}


async def _network_served(cloud: TestCloud) -> None:
    neutron = "/network/v2.0"
    alice = await login(cloud, "alice", "alice-pw-1", "demo")
    networks = (await get(cloud, alice, f"{neutron}/networks"))["networks"]
    stored = row("network_networks")
    assert [(n["id"], n["name"], n["description"], n["mtu"]) for n in networks] == [
        (stored["id"], "app-net", "tier 1", stored["mtu"])]
    subnets = (await get(cloud, alice, f"{neutron}/subnets"))["subnets"]
    subnet = row("network_subnets")
    assert [(s["id"], s["cidr"], s["dns_nameservers"], s["allocation_pools"],
             s["gateway_ip"]) for s in subnets] == [
        (subnet["id"], "10.20.0.0/24", ["10.20.0.2"], subnet["allocation_pools"],
         subnet["gateway_ip"])]
    ports = (await get(cloud, cloud.admin, f"{neutron}/ports"))["ports"]
    assert {p["id"] for p in ports} == {r["id"] for r in ROWS["network_ports"]}
    for port in ports:
        stored_port = row("network_ports", id=port["id"])
        for field in ("mac_address", "device_id", "device_owner", "status", "name"):
            assert port[field] == stored_port[field], field
        assert port["binding:host_id"] == stored_port["binding_host_id"]
        assert [ip["ip_address"] for ip in port["fixed_ips"]] == [
            a["ip_address"] for a in rows("network_ip_allocations", port_id=port["id"])]
        assert sorted(port["security_groups"]) == sorted(
            g["security_group_id"] for g in rows("network_port_security_groups",
                                                 port_id=port["id"]))
    groups = (await get(cloud, cloud.admin, f"{neutron}/security-groups"))["security_groups"]
    # (>=: listing makes the admin project's default group, as Neutron does)
    assert {g["id"] for g in groups} >= {r["id"] for r in ROWS["network_security_groups"]}
    rules = (await get(cloud, cloud.admin, f"{neutron}/security-group-rules"))[
        "security_group_rules"]
    assert {r["id"] for r in rules} >= {r["id"] for r in ROWS["network_security_group_rules"]}
    web = next(r for r in rules if r["port_range_min"] == 80)
    assert (web["protocol"], web["remote_ip_prefix"]) == ("tcp", "0.0.0.0/0")
    quota = (await get(cloud, cloud.admin, f"{neutron}/quotas/{DEMO['id']}"))["quota"]
    assert quota["port"] == 70
    agents = (await get(cloud, cloud.admin, f"{neutron}/agents"))["agents"]
    assert [(a["id"], a["agent_type"], a["host"]) for a in agents] == [
        (row("network_agents")["id"], "DHCP agent", "node-1")]


async def _volumes_served(cloud: TestCloud) -> None:
    version = "volume 3.60"
    alice = await login(cloud, "alice", "alice-pw-1", "demo")
    base = f"/volume/v3/{DEMO['id']}"
    volumes = (await get(cloud, alice, f"{base}/volumes/detail", version))["volumes"]
    assert {v["id"] for v in volumes} == {r["id"] for r in ROWS["volume_volumes"]}
    by_name = {v["name"]: v for v in volumes}
    data = by_name["data"]
    assert (data["status"], data["size"], data["volume_type"], data["metadata"]) == (
        "in-use", 1, "fast", {"purpose": "db"})
    attachment = row("volume_attachments")
    assert [(a["server_id"], a["attachment_id"], a["device"]) for a in data["attachments"]] == [
        (attachment["instance_uuid"], attachment["id"], "/dev/vdb")]
    logs = by_name["logs"]
    assert (logs["status"], logs["size"], logs["description"]) == ("available", 2,
                                                                   "log archive")
    snapshots = (await get(cloud, alice, f"{base}/snapshots/detail", version))["snapshots"]
    snapshot = row("volume_snapshots")
    assert [(s["id"], s["volume_id"], s["status"], s["metadata"]) for s in snapshots] == [
        (snapshot["id"], logs["id"], "available", {"day": "mon"})]
    admin_base = f"/volume/v3/{cloud.admin.project_id}"
    types = (await get(cloud, cloud.admin, f"{admin_base}/types", version))["volume_types"]
    assert {t["id"] for t in types} >= {r["id"] for r in ROWS["volume_types"]}
    fast = next(t for t in types if t["name"] == "fast")
    assert fast["extra_specs"] == {"tier": "1"}
    quotas = (await get(cloud, cloud.admin, f"{admin_base}/os-quota-sets/{DEMO['id']}",
                        version))["quota_set"]
    assert quotas["volumes"] == 15
    services = (await get(cloud, cloud.admin, f"{admin_base}/os-services", version))["services"]
    assert any(s["host"].startswith(row("volume_services")["host"]) for s in services)


def test_the_fixture_fills_every_table_of_the_round1_schema() -> None:
    """Every table of round 1 has rows, so an upgrade that loses any table's rows shows."""
    assert ROWS and all(ROWS.values()), [t for t, r in ROWS.items() if not r]
