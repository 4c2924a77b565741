"""Short-lived lists a project's pages share: its flavors and image names.

Contracts:

* ``cached`` keeps a list in the dashboard's session store (memcached when the dashboard
  runs as several processes) for ``list_cache_ttl`` seconds, keyed by the project and by
  whether the user is an admin (both change what the API lists); a failed call is never
  kept. Only lists that change rarely go through it: a server's status never does.
* A store that cannot be reached only costs the cache: the list is asked of the API.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from stratus.dashboard.sessions import StoreUnavailable
from stratus.dashboard.web import Page, dashboard_of

LOG = logging.getLogger(__name__)


def _key(page: Page, name: str) -> str:
    scope = f"{page.session.project.get('id', '')}:{'admin' in page.session.roles}:{name}"
    return "list:" + hashlib.sha256(scope.encode()).hexdigest()


async def cached(page: Page, name: str, fetch: Callable[[], Awaitable[Any]]) -> Any:
    """``fetch()``'s JSON-able result, kept for the project as ``name`` a few seconds;
    ``fetch``'s ``ApiError`` propagates (and nothing is kept)."""
    dashboard = dashboard_of(page.request)
    ttl = dashboard.options.list_cache_ttl
    if ttl <= 0:
        return await fetch()
    store = dashboard.sessions.store
    key = _key(page, name)
    try:
        data = await store.load(key)
    except StoreUnavailable as exc:
        LOG.warning("Dashboard: list cache: %s", exc)
        data = None
    if data is not None:
        return json.loads(data)
    value = await fetch()
    try:
        await store.save(key, json.dumps(value).encode(), ttl)
    except StoreUnavailable as exc:
        LOG.warning("Dashboard: list cache: %s", exc)
    return value


async def image_list(page: Page) -> dict[str, Any]:
    """Every image of the project as ``{"images": [{"id", "name"}]}``: the names rows show."""
    async def fetch() -> dict[str, Any]:
        body = await page.api.get("image", "/v2/images", params={"limit": 1000})
        return {"images": [{"id": i["id"], "name": i.get("name")}
                           for i in body.get("images", [])]}
    result: dict[str, Any] = await cached(page, "image-names", fetch)
    return result


async def active_images(page: Page) -> dict[str, Any]:
    """The active images one can launch, with what the launch form shows of them."""
    async def fetch() -> dict[str, Any]:
        body = await page.api.get("image", "/v2/images",
                                  params={"status": "active", "limit": 1000})
        return {"images": [{k: i.get(k) for k in ("id", "name", "size", "min_disk")}
                           for i in body.get("images", [])]}
    result: dict[str, Any] = await cached(page, "active-images", fetch)
    return result


async def flavors(page: Page) -> dict[str, Any]:
    """The flavors the project may launch."""
    async def fetch() -> dict[str, Any]:
        body = await page.api.get("compute", "/flavors/detail")
        return {"flavors": body.get("flavors", [])}
    result: dict[str, Any] = await cached(page, "flavors", fetch)
    return result
