"""Writes ``round1_rows.json``: every table of a round-1 database, filled by the round-1 code.

Run it with the round-1 tree first on the path (the fixture is data; this is how it was made)::

    git worktree add --detach /tmp/round1 e7adba3
    cd /tmp/round1 && PYTHONPATH=/tmp/round1 python \\
        /path/to/stratus/tests/integration/upgrades/make_round1_rows.py OUT.json

It starts round 1's units in one process on a SQLite file (fake hosts, noop network), makes
through their APIs what a user of that cloud would have made (domains, projects, users with
passwords, groups, roles, credentials, images with members and tags, flavors, key pairs,
server groups, servers ACTIVE and one ERROR with its fault, networks, subnets, ports, security
groups, volumes, snapshots, an attachment, quotas), writes the few rows no API of round 1
makes (a network agent, a guest's posted password), then dumps every table.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import MetaData, text

from stratus.core.config import Settings
from stratus.core.db import Database
from stratus.units import Stack, root_app, run_bootstrap
from tests.integration.asgi import LateASGITransport
from tests.integration.clouds import auth_body

ROOT = "http://test"
ADMIN_PASSWORD = "round1-admin-pw"
UNITS = ["identity-api", "image-api", "compute-api", "conductor", "scheduler", "compute-agent",
         "network-api", "volume-api", "volume-manager"]
PUBLIC_KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINB1uwLsVJjlUbqJSN9dWLwbJAioClAxrvrJh5tbWawu "
              "alice@laptop")


class Api:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def login(self, user: str, password: str, project: str,
                    domain: str = "default") -> tuple[str, dict[str, Any]]:
        body = auth_body(user, password, project)
        body["auth"]["identity"]["password"]["user"]["domain"] = {"id": domain}
        body["auth"]["scope"]["project"]["domain"] = {"id": domain}
        response = await self.client.post("/identity/v3/auth/tokens", json=body)
        assert response.status_code == 201, response.text
        return response.headers["X-Subject-Token"], response.json()["token"]

    async def call(self, token: str, method: str, path: str, version: str | None = None,
                   **kwargs: Any) -> Any:
        headers = {"X-Auth-Token": token, **kwargs.pop("headers", {})}
        if version:
            headers["OpenStack-API-Version"] = version
        response = await self.client.request(method, path, headers=headers, **kwargs)
        assert response.is_success, (method, path, response.status_code, response.text)
        return response.json() if response.content else None

    async def wait(self, token: str, path: str, key: str, field: str, value: str,
                   version: str | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + 30
        while True:
            body = (await self.call(token, "GET", path, version))[key]
            if body[field] == value:
                return body  # type: ignore[no-any-return]
            assert time.monotonic() < deadline, (path, body[field])
            await asyncio.sleep(0.05)


async def populate(api: Api, admin: str) -> None:
    ident = "/identity/v3"
    # Identity: a second domain with a project and user; a user in Default with a project,
    # a group holding a role, a custom role (bootstrap's roles imply each other), an
    # application credential, a region and a revoked token.
    roles = {r["name"]: r["id"] for r in
             (await api.call(admin, "GET", f"{ident}/roles"))["roles"]}
    domain = (await api.call(admin, "POST", f"{ident}/domains", json={
        "domain": {"name": "engineering", "description": "R&D"}}))["domain"]
    eng = (await api.call(admin, "POST", f"{ident}/projects", json={
        "project": {"name": "compilers", "domain_id": domain["id"], "description": "gcc",
                    "tags": ["team-a"]}}))["project"]
    bob = (await api.call(admin, "POST", f"{ident}/users", json={
        "user": {"name": "bob", "domain_id": domain["id"], "password": "bob-pw-1",
                 "default_project_id": eng["id"], "description": "Bob"}}))["user"]
    await api.call(admin, "PUT", f"{ident}/projects/{eng['id']}/users/{bob['id']}/roles/"
                   f"{roles['member']}")
    demo = (await api.call(admin, "POST", f"{ident}/projects", json={
        "project": {"name": "demo", "description": "the demo project"}}))["project"]
    alice = (await api.call(admin, "POST", f"{ident}/users", json={
        "user": {"name": "alice", "password": "alice-pw-1", "email": "alice@example.org",
                 "default_project_id": demo["id"]}}))["user"]
    group = (await api.call(admin, "POST", f"{ident}/groups", json={
        "group": {"name": "operators", "description": "on call"}}))["group"]
    await api.call(admin, "PUT", f"{ident}/groups/{group['id']}/users/{alice['id']}")
    await api.call(admin, "PUT", f"{ident}/projects/{demo['id']}/groups/{group['id']}/roles/"
                   f"{roles['member']}")
    auditor = (await api.call(admin, "POST", f"{ident}/roles", json={
        "role": {"name": "auditor", "description": "reads everything"}}))["role"]
    await api.call(admin, "PUT", f"{ident}/projects/{demo['id']}/users/{alice['id']}/roles/"
                   f"{auditor['id']}")
    await api.call(admin, "POST", f"{ident}/regions", json={
        "region": {"id": "RegionTwo", "description": "second site"}})
    alice_token, _ = await api.login("alice", "alice-pw-1", "demo")
    await api.call(alice_token, "POST", f"{ident}/users/{alice['id']}/application_credentials",
                   json={"application_credential": {
                       "name": "ci-runner", "secret": "app-cred-secret-1",
                       "description": "CI", "roles": [{"name": "member"}]}})
    revoked, _ = await api.login("alice", "alice-pw-1", "demo")
    await api.call(admin, "DELETE", f"{ident}/auth/tokens",
                   headers={"X-Subject-Token": revoked})

    # Images: a public image with data, a shared image with a member, tags and properties.
    image = (await api.call(admin, "POST", "/image/v2/images", json={
        "name": "cirros", "disk_format": "raw", "container_format": "bare",
        "visibility": "public", "min_disk": 1, "os_distro": "cirros",
        "hw_disk_bus": "virtio"}))
    await api.call(admin, "PUT", f"/image/v2/images/{image['id']}/file",
                   headers={"Content-Type": "application/octet-stream"},
                   content=b"\x00stratus-round-1-image" * 200)
    await api.call(admin, "PUT", f"/image/v2/images/{image['id']}/tags/base")
    shared = (await api.call(alice_token, "POST", "/image/v2/images", json={
        "name": "alice-shared", "disk_format": "qcow2", "container_format": "bare",
        "visibility": "shared", "tags": ["team"], "owner_note": "for bob"}))
    await api.call(alice_token, "POST", f"/image/v2/images/{shared['id']}/members",
                   json={"member": eng["id"]})

    # Compute: a private flavor with access and extra specs, a key pair, a server group,
    # quotas, two ACTIVE servers (one with metadata and tags on the network), one ERROR.
    nova = "/compute/v2.1"
    cv = "compute 2.90"
    flavor = (await api.call(admin, "POST", f"{nova}/flavors", cv, json={
        "flavor": {"name": "m1.private", "vcpus": 2, "ram": 1024, "disk": 5, "id": "private-1",
                   "os-flavor-access:is_public": False, "description": "for demo"}}))["flavor"]
    await api.call(admin, "POST", f"{nova}/flavors/{flavor['id']}/action", cv, json={
        "addTenantAccess": {"tenant": demo["id"]}})
    await api.call(admin, "POST", f"{nova}/flavors/{flavor['id']}/os-extra_specs", cv,
                   json={"extra_specs": {"hw:cpu_policy": "shared"}})
    await api.call(alice_token, "POST", f"{nova}/os-keypairs", cv, json={
        "keypair": {"name": "laptop", "public_key": PUBLIC_KEY}})
    sg = (await api.call(alice_token, "POST", f"{nova}/os-server-groups", cv, json={
        "server_group": {"name": "spread", "policy": "anti-affinity"}}))["server_group"]
    await api.call(admin, "PUT", f"{nova}/os-quota-sets/{demo['id']}", cv, json={
        "quota_set": {"instances": 20, "cores": 100, "ram": 2 * 1024 * 1024}})

    # Network: a network with a subnet, a port, a security group with a rule; quotas.
    net = (await api.call(alice_token, "POST", "/network/v2.0/networks", json={
        "network": {"name": "app-net", "description": "tier 1"}}))["network"]
    subnet = (await api.call(alice_token, "POST", "/network/v2.0/subnets", json={
        "subnet": {"name": "app-subnet", "network_id": net["id"], "ip_version": 4,
                   "cidr": "10.20.0.0/24", "dns_nameservers": ["10.20.0.2"]}}))["subnet"]
    secgroup = (await api.call(alice_token, "POST", "/network/v2.0/security-groups", json={
        "security_group": {"name": "web", "description": "http in"}}))["security_group"]
    await api.call(alice_token, "POST", "/network/v2.0/security-group-rules", json={
        "security_group_rule": {"security_group_id": secgroup["id"], "direction": "ingress",
                                "protocol": "tcp", "port_range_min": 80, "port_range_max": 80,
                                "remote_ip_prefix": "0.0.0.0/0"}})
    await api.call(alice_token, "POST", "/network/v2.0/ports", json={
        "port": {"name": "spare", "network_id": net["id"],
                 "fixed_ips": [{"subnet_id": subnet["id"], "ip_address": "10.20.0.50"}],
                 "security_groups": [secgroup["id"]]}})
    await api.call(admin, "PUT", f"/network/v2.0/quotas/{demo['id']}", json={
        "quota": {"port": 70}})

    user_data = base64.b64encode(b"#!/bin/sh\necho hello\n").decode()
    web = (await api.call(alice_token, "POST", f"{nova}/servers", cv, json={
        "server": {"name": "web-1", "imageRef": image["id"], "flavorRef": "private-1",
                   "key_name": "laptop", "networks": [{"uuid": net["id"]}],
                   "security_groups": [{"name": "web"}], "metadata": {"role": "frontend"},
                   "tags": ["prod"], "user_data": user_data},
        "os:scheduler_hints": {"group": sg["id"]}}))["server"]
    await api.wait(alice_token, f"{nova}/servers/{web['id']}", "server", "status", "ACTIVE", cv)
    plain = (await api.call(alice_token, "POST", f"{nova}/servers", cv, json={
        "server": {"name": "batch-1", "imageRef": image["id"], "flavorRef": "1",
                   "networks": "none"}}))["server"]
    await api.wait(alice_token, f"{nova}/servers/{plain['id']}", "server", "status", "ACTIVE",
                   cv)
    await api.call(alice_token, "POST", f"{nova}/servers/{plain['id']}/action", cv,
                   json={"os-stop": None})
    await api.wait(alice_token, f"{nova}/servers/{plain['id']}", "server", "status", "SHUTOFF",
                   cv)
    huge = (await api.call(admin, "POST", f"{nova}/flavors", cv, json={
        "flavor": {"name": "m1.huge", "vcpus": 64, "ram": 1024 * 1024, "disk": 1,
                   "id": "huge"}}))["flavor"]
    failed = (await api.call(alice_token, "POST", f"{nova}/servers", cv, json={
        "server": {"name": "too-big", "imageRef": image["id"], "flavorRef": huge["id"],
                   "networks": "none"}}))["server"]
    await api.wait(alice_token, f"{nova}/servers/{failed['id']}", "server", "status", "ERROR",
                   cv)

    # Volumes: a type, a volume attached to web-1, a snapshot of another; quotas.
    project_url = f"/volume/v3/{demo['id']}"
    vv = "volume 3.60"
    admin_project = (await api.call(admin, "GET", f"{ident}/auth/projects"))["projects"][0]
    await api.call(admin, "POST", f"/volume/v3/{admin_project['id']}/types", vv, json={
        "volume_type": {"name": "fast", "description": "ssd", "extra_specs": {"tier": "1"}}})
    data = (await api.call(alice_token, "POST", f"{project_url}/volumes", vv, json={
        "volume": {"name": "data", "size": 1, "volume_type": "fast",
                   "metadata": {"purpose": "db"}}}))["volume"]
    await api.wait(alice_token, f"{project_url}/volumes/{data['id']}", "volume", "status",
                   "available", vv)
    logs = (await api.call(alice_token, "POST", f"{project_url}/volumes", vv, json={
        "volume": {"name": "logs", "size": 2, "description": "log archive"}}))["volume"]
    await api.wait(alice_token, f"{project_url}/volumes/{logs['id']}", "volume", "status",
                   "available", vv)
    snap = (await api.call(alice_token, "POST", f"{project_url}/snapshots", vv, json={
        "snapshot": {"volume_id": logs["id"], "name": "logs-snap",
                     "metadata": {"day": "mon"}}}))["snapshot"]
    await api.wait(alice_token, f"{project_url}/snapshots/{snap['id']}", "snapshot", "status",
                   "available", vv)
    await api.call(alice_token, "POST", f"{nova}/servers/{web['id']}/os-volume_attachments", cv,
                   json={"volumeAttachment": {"volumeId": data["id"]}})
    await api.wait(alice_token, f"{project_url}/volumes/{data['id']}", "volume", "status",
                   "in-use", vv)
    await api.call(admin, "PUT", f"/volume/v3/{admin_project['id']}/os-quota-sets/{demo['id']}", vv,
                   json={"quota_set": {"volumes": 15}})


async def write_unmade_rows(db: Database) -> None:
    """Rows of round 1 no API call makes here: a guest's posted password (the metadata API)
    and a network agent (the noop backend runs none)."""
    now = dt.datetime(2026, 11, 22, 9, 30, tzinfo=dt.UTC).replace(tzinfo=None)
    async with db.engine.begin() as conn:
        web = (await conn.execute(text(
            "SELECT uuid FROM instance WHERE display_name = 'web-1'"))).scalar_one()
        await conn.execute(text(
            "INSERT INTO instance_password (instance_uuid, password, created_at) "
            "VALUES (:uuid, :password, :now)"),
            {"uuid": web, "password": "c2VjcmV0LWVuY3J5cHRlZC1ieS10aGUta2V5", "now": now})
        await conn.execute(text(
            "INSERT INTO network_agents (id, agent_type, \"binary\", topic, host, "
            "availability_zone, admin_state_up, description, configurations, created_at, "
            "started_at, heartbeat_timestamp) VALUES ('7c1e0a52-3f0e-4f4a-9b35-0d6a8c2f1e11', "
            "'DHCP agent', 'stratus-dhcp-agent', 'dhcp_agent', 'node-1', 'nova', :yes, '', "
            "'{\"networks\": 1}', :now, :now, :now)"), {"now": now, "yes": True})


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


async def dump(db: Database) -> dict[str, list[dict[str, Any]]]:
    async with db.engine.connect() as conn:
        metadata = MetaData()
        await conn.run_sync(metadata.reflect)
        tables: dict[str, list[dict[str, Any]]] = {}
        for name, table in sorted(metadata.tables.items()):
            if name.startswith("alembic_version"):
                continue
            rows = (await conn.execute(table.select())).mappings().all()
            tables[name] = [{k: _jsonable(v) for k, v in row.items()} for row in rows]
    return tables


async def main() -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/round1.db"
        settings = Settings(data_dir=Path(tmp) / "data", database_url=url, public_url=ROOT,
                            admin_password=ADMIN_PASSWORD, bus_url="memory://round1",
                            identity={"bcrypt_rounds": 4}, network={"backend": "noop"},
                            volume={"host": "storage-1"},
                            compute={"fake_hosts": 1, "host": "node", "fake_memory_mb": 8192,
                                     "fake_vcpus": 8, "reserved_host_memory_mb": 0})
        transport = LateASGITransport()
        stack = Stack(settings, http_transport=transport)
        try:
            await run_bootstrap(stack)
            app = await root_app(stack, UNITS)
            transport.app = app
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url=ROOT, timeout=60) as client:
                api = Api(client)
                admin, _ = await api.login("admin", ADMIN_PASSWORD, "admin")
                await populate(api, admin)
        finally:
            await stack.aclose()
        db = Database(url)
        try:
            await write_unmade_rows(db)
            tables = await dump(db)
        finally:
            await db.dispose()
    empty = [name for name, rows in tables.items() if not rows]
    return tables, empty


def write(out: Path, tables: dict[str, list[dict[str, Any]]], empty: list[str]) -> None:
    out.write_text(json.dumps(tables, indent=1, sort_keys=True) + "\n")
    print(f"{sum(map(len, tables.values()))} rows in {len(tables)} tables; empty: {empty}")


if __name__ == "__main__":
    write(Path(sys.argv[1]), *asyncio.run(main()))
