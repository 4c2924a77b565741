"""``stratus up --tls``: the real ``openstack`` CLI verifies the cloud over HTTPS with the CA
that ``clouds.yaml`` names; the services call each other over HTTPS verifying it too (a
server's boot crosses compute → image, network and back); a client without the CA is refused.
"""

from __future__ import annotations

import json
import re
import ssl
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from cryptography import x509

from stratus.core.config import Settings
from stratus.core.exceptions import ServiceUnavailable
from stratus.core.tls import TLSFiles, ensure_certificates
from stratus.stack import Stack
from tests.e2e.cloud import BIN, Cloud, base_env, free_port

pytestmark = pytest.mark.e2e

SPLIT_PASSWORD = "tls-split-admin-pw"


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    # One cloud for both halves (a start costs seconds); the noop backend: the calls between
    # services are the same, and the kernel's part has nothing to do with TLS.
    instance = Cloud(tmp_path / "data", free_port(),
                     base_env(STRATUS_NETWORK__BACKEND="noop"), args=["up", "--tls"])
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


def test_the_cli_verifies_the_cloud_over_https_and_refuses_without_its_ca(
        cloud: Cloud, tmp_path: Path) -> None:
    a_client_without_the_ca_is_refused(cloud, tmp_path)

    tls = cloud.data_dir / "tls"
    for key in ("ca-key.pem", "server-key.pem"):
        assert stat.S_IMODE((tls / key).stat().st_mode) == 0o600, key
    server_cert = x509.load_pem_x509_certificate((tls / "server.pem").read_bytes())
    server_cert.verify_directly_issued_by(
        x509.load_pem_x509_certificate(cloud.ca_file.read_bytes()))

    config = yaml.safe_load(cloud.clouds_yaml.read_text())["clouds"]["stratus"]
    assert config["cacert"] == str(cloud.ca_file)
    assert config["auth"]["auth_url"] == f"https://127.0.0.1:{cloud.port}/identity/v3"
    assert "https://" in cloud.console()

    token = cloud.openstack_json("token", "issue")
    assert token["project_id"]
    endpoints = cloud.openstack_json("endpoint", "list")
    assert endpoints and all(e["URL"].startswith(f"https://127.0.0.1:{cloud.port}/")
                             for e in endpoints), endpoints

    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\0" * 65536)
    cloud.openstack("image", "create", "--file", str(disk), "--disk-format", "raw",
                    "--container-format", "bare", "tiny-image")
    # compute-api asks image and network over HTTPS, the agent fetches the image and binds
    # the port the same way: each verifies the cloud's certificate with the CA.
    server = cloud.openstack_json("server", "create", "--image", "tiny-image", "--flavor",
                                  "m1.tiny", "--network", "private", "--wait", "vm-tls")
    assert server["status"] == "ACTIVE"
    listed = cloud.openstack_json("server", "list")
    assert [(s["Name"], s["Status"]) for s in listed] == [("vm-tls", "ACTIVE")]
    assert "private=10." in listed[0]["Networks"] or listed[0]["Networks"]["private"]
    # The dashboard logs in and lists servers through the APIs over HTTPS, with the CA.
    with httpx.Client(base_url=cloud.url, verify=cloud.verify(), timeout=30) as browser:
        page = browser.get("/dashboard/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token, page.text[:1000]
        password = config["auth"]["password"]
        login = browser.post("/dashboard/login", data={
            "csrf_token": token.group(1), "domain": "Default", "user": "admin",
            "password": password})
        assert (login.status_code, login.headers["location"]) == (303, "/dashboard/instances")
        instances = browser.get("/dashboard/instances")
        assert instances.status_code == 200 and "vm-tls" in instances.text
    # `stratus trace --os-cloud` reads clouds.yaml's cacert as the OpenStack clients do.
    traced = subprocess.run(
        [str(BIN / "stratus"), "trace", server["id"], "--json", "--os-cloud", "stratus"],
        capture_output=True, text=True, timeout=60,
        env={**cloud.env, "OS_CLIENT_CONFIG_FILE": str(cloud.clouds_yaml)})
    assert traced.returncode == 0, traced.stderr
    assert json.loads(traced.stdout)["steps"]
    cloud.openstack("server", "delete", "--wait", "vm-tls")
    # The services' own idle HTTPS connections do not hold the stop (each waited out a 30 s
    # TLS close before): SIGTERM ends it within stop's 15 s.
    assert cloud.stop() == 0


def a_client_without_the_ca_is_refused(cloud: Cloud, tmp_path: Path) -> None:
    clouds = yaml.safe_load(cloud.clouds_yaml.read_text())
    del clouds["clouds"]["stratus"]["cacert"]
    untrusting = tmp_path / "clouds-without-ca.yaml"
    untrusting.write_text(yaml.safe_dump(clouds))
    refused = cloud.openstack("token", "issue", check=False,
                              env={"OS_CLIENT_CONFIG_FILE": str(untrusting)})
    assert refused.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in refused.stderr, refused.stderr

    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(cloud.auth_url, timeout=10)
    # Plain HTTP on the port gets no API: the server speaks only TLS.
    with pytest.raises(httpx.HTTPError):
        httpx.get(cloud.auth_url.replace("https://", "http://"), timeout=10)
    trusted = httpx.get(cloud.auth_url, timeout=10,
                        verify=ssl.create_default_context(cafile=str(cloud.ca_file)))
    assert trusted.status_code == 200


@pytest.fixture
def https_identity(tmp_path: Path) -> Iterator[tuple[Cloud, TLSFiles]]:
    """``stratus serve identity-api`` given a certificate (``STRATUS_TLS__*``)."""
    tls = ensure_certificates(tmp_path / "tls", ["127.0.0.1", "localhost"])
    port = free_port()
    env = base_env(STRATUS_ADMIN_PASSWORD=SPLIT_PASSWORD, STRATUS_TLS__CERT_FILE=str(tls.cert),
                   STRATUS_TLS__KEY_FILE=str(tls.key), STRATUS_TLS__CA_FILE=str(tls.ca))
    data_dir = tmp_path / "identity"
    subprocess.run([str(BIN / "stratus"), "bootstrap", "--data-dir", str(data_dir),
                    "--port", str(port)], env=env, check=True, capture_output=True)
    identity = Cloud(data_dir, port, env, args=["serve", "identity-api"])
    identity.start()
    try:
        yield identity, tls
    finally:
        identity.stop()


async def test_split_mode_validates_tokens_over_https_with_the_ca(
        https_identity: tuple[Cloud, TLSFiles], tmp_path: Path) -> None:
    """Identity in its own process serves HTTPS and names https:// in its catalog; another
    process's remote token validation (what an API outside identity's process uses)
    verifies it with ``tls.ca_file``, and without the CA reaches nothing."""
    identity, tls = https_identity
    async with httpx.AsyncClient(verify=identity.verify()) as client:
        issued = await client.post(f"{identity.auth_url}/auth/tokens", json={"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": "admin", "domain": {"id": "default"}, "password": SPLIT_PASSWORD}}},
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}})
    assert issued.status_code == 201, issued.text
    token = issued.headers["X-Subject-Token"]
    catalog = issued.json()["token"]["catalog"]
    assert catalog and all(e["url"].startswith(f"https://127.0.0.1:{identity.port}/")
                           for entry in catalog for e in entry["endpoints"])

    for ca_file in (tls.ca, None):
        stack = Stack(Settings(data_dir=tmp_path / "api", tls={"ca_file": ca_file},
                               auth={"identity_url": identity.auth_url,
                                     "service_password": SPLIT_PASSWORD}))
        try:
            validator = stack.token_validator()
            if ca_file is not None:
                body = await validator.validate(token)
                assert body["project"]["name"] == "admin"
            else:
                with pytest.raises(ServiceUnavailable):
                    await validator.validate(token)
        finally:
            await stack.aclose()
