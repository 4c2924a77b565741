"""The images page through the ASGI app: create, an upload passed on to the image API as
it arrives (chunked or with a length), the API's refusals as JSON for the page's script,
delete."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

from tests.integration.dashboard.conftest import Deck, upload_image


async def _chunks(count: int, size: int) -> AsyncIterator[bytes]:
    for n in range(count):
        yield bytes([n % 256]) * size


async def test_create_then_stream_an_upload_into_the_image_api(deck: Deck) -> None:
    assert (await deck.login()).status_code == 303
    token = await deck.csrf()
    made = await deck.browser.post("/dashboard/images", data={
        "name": "streamed", "disk_format": "raw"}, headers={"X-CSRF-Token": token})
    assert made.status_code == 201, made.text
    image_id = made.json()["id"]
    assert made.json()["upload"] == f"/dashboard/images/{image_id}/file"

    # Without the CSRF token: refused, nothing reaches the image API.
    deck.calls.clear()
    refused = await deck.browser.put(f"/dashboard/images/{image_id}/file", content=b"x" * 10,
                                     headers={"Content-Type": "application/octet-stream"})
    assert refused.status_code == 403
    assert deck.calls.made == []

    # Chunked from the browser's side (no length): passed on chunk by chunk.
    digest = hashlib.md5()
    async for chunk in _chunks(40, 65536):
        digest.update(chunk)
    deck.calls.clear()
    sent = await deck.browser.put(f"/dashboard/images/{image_id}/file",
                                  content=_chunks(40, 65536),
                                  headers={"Content-Type": "application/octet-stream",
                                           "X-CSRF-Token": token})
    assert sent.status_code == 204, sent.text
    assert deck.calls.made == [("PUT", f"/image/v2/images/{image_id}/file")]
    image = (await deck.api.get(f"/image/v2/images/{image_id}", headers=deck.admin())).json()
    assert image["status"] == "active"
    assert image["size"] == 40 * 65536
    assert image["checksum"] == digest.hexdigest()

    page = await deck.browser.get("/dashboard/images")
    assert page.status_code == 200
    assert f'<tr id="image-{image_id}">' in page.text
    assert '<span class="state state-active">active</span>' in page.text
    assert "2.5 MiB" in page.text and ">raw<" in page.text
    assert '<script src="/dashboard/static/images.js" defer></script>' in page.text
    script = await deck.browser.get("/dashboard/static/images.js")
    assert script.status_code == 200 and "xhr.upload" in script.text

    # An upload to an image that has its data already: the API's 409, as JSON.
    again = await deck.browser.put(f"/dashboard/images/{image_id}/file", content=b"more",
                                   headers={"Content-Type": "application/octet-stream",
                                            "X-CSRF-Token": token})
    assert again.status_code == 409, again.text
    assert again.json()["error"]


async def test_refusals_are_json_for_the_script_and_delete_removes(deck: Deck) -> None:
    image_id = await upload_image(deck, name="old")
    assert (await deck.login()).status_code == 303
    token = await deck.csrf()
    bad = await deck.browser.post("/dashboard/images", data={
        "name": "x", "disk_format": "floppy"}, headers={"X-CSRF-Token": token})
    assert bad.status_code == 400, bad.text
    assert bad.json()["field"] == "disk_format" and "floppy" in bad.json()["error"]
    nameless = await deck.browser.post("/dashboard/images", data={
        "name": "", "disk_format": "raw"}, headers={"X-CSRF-Token": token})
    assert nameless.status_code == 400 and nameless.json()["field"] == "name"

    deleted = await deck.browser.post("/dashboard/images/delete", data={
        "csrf_token": token, "id": image_id})
    assert deleted.status_code == 303, deleted.text
    gone = await deck.api.get(f"/image/v2/images/{image_id}", headers=deck.admin())
    assert gone.status_code == 404
    again = await deck.browser.post("/dashboard/images/delete", data={
        "csrf_token": token, "id": image_id})
    assert again.status_code == 404 and 'id="row-error"' in again.text
