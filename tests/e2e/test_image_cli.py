"""The must-show session of the image issue, driven by the real ``openstack`` CLI.

One ``stratus up`` per database backend (SQLite, and the machine's PostgreSQL), with a real
qcow2 made by ``qemu-img``. A second test cuts a real TCP connection in the middle of an upload.
"""

from __future__ import annotations

import hashlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.cloud import Cloud, running_cloud, user_env
from tests.integration.image.conftest import require_qemu_img

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024


@pytest.fixture
def cloud(tmp_path: Path, db_url: str) -> Iterator[Cloud]:
    with running_cloud(tmp_path, db_url) as instance:
        yield instance


def store_files(cloud: Cloud) -> list[Path]:
    return sorted(p for p in (cloud.data_dir / "images").rglob("*") if p.is_file())


def admin_token(cloud: Cloud) -> str:
    password = (cloud.data_dir / "admin-password").read_text().strip()
    response = httpx.post(f"{cloud.auth_url}/auth/tokens", json={"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"name": "Default"}, "password": password}}},
        "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}})
    assert response.status_code == 201, response.text
    return response.headers["X-Subject-Token"]


def make_member(cloud: Cloud, token: str, project: str, user: str,
                password: str) -> dict[str, Any]:
    """A project and a user holding ``member`` on it (set up over REST: not under test)."""
    headers = {"X-Auth-Token": token}
    identity = cloud.auth_url
    made = httpx.post(f"{identity}/projects", json={"project": {"name": project}},
                      headers=headers).json()["project"]
    person = httpx.post(f"{identity}/users", json={"user": {"name": user,
                                                            "password": password}},
                        headers=headers).json()["user"]
    roles = httpx.get(f"{identity}/roles", params={"name": "member"},
                      headers=headers).json()["roles"]
    granted = httpx.put(f"{identity}/projects/{made['id']}/users/{person['id']}/roles/"
                        f"{roles[0]['id']}", headers=headers)
    assert granted.status_code == 204, granted.text
    result: dict[str, Any] = made
    return result


# One database is enough for the CLI session; the image API runs on both in integration.
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_image_session_with_the_real_cli(cloud: Cloud, tmp_path: Path) -> None:
    require_qemu_img()
    disk = tmp_path / "cirros.qcow2"
    subprocess.run(["qemu-img", "create", "-f", "qcow2", str(disk), "64M"], check=True,
                   capture_output=True)
    data = disk.read_bytes()

    token = admin_token(cloud)
    catalog = httpx.get(f"{cloud.auth_url}/auth/catalog",
                        headers={"X-Auth-Token": token}).json()["catalog"]
    image_entry = next(e for e in catalog if e["type"] == "image")
    assert {e["url"] for e in image_entry["endpoints"]} == {f"{cloud.url}/image"}

    created = cloud.openstack_json("image", "create", "--file", str(disk), "--disk-format",
                                   "qcow2", "--container-format", "bare", "cirros")
    assert created["status"] == "active"
    assert created["size"] == len(data)
    assert created["checksum"] == hashlib.md5(data).hexdigest()
    assert created["virtual_size"] == 64 * MiB
    image_id = created["id"]

    listed = cloud.openstack_json("image", "list")
    assert [(i["ID"], i["Name"], i["Status"]) for i in listed] == [(image_id, "cirros",
                                                                    "active")]

    shown = cloud.openstack_json("image", "show", "cirros")
    assert shown["id"] == image_id and shown["disk_format"] == "qcow2"
    assert shown["container_format"] == "bare" and shown["visibility"] == "shared"
    assert shown["properties"]["os_hash_algo"] == "sha512"
    assert shown["properties"]["os_hash_value"] == hashlib.sha512(data).hexdigest()

    cloud.openstack("image", "set", "--property", "hw_disk_bus=virtio", "--property",
                    "os_distro=cirros", "cirros")
    properties = cloud.openstack_json("image", "show", "cirros")["properties"]
    assert properties["hw_disk_bus"] == "virtio" and properties["os_distro"] == "cirros"

    saved = tmp_path / "saved.qcow2"
    cloud.openstack("image", "save", "--file", str(saved), "cirros")
    assert saved.read_bytes() == data

    # Share with another project; its member accepts as itself.
    demo = make_member(cloud, token, "demo", "alice", "alice-pw-1")
    alice = user_env(cloud, "alice", "alice-pw-1", "demo")
    assert cloud.openstack_json("image", "list", cloud=False, env=alice) == []
    member = cloud.openstack_json("image", "add", "project", "cirros", "demo")
    assert (member["member_id"], member["status"]) == (demo["id"], "pending")
    cloud.openstack("image", "set", "--accept", image_id, cloud=False, env=alice)
    seen = cloud.openstack_json("image", "list", cloud=False, env=alice)
    assert [i["ID"] for i in seen] == [image_id]
    members = cloud.openstack_json("image", "member", "list", "cirros")
    assert [(m["Member ID"], m["Status"]) for m in members] == [(demo["id"], "accepted")]
    alice_copy = tmp_path / "alice.qcow2"
    cloud.openstack("image", "save", "--file", str(alice_copy), image_id, cloud=False,
                    env=alice)
    assert alice_copy.read_bytes() == data
    # The member may use the image but not delete it.
    refused = cloud.openstack("image", "delete", image_id, cloud=False, env=alice,
                              check=False)
    assert refused.returncode != 0

    cloud.openstack("image", "delete", "cirros")
    assert cloud.openstack_json("image", "list") == []
    missing = cloud.openstack("image", "show", image_id, check=False)
    assert missing.returncode != 0 and "No Image found" in missing.stderr + missing.stdout
    assert store_files(cloud) == []


def test_client_disconnecting_mid_upload(cloud: Cloud) -> None:
    token = admin_token(cloud)
    headers = {"X-Auth-Token": token}
    images = f"{cloud.url}/image/v2/images"
    image = httpx.post(images, json={"name": "cut", "disk_format": "raw",
                                     "container_format": "bare"}, headers=headers).json()

    def status() -> str:
        return str(httpx.get(f"{images}/{image['id']}", headers=headers).json()["status"])

    declared, sent = 64 * MiB, 8 * MiB
    with socket.create_connection(("127.0.0.1", cloud.port)) as sock:
        sock.sendall((f"PUT /image/v2/images/{image['id']}/file HTTP/1.1\r\n"
                      f"Host: 127.0.0.1:{cloud.port}\r\nX-Auth-Token: {token}\r\n"
                      "Content-Type: application/octet-stream\r\n"
                      f"Content-Length: {declared}\r\n\r\n").encode())
        block = b"\xab" * MiB
        for _ in range(sent // MiB):
            sock.sendall(block)
        deadline = time.monotonic() + 10
        while status() != "saving" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert status() == "saving"
        staged = store_files(cloud)
        assert staged and all(p.parent.name == ".staging" for p in staged)
    # The connection is gone: the upload is discarded, the image back to queued.
    deadline = time.monotonic() + 10
    while (status() != "queued" or store_files(cloud)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert status() == "queued"
    assert store_files(cloud) == []
    upload: Any = httpx.put(f"{images}/{image['id']}/file", content=b"whole",
                            headers={**headers, "Content-Type": "application/octet-stream"})
    assert upload.status_code == 204
    assert status() == "active"
