"""Key pairs: import and generation, status codes per microversion, per-user isolation."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from stratus.compute.keypairs import fingerprint
from tests.integration.compute.conftest import ComputeCloud, assert_compute_error


def public_key() -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH,
                            serialization.PublicFormat.OpenSSH).decode()


async def test_import_list_show_delete(cloud: ComputeCloud) -> None:
    key = public_key()
    created = await cloud.compute("POST", "/os-keypairs", version="2.10",
                                  json={"keypair": {"name": "laptop", "public_key": key}})
    assert created.status_code == 201, created.text
    pair = created.json()["keypair"]
    assert pair["public_key"] == key and pair["type"] == "ssh"
    assert pair["fingerprint"] == fingerprint(key) and "private_key" not in pair

    listed = (await cloud.compute("GET", "/os-keypairs", version="2.10")).json()
    assert listed == {"keypairs": [{"keypair": {
        "name": "laptop", "public_key": key, "fingerprint": pair["fingerprint"],
        "type": "ssh"}}]}
    old_list = (await cloud.compute("GET", "/os-keypairs")).json()["keypairs"][0]["keypair"]
    assert "type" not in old_list  # 2.2 added it

    shown = (await cloud.compute("GET", "/os-keypairs/laptop")).json()["keypair"]
    assert shown["name"] == "laptop" and shown["deleted"] is False and shown["user_id"]

    duplicate = await cloud.compute("POST", "/os-keypairs",
                                    json={"keypair": {"name": "laptop", "public_key": key}})
    assert_compute_error(duplicate, 409, "conflictingRequest")
    assert (await cloud.compute("DELETE", "/os-keypairs/laptop", version="2.2")
            ).status_code == 204
    assert_compute_error(await cloud.compute("GET", "/os-keypairs/laptop"), 404,
                         "itemNotFound")


async def test_status_codes_and_generation_at_2_1(cloud: ComputeCloud) -> None:
    generated = await cloud.compute("POST", "/os-keypairs", json={"keypair": {"name": "gen"}})
    assert generated.status_code == 200
    pair = generated.json()["keypair"]
    assert pair["private_key"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert pair["public_key"].startswith("ssh-rsa ")
    assert "type" not in pair
    # The private key is never stored or shown again.
    shown = (await cloud.compute("GET", "/os-keypairs/gen")).json()["keypair"]
    assert "private_key" not in shown
    assert (await cloud.compute("DELETE", "/os-keypairs/gen")).status_code == 202

    required = await cloud.compute("POST", "/os-keypairs", version="2.92",
                                   json={"keypair": {"name": "gen2"}})
    assert_compute_error(required, 400, "badRequest")


async def test_bad_input(cloud: ComputeCloud) -> None:
    for body in ({"name": "x", "public_key": "ssh-rsa not-base64!"},
                 {"name": "bad/name", "public_key": public_key()},
                 {"name": "x", "public_key": public_key(), "type": "x509"},
                 {"name": "", "public_key": public_key()},
                 {"name": "x", "public_key": public_key(), "extra": 1}):
        response = await cloud.compute("POST", "/os-keypairs", version="2.10",
                                       json={"keypair": body})
        assert_compute_error(response, 400, "badRequest")
    dotted = await cloud.compute("POST", "/os-keypairs", version="2.92",
                                 json={"keypair": {"name": "me@host.x", "public_key":
                                                   public_key()}})
    assert dotted.status_code == 201


async def test_x509_key_pairs_generated_and_imported(cloud: ComputeCloud) -> None:
    """``type: x509`` (2.2): a generated pair is a self-signed certificate and its private
    key; an imported one is a PEM certificate; both with the SHA-1 fingerprint of the DER."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    made = await cloud.compute("POST", "/os-keypairs", version="2.2",
                               json={"keypair": {"name": "cert", "type": "x509"}})
    assert made.status_code == 201, made.text
    pair = made.json()["keypair"]
    certificate = x509.load_pem_x509_certificate(pair["public_key"].encode())
    assert pair["type"] == "x509" and "PRIVATE KEY" in pair["private_key"]
    private = serialization.load_pem_private_key(pair["private_key"].encode(), None)
    assert private.public_key().public_numbers() == (  # type: ignore[union-attr]
        certificate.public_key().public_numbers())  # type: ignore[union-attr]
    digest = certificate.fingerprint(hashes.SHA1()).hex()
    assert pair["fingerprint"] == ":".join(digest[i:i + 2] for i in range(0, 40, 2))
    shown = (await cloud.compute("GET", "/os-keypairs/cert", version="2.2")).json()
    assert shown["keypair"]["type"] == "x509"
    assert shown["keypair"]["public_key"] == pair["public_key"]

    imported = await cloud.compute("POST", "/os-keypairs", version="2.2", json={"keypair": {
        "name": "cert2", "type": "x509", "public_key": pair["public_key"]}})
    assert imported.status_code == 201, imported.text
    assert imported.json()["keypair"]["fingerprint"] == pair["fingerprint"]
    assert "private_key" not in imported.json()["keypair"]
    listed = (await cloud.compute("GET", "/os-keypairs", version="2.2")).json()["keypairs"]
    assert {k["keypair"]["name"]: k["keypair"]["type"] for k in listed} == {
        "cert": "x509", "cert2": "x509"}
    not_pem = await cloud.compute("POST", "/os-keypairs", version="2.2", json={"keypair": {
        "name": "cert3", "type": "x509", "public_key": "-----BEGIN CERTIFICATE-----\nxx"}})
    assert_compute_error(not_pem, 400, "badRequest")
    unknown = await cloud.compute("POST", "/os-keypairs", version="2.2",
                                  json={"keypair": {"name": "k", "type": "pgp"}})
    assert_compute_error(unknown, 400, "badRequest")


async def test_key_pairs_belong_to_their_user(cloud: ComputeCloud) -> None:
    token, user, _ = await cloud.member("kai")
    mine = await cloud.compute("POST", "/os-keypairs", token=token, version="2.10",
                               json={"keypair": {"name": "kai-key", "public_key": public_key()}})
    assert mine.status_code == 201
    assert (await cloud.compute("GET", "/os-keypairs")).json() == {"keypairs": []}
    assert_compute_error(await cloud.compute("GET", "/os-keypairs/kai-key"), 404,
                         "itemNotFound")
    # From 2.10 an admin may name the user.
    theirs = await cloud.compute("GET", f"/os-keypairs/kai-key?user_id={user['id']}",
                                 version="2.10")
    assert theirs.status_code == 200
    # A member may not act for someone else.
    other = await cloud.compute("GET", "/os-keypairs?user_id=someone-else", token=token,
                                version="2.10")
    assert_compute_error(other, 403, "forbidden")


async def test_paging_from_2_35(cloud: ComputeCloud) -> None:
    for name in ("a", "b", "c"):
        await cloud.compute("POST", "/os-keypairs", version="2.35",
                            json={"keypair": {"name": name, "public_key": public_key()}})
    page = (await cloud.compute("GET", "/os-keypairs?limit=2", version="2.35")).json()
    assert [k["keypair"]["name"] for k in page["keypairs"]] == ["a", "b"]
    assert "marker=b" in page["keypairs_links"][0]["href"]
    rest = (await cloud.compute("GET", "/os-keypairs?limit=2&marker=b", version="2.35")).json()
    assert [k["keypair"]["name"] for k in rest["keypairs"]] == ["c"]
