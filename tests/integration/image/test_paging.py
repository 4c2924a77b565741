"""``GET /v2/images`` pages in SQL: page 2 of 1,000 images loads about one page of rows."""

from __future__ import annotations

import datetime as dt
import uuid

from stratus.image.models import Image
from tests.dbcount import count_loaded
from tests.integration.image.conftest import IMAGE, ImageCloud

ROWS = 1000
LIMIT = 20


async def test_page_two_of_a_thousand_images(cloud: ImageCloud) -> None:
    # Inserted straight through the image service's session: the test is about paging.
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    ids = [str(uuid.UUID(int=i + 1)) for i in range(ROWS)]
    async with cloud.runtime.db.transaction() as txn:
        txn.session.add_all(
            Image(id=image_id, name=f"img-{i:04d}", owner=cloud.admin.id, status="queued",
                  visibility="private", protected=False, os_hidden=False, min_disk=0,
                  min_ram=0, created_at=start + dt.timedelta(seconds=i),
                  updated_at=start + dt.timedelta(seconds=i))
            for i, image_id in enumerate(ids))
    newest_first = list(reversed(ids))

    first = await cloud.client.get(f"{IMAGE}/images?limit={LIMIT}",
                                   headers=cloud.admin.headers)
    assert first.status_code == 200, first.text
    body = first.json()
    assert [i["id"] for i in body["images"]] == newest_first[:LIMIT]
    assert body["next"].startswith("/v2/images?") and "marker=" in body["next"]

    with count_loaded(Image) as loaded:
        second = await cloud.client.get("/image" + body["next"], headers=cloud.admin.headers)
    assert second.status_code == 200, second.text
    assert [i["id"] for i in second.json()["images"]] == newest_first[LIMIT:2 * LIMIT]
    # The page and the one extra row that says more follow (the marker lookup loads none).
    assert loaded.count <= LIMIT + 2, loaded.count
