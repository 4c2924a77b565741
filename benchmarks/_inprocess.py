"""Units of the all-in-one built in this interpreter, reached through ASGI: what ``bootcpu``
and ``profiles/server_posts.py`` measure (no uvicorn, no HTTP client's sockets)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

API = "/compute/v2.1"
ROOT = "http://bench"
PASSWORD = "bench-admin-pw"


@dataclass(frozen=True)
class InProcessCloud:
    """The root ASGI app of the units, a client of it, and the cloud's data directory."""

    app: Any
    client: httpx.AsyncClient
    data_dir: Path


@contextlib.asynccontextmanager
async def in_process_cloud(units: Sequence[str], *, prefix: str, connections: int,
                           **settings: Any) -> AsyncIterator[InProcessCloud]:
    """``units`` built as ``stratus up`` builds them, in a temporary data directory.

    SQLite there unless ``settings`` name a ``database_url``; the memory bus; the noop
    network backend; 4 bcrypt rounds; logging to a file only; tracing and its span store on.
    ``settings`` are further ``Settings`` fields. The client keeps ``connections`` requests
    in flight at most. The stack is closed, then the directory removed, on leaving.
    """
    from stratus.core.config import Settings
    from stratus.core.logging import setup_logging
    from stratus.core.spanstore import enable_span_store, set_process_units
    from stratus.core.tracing import setup_tracing
    from tests.integration.asgi import served_stack

    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        data_dir = Path(tmp)
        os.environ["STRATUS_CONFIG_FILE"] = "/nonexistent"  # the user's file left out
        config = Settings(data_dir=data_dir, public_url=ROOT, admin_password=PASSWORD,
                          identity={"bcrypt_rounds": 4}, network={"backend": "noop"},
                          **settings)
        setup_logging(config.log_level, log_file=data_dir / "stratus.log",
                      console_level=100, json_lines=False)
        setup_tracing("stratus", None)
        enable_span_store(data_dir, max_age=config.tracing.store_max_age,
                          max_spans=config.tracing.store_max_spans)
        set_process_units(list(units))
        async with served_stack(config, units) as (_, app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url=ROOT, timeout=120,
                limits=httpx.Limits(max_connections=connections)) as client:
            yield InProcessCloud(app, client, data_dir)


async def admin_with_image(client: httpx.AsyncClient) -> tuple[dict[str, str], str]:
    """The admin's request headers (project quota lifted) and an active 4 KiB raw image's
    id."""
    auth = await client.post("/identity/v3/auth/tokens", json={"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": PASSWORD}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}})
    auth.raise_for_status()
    headers = {"X-Auth-Token": auth.headers["X-Subject-Token"],
               "OpenStack-API-Version": "compute 2.96"}
    project_id = auth.json()["token"]["project"]["id"]
    quota = await client.put(f"{API}/os-quota-sets/{project_id}", headers=headers, json={
        "quota_set": {"instances": -1, "cores": -1, "ram": -1}})
    quota.raise_for_status()
    image = (await client.post("/image/v2/images", headers=headers, json={
        "name": "bench", "disk_format": "raw", "container_format": "bare"})).json()
    upload = await client.put(f"/image/v2/images/{image['id']}/file", content=b"\0" * 4096,
                              headers={**headers, "Content-Type": "application/octet-stream"})
    upload.raise_for_status()
    return headers, str(image["id"])
