"""Server and port security groups with the real ``openstack`` CLI against ``stratus up``
(fake-driver servers; the network service and its l2-agent are real).

A server's groups are its ports' groups: ``server add/remove security group`` change the
ports, ``port set --security-group`` shows on the server, and ``port set --no-security-group
--disable-port-security`` takes the port out of filtering, with Neutron's and Nova's errors on
the way."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.cloud import Cloud, base_env, free_port

pytestmark = pytest.mark.e2e


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    instance = Cloud(tmp_path / "data", free_port(), base_env(
        STRATUS_COMPUTE__FAKE_HOSTS="1", STRATUS_COMPUTE__HOST="fake"))
    instance.start(timeout=120)  # a loaded CI machine starts the whole cloud slowly
    try:
        yield instance
    finally:
        instance.stop(timeout=60)


def group_names(server: dict[str, Any]) -> list[str]:
    """The names in ``server show``'s ``security_groups`` (a list of {"name"})."""
    value = server["security_groups"]
    if isinstance(value, str):  # older clients format the column as text
        return sorted(part.split("=", 1)[1].strip("'") for part in value.split())
    return sorted(g["name"] for g in value)


@pytest.mark.timeout(900)  # some twenty CLI runs of a second or more each
def test_server_and_port_security_groups_with_the_real_cli(cloud: Cloud,
                                                           tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\0" * 65536)
    cloud.openstack("image", "create", "--file", str(disk), "--disk-format", "raw",
                    "--container-format", "bare", "tiny-image")
    server = cloud.openstack_json("server", "create", "--image", "tiny-image", "--flavor",
                                  "m1.tiny", "--wait", "vm1")
    assert server["status"] == "ACTIVE"
    assert group_names(cloud.openstack_json("server", "show", "vm1")) == ["default"]
    web = cloud.openstack_json("security group", "create", "web")

    # Through compute: the server's ports change.
    cloud.openstack("server", "add", "security", "group", "vm1", "web")
    assert group_names(cloud.openstack_json("server", "show", "vm1")) == ["default", "web"]
    (port,) = cloud.openstack_json("port", "list", "--server", "vm1")
    shown = cloud.openstack_json("port", "show", port["ID"])
    assert web["id"] in shown["security_group_ids"]
    again = cloud.openstack("server", "add", "security", "group", "vm1", "web", check=False)
    assert again.returncode != 0 and "already associated" in again.stderr
    # Statefulness is chosen while no port uses a group (Neutron's stateful-security-group).
    refused = cloud.openstack("security group", "set", "--stateless", "web", check=False)
    assert refused.returncode != 0 and "in use" in refused.stderr
    quiet = cloud.openstack_json("security group", "create", "--stateless", "quiet")
    assert quiet["stateful"] is False
    cloud.openstack("server", "remove", "security", "group", "vm1", "web")
    assert group_names(cloud.openstack_json("server", "show", "vm1")) == ["default"]
    again = cloud.openstack("server", "remove", "security", "group", "vm1", "web", check=False)
    assert again.returncode != 0 and "is not associated" in again.stderr

    # Nova's own answers, as any client gets them.
    token = cloud.openstack("token", "issue", "-f", "value", "-c", "id").stdout.strip()
    server_id = cloud.openstack_json("server", "show", "vm1")["id"]
    headers = {"X-Auth-Token": token}
    response = httpx.post(f"{cloud.url}/compute/v2.1/servers/{server_id}/action",
                          headers=headers, json={"addSecurityGroup": {"name": "nosuch"}})
    assert response.status_code == 404, response.text
    assert response.json()["itemNotFound"]["message"] == "Security group nosuch not found."
    listed = httpx.get(f"{cloud.url}/compute/v2.1/servers/{server_id}/os-security-groups",
                       headers=headers)
    assert [g["name"] for g in listed.json()["security_groups"]] == ["default"]

    # Through the network service: the server follows its port.
    cloud.openstack("port", "set", "--security-group", "web", port["ID"])
    assert group_names(cloud.openstack_json("server", "show", "vm1")) == ["default", "web"]
    refused = cloud.openstack("port", "set", "--disable-port-security", port["ID"],
                              check=False)
    assert refused.returncode != 0 and "Port has security group associated" in refused.stderr
    cloud.openstack("port", "set", "--no-security-group", "--disable-port-security",
                    port["ID"])
    shown = cloud.openstack_json("port", "show", port["ID"])
    assert shown["port_security_enabled"] is False and shown["security_group_ids"] == []
    assert group_names(cloud.openstack_json("server", "show", "vm1")) == []
    refused = cloud.openstack("port", "set", "--security-group", "web", port["ID"],
                              check=False)
    assert refused.returncode != 0 and "Port security must be enabled" in refused.stderr
    response = httpx.post(f"{cloud.url}/compute/v2.1/servers/{server_id}/action",
                          headers=headers, json={"addSecurityGroup": {"name": "web"}})
    assert response.status_code == 400, response.text
    assert "port_security_enabled" in json.dumps(response.json())

    cloud.openstack("port", "set", "--enable-port-security", "--security-group", "default",
                    port["ID"])
    assert group_names(cloud.openstack_json("server", "show", "vm1")) == ["default"]
    cloud.openstack("server", "delete", "--wait", "vm1")
