"""The key pairs page through the ASGI app: list, create (the private key shown once and
kept nowhere), import, delete; the API's refusals at the form."""

from __future__ import annotations

import html
import logging
import re

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from stratus.dashboard.sessions import MemoryStore
from tests.integration.dashboard.conftest import Deck


def _public_key() -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH,
                            serialization.PublicFormat.OpenSSH).decode() + " me@laptop"


async def test_create_shows_the_private_key_once_and_keeps_it_nowhere(
        deck: Deck, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    assert (await deck.login()).status_code == 303
    empty = await deck.browser.get("/dashboard/keypairs")
    assert empty.status_code == 200 and "No key pairs yet." in empty.text
    assert 'aria-current="page">Key pairs<' in empty.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', empty.text)
    assert token

    deck.calls.clear()
    made = await deck.browser.post("/dashboard/keypairs", data={
        "csrf_token": token.group(1), "name": "laptop", "public_key": ""})
    assert made.status_code == 201, made.text
    assert deck.calls.made == [("POST", "/compute/v2.1/os-keypairs"),
                               ("GET", "/compute/v2.1/os-keypairs")]
    found = re.search(r'<textarea id="private-key"[^>]*>([^<]+)</textarea>', made.text)
    assert found, made.text
    private_key = html.unescape(found.group(1))
    assert private_key.startswith("-----BEGIN") and "PRIVATE KEY-----" in private_key
    assert made.headers["cache-control"] == "no-store"
    # The API agrees: the pair exists, its public key matches the private one shown.
    listed = (await deck.api.get("/compute/v2.1/os-keypairs/laptop",
                                 headers=deck.admin())).json()["keypair"]
    loaded = serialization.load_ssh_private_key(private_key.encode(), password=None)
    assert loaded.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode() == " ".join(listed["public_key"].split()[:2])

    # Never again: not the list, not the session store, not a log line.
    page = await deck.browser.get("/dashboard/keypairs")
    assert "laptop" in page.text and listed["fingerprint"] in page.text
    assert "PRIVATE KEY" not in page.text
    body = private_key.splitlines()[1]
    assert isinstance(deck.store, MemoryStore)
    assert deck.store._entries
    assert all(body.encode() not in value for value, _ in deck.store._entries.values())
    assert body not in caplog.text and "PRIVATE KEY" not in caplog.text


async def test_import_lists_and_delete_removes_a_key_pair(deck: Deck) -> None:
    assert (await deck.login()).status_code == 303
    token = await deck.csrf()
    public_key = _public_key()
    imported = await deck.browser.post("/dashboard/keypairs", data={
        "csrf_token": token, "name": "mine", "public_key": public_key})
    assert imported.status_code == 303, imported.text
    assert imported.headers["location"] == "/dashboard/keypairs"
    got = (await deck.api.get("/compute/v2.1/os-keypairs/mine",
                              headers=deck.admin())).json()["keypair"]
    assert got["public_key"].split()[:2] == public_key.split()[:2]
    page = await deck.browser.get("/dashboard/keypairs")
    assert "<td data-label=\"Name\">mine</td>" in page.text
    assert got["fingerprint"] in page.text

    # The API's refusals at the form, the values kept: a name taken, a key it cannot read.
    taken = await deck.browser.post("/dashboard/keypairs", data={
        "csrf_token": token, "name": "mine", "public_key": public_key})
    assert taken.status_code == 409, taken.text
    assert 'class="error field-error" id="name-error"' in taken.text
    assert "already exists" in taken.text
    bad = await deck.browser.post("/dashboard/keypairs", data={
        "csrf_token": token, "name": "broken", "public_key": "ssh-rsa not-a-key"})
    assert bad.status_code == 400, bad.text
    assert 'id="public_key-error"' in bad.text
    assert ">ssh-rsa not-a-key</textarea>" in bad.text
    nameless = await deck.browser.post("/dashboard/keypairs", data={
        "csrf_token": token, "name": " ", "public_key": ""})
    assert nameless.status_code == 400 and 'id="name-error"' in nameless.text

    # Without the CSRF token nothing is deleted.
    refused = await deck.browser.post("/dashboard/keypairs/delete", data={"name": "mine"})
    assert refused.status_code == 403
    deleted = await deck.browser.post("/dashboard/keypairs/delete", data={
        "csrf_token": token, "name": "mine"})
    assert deleted.status_code == 303, deleted.text
    gone = await deck.api.get("/compute/v2.1/os-keypairs/mine", headers=deck.admin())
    assert gone.status_code == 404
    again = await deck.browser.post("/dashboard/keypairs/delete", data={
        "csrf_token": token, "name": "mine"})
    assert again.status_code == 404 and 'id="row-error"' in again.text
