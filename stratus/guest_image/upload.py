"""Publish the test guest to a cloud's image service, as any REST client would.

``publish(identity_url, username, password, path)`` authenticates (admin, project ``admin``),
follows the catalog to the image service and makes sure a public, active qcow2 image named
``stratus-test-guest`` holds exactly this file (same SHA-512): an existing one is reused, a
stale one (older build) is replaced. Returns the image id.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from stratus.core.clients.base import catalog_endpoint
from stratus.guest_image.builder import IMAGE_NAME, GuestImageError

CHUNK = 1024 * 1024


def _sha512(path: Path) -> str:
    digest = hashlib.sha512()
    with path.open("rb") as handle:
        while block := handle.read(4 * CHUNK):
            digest.update(block)
    return digest.hexdigest()


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as handle:
        while block := await asyncio.to_thread(handle.read, CHUNK):
            yield block


async def publish(identity_url: str, username: str, password: str, path: Path, *,
                  project: str = "admin", client: httpx.AsyncClient | None = None) -> str:
    own = client is None
    http = client or httpx.AsyncClient(timeout=120.0)
    try:
        response = await http.post(f"{identity_url.rstrip('/')}/auth/tokens", json={"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": username, "domain": {"id": "default"}, "password": password}}},
            "scope": {"project": {"name": project, "domain": {"id": "default"}}}}})
        if response.status_code != 201:
            raise GuestImageError(f"cannot authenticate to publish the test guest: "
                                  f"{response.status_code}")
        headers = {"X-Auth-Token": response.headers["X-Subject-Token"]}
        catalog: list[dict[str, Any]] = response.json()["token"].get("catalog", [])
        image_url = catalog_endpoint(catalog, "image")
        if image_url is None:
            raise GuestImageError("the catalog has no image service")
        images = f"{image_url.rstrip('/')}/v2/images"
        wanted = await asyncio.to_thread(_sha512, path)
        listed = await http.get(images, headers=headers, params={"name": IMAGE_NAME})
        listed.raise_for_status()
        for image in listed.json().get("images", []):
            if image.get("status") == "active" and image.get("os_hash_value") == wanted:
                return str(image["id"])
            # An older build (or a broken upload): replace it.
            await http.delete(f"{images}/{image['id']}", headers=headers)
        created = await http.post(images, headers=headers, json={
            "name": IMAGE_NAME, "disk_format": "qcow2", "container_format": "bare",
            "visibility": "public", "min_ram": 128, "hw_disk_bus": "virtio",
            "os_distro": "debian", "stratus_test_guest": "true"})
        if created.status_code != 201:
            raise GuestImageError(f"creating the test guest image answered "
                                  f"{created.status_code}: {created.text[:200]}")
        image_id = str(created.json()["id"])
        uploaded = await http.put(f"{images}/{image_id}/file", content=_chunks(path), headers={
            **headers, "Content-Type": "application/octet-stream"})
        if uploaded.status_code != 204:
            await http.delete(f"{images}/{image_id}", headers=headers)
            raise GuestImageError(f"uploading the test guest answered {uploaded.status_code}")
        return image_id
    finally:
        if own:
            await http.aclose()
