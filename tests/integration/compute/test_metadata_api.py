"""metadata-api mounted as ``stratus up`` mounts it, reading a server booted through the
whole in-process cloud (fake hypervisor), with signed, unsigned and forged requests."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from stratus.compute.metadata.api import sign
from stratus.compute.objects import VifInfo, VifIP
from stratus.core.config import Settings
from stratus.core.generated_secrets import metadata_secret
from tests.integration.compute.conftest import ADMIN_PASSWORD, ROOT
from tests.integration.compute.test_boot_flow import (
    UNITS,
    Cloud,
    boot_body,
    started_cloud,
    upload_image,
)

SECRET = "metadata-test-secret"
KEY = Ed25519PrivateKey.generate().public_key().public_bytes(
    serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
USER_DATA = b"#cloud-config\nruncmd:\n - echo hi\n"


@pytest.fixture
async def cloud(db_url: str, tmp_path: Path) -> AsyncIterator[Cloud]:
    settings = Settings(data_dir=tmp_path, database_url=db_url, public_url=ROOT,
                        admin_password=ADMIN_PASSWORD, identity={"bcrypt_rounds": 4},
                        metadata={"shared_secret": SECRET},
                        compute={"fake_hosts": 1, "host": "node"})
    async with started_cloud(settings, [*UNITS, "metadata-api"]) as started:
        yield started


async def _server(cloud: Cloud) -> dict[str, Any]:
    """A server with a key pair, user data, metadata and a bound port."""
    key = await cloud.compute("POST", "/os-keypairs", json={
        "keypair": {"name": "mykey", "public_key": KEY}})
    assert key.status_code == 201, key.text
    image_id = await upload_image(cloud)
    created = await cloud.compute("POST", "/servers", json=boot_body(
        image_id, name="web-1", key_name="mykey", metadata={"role": "web"},
        user_data=base64.b64encode(USER_DATA).decode()))
    assert created.status_code == 202, created.text
    server = await cloud.wait_for(created.json()["server"]["id"], "ACTIVE")
    vif = VifInfo(id="11111111-2222-4333-8444-555555555555", address="fa:16:3e:00:00:01",
                  network_id="net-1", network_name="private", devname="tap11111111-22",
                  ips=[VifIP(address="10.0.0.7", cidr="10.0.0.0/24", gateway="10.0.0.1",
                             dns_nameservers=["10.0.0.2"])])
    async with cloud.stack.compute.service() as svc:  # type: ignore[union-attr]
        row = await svc.instances.get(server["id"])
        row.network_info = [vif.model_dump()]
    return server


def signed(server: dict[str, Any], **overrides: str) -> dict[str, str]:
    headers = {"X-Instance-ID": server["id"], "X-Tenant-ID": server["tenant_id"],
               "X-Instance-ID-Signature": sign(SECRET, server["id"]),
               "X-Forwarded-For": "10.0.0.7"}
    headers.update(overrides)
    return headers


async def test_openstack_tree(cloud: Cloud) -> None:
    server = await _server(cloud)
    headers = signed(server)

    async def get(path: str) -> httpx.Response:
        return await cloud.client.get(f"/metadata{path}", headers=headers)

    root = await cloud.client.get("/metadata/")  # answered before identification
    assert root.status_code == 200 and root.text.split("\n")[-1] == "latest"
    assert root.headers["content-type"].startswith("text/plain")

    versions = await get("/openstack")
    assert versions.status_code == 200
    assert versions.text.split("\n")[:2] == ["2012-08-10", "2013-04-04"]
    assert "2018-08-27" in versions.text.split("\n") and not versions.text.endswith("\n")
    assert (await get("/openstack/")).text == versions.text
    assert (await get("/openstack/2018-08-27")).text.split("\n") == [
        "meta_data.json", "user_data", "password", "vendor_data.json", "network_data.json",
        "vendor_data2.json"]
    assert (await get("/openstack/2012-08-10")).text.split("\n") == [
        "meta_data.json", "user_data"]

    meta = await get("/openstack/2018-08-27/meta_data.json")
    assert meta.status_code == 200 and meta.headers["content-type"] == "application/json"
    doc = meta.json()
    assert doc["uuid"] == server["id"] and doc["name"] == "web-1"
    assert doc["hostname"] == "web-1.novalocal"
    assert doc["public_keys"] == {"mykey": KEY}
    assert doc["keys"] == [{"name": "mykey", "type": "ssh", "data": KEY}]
    assert doc["meta"] == {"role": "web"} and doc["launch_index"] == 0
    assert doc["availability_zone"] == "nova" and doc["project_id"] == server["tenant_id"]
    assert len(base64.b64decode(doc["random_seed"])) == 512

    user = await get("/openstack/latest/user_data")
    assert user.status_code == 200 and user.content == USER_DATA
    network = (await get("/openstack/latest/network_data.json")).json()
    assert network["links"][0]["ethernet_mac_address"] == "fa:16:3e:00:00:01"
    assert network["networks"][0]["type"] == "ipv4_dhcp"
    assert network["services"] == [{"type": "dns", "address": "10.0.0.2"}]
    assert (await get("/openstack/latest/vendor_data.json")).json() == {}
    assert (await get("/openstack/latest/vendor_data2.json")).json() == {"static": {}}

    for missing in ("/openstack/2011-01-01/meta_data.json", "/openstack/latest/nope",
                    "/openstack/2012-08-10/network_data.json",
                    "/openstack/2012-08-10/password",
                    "/latest/meta-data/nope", "/1999-01-01/meta-data/"):
        assert (await get(missing)).status_code == 404, missing


async def test_password_posted_once_read_and_cleared(cloud: Cloud) -> None:
    server = await _server(cloud)
    headers = signed(server)
    path = "/metadata/openstack/latest/password"

    first = await cloud.client.get(path, headers=headers)
    assert first.status_code == 200 and first.text == ""
    posted = await cloud.client.post(path, headers=headers, content=b"encrypted-blob")
    assert posted.status_code == 200
    assert (await cloud.client.get("/metadata/openstack/2013-04-04/password",
                                   headers=headers)).text == "encrypted-blob"
    again = await cloud.client.post(path, headers=headers, content=b"another")
    assert again.status_code == 409
    assert (await cloud.client.put(path, headers=headers, content=b"x")).status_code == 400
    shown = await cloud.compute("GET", f"/servers/{server['id']}/os-server-password")
    assert shown.json() == {"password": "encrypted-blob"}

    cleared = await cloud.compute("DELETE", f"/servers/{server['id']}/os-server-password")
    assert cleared.status_code == 204
    assert (await cloud.compute("GET", f"/servers/{server['id']}/os-server-password")
            ).json() == {"password": ""}
    too_long = await cloud.client.post(path, headers=headers, content=b"x" * 1021)
    assert too_long.status_code == 400
    at_most = await cloud.client.post(path, headers=headers, content=b"y" * 1020)
    assert at_most.status_code == 200
    assert (await cloud.client.get(path, headers=headers)).text == "y" * 1020
    unsigned = await cloud.client.post(path, content=b"z")
    assert unsigned.status_code == 400


async def test_ec2_tree(cloud: Cloud) -> None:
    server = await _server(cloud)
    headers = signed(server)

    async def get(path: str) -> str:
        response = await cloud.client.get(f"/metadata{path}", headers=headers)
        assert response.status_code == 200, (path, response.status_code, response.text)
        assert response.headers["content-type"].startswith("text/plain")
        return response.text

    assert await get("/latest/") == "meta-data/\nuser-data"
    listing = (await get("/latest/meta-data/")).split("\n")
    assert "public-keys/" in listing and "placement/" in listing
    assert await get("/latest/meta-data/instance-id") == f"i-{server['id'][:8]}"
    assert await get("/latest/meta-data/local-ipv4") == "10.0.0.7"
    assert await get("/latest/meta-data/hostname") == "web-1.novalocal"
    assert await get("/latest/meta-data/placement/availability-zone") == "nova"
    assert await get("/latest/meta-data/public-keys/") == "0=mykey"
    assert await get("/latest/meta-data/public-keys/0/openssh-key") == KEY
    assert await get("/latest/meta-data/block-device-mapping/root") == "/dev/vda"
    assert await get("/2009-04-04/meta-data/instance-type") == "m1.tiny"
    assert await get("/ec2/latest/meta-data/security-groups") == "default"
    assert (await get("/latest/user-data")).encode() == USER_DATA


async def test_identification(cloud: Cloud) -> None:
    server = await _server(cloud)
    path = "/metadata/openstack/latest/meta_data.json"

    async def status(headers: dict[str, str] | list[tuple[str, str]]) -> int:
        return (await cloud.client.get(path, headers=headers)).status_code

    assert await status(signed(server)) == 200
    for name in ("X-Instance-ID", "X-Tenant-ID", "X-Instance-ID-Signature"):
        headers = signed(server)
        del headers[name]
        assert await status(headers) == 400, name
    repeated = [*signed(server).items(), ("X-Tenant-ID", server["tenant_id"])]
    assert await status(repeated) == 400
    assert await status(signed(server, **{"X-Instance-ID-Signature": "0" * 64})) == 403
    assert await status(signed(server, **{"X-Instance-ID-Signature": ""})) == 403
    wrong_key = signed(server, **{"X-Instance-ID-Signature": sign("other", server["id"])})
    assert await status(wrong_key) == 403
    # A forged id with its own valid signature is still only that instance: unknown → 404.
    other = "99999999-9999-4999-8999-999999999999"
    assert await status(signed(server, **{"X-Instance-ID": other,
                                          "X-Instance-ID-Signature": sign(SECRET, other)})) \
        == 404
    assert await status(signed(server, **{"X-Tenant-ID": "another-project"})) == 404
    # The signature of another instance id does not open this one.
    assert await status(signed(server, **{"X-Instance-ID-Signature": sign(SECRET, other)})) \
        == 403

    # A deleted server's metadata is gone (deleted in the database: the fake port above
    # was never bound by a network service that could unbind it).
    async with cloud.stack.compute.service() as svc:  # type: ignore[union-attr]
        await svc.instances.soft_delete(server["id"])
    assert await status(signed(server)) == 404


async def test_the_secret_is_the_units_one(cloud: Cloud) -> None:
    assert metadata_secret(cloud.stack.settings) == SECRET
    server = await _server(cloud)
    response = await cloud.client.get("/metadata/openstack/latest/meta_data.json",
                                      headers=signed(server))
    assert json.loads(response.content)["uuid"] == server["id"]
