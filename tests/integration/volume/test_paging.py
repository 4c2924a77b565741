"""Block storage lists page in SQL: page 2 of 1,000 volumes loads about one page of rows."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from stratus.volume.models import Attachment, Snapshot, Volume
from tests.dbcount import count_loaded
from tests.integration.clouds import Who
from tests.integration.volume.conftest import VolCloud

ROWS = 1000
LIMIT = 20


async def test_page_two_of_a_thousand_volumes(cloud: VolCloud) -> None:
    member = await cloud.project()
    # Inserted straight through the volume service's session: the test is about paging.
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    ids = [str(uuid.UUID(int=i + 1)) for i in range(ROWS)]
    async with cloud.runtime.db.transaction() as txn:
        txn.session.add_all(
            Volume(id=volume_id, project_id=member.project_id, user_id="u", name=f"v{i:04d}",
                   size=1, status="available", attach_status="detached",
                   availability_zone="nova", metadata_={}, image_metadata={},
                   created_at=start + dt.timedelta(seconds=i),
                   updated_at=start + dt.timedelta(seconds=i))
            for i, volume_id in enumerate(ids))
    newest_first = list(reversed(ids))

    first = await cloud.call("GET", f"/volumes/detail?limit={LIMIT}", member)
    assert first.status_code == 200, first.text
    body = first.json()
    assert [v["id"] for v in body["volumes"]] == newest_first[:LIMIT]
    href = body["volumes_links"][0]["href"]
    assert f"marker={newest_first[LIMIT - 1]}" in href

    with count_loaded(Volume) as loaded:
        second = await cloud.call("GET", href.split(f"/v3/{member.project_id}", 1)[1], member)
    assert second.status_code == 200, second.text
    assert [v["id"] for v in second.json()["volumes"]] == newest_first[LIMIT:2 * LIMIT]
    # The page and the one extra row that says more follow (the marker lookup loads none).
    assert loaded.count <= LIMIT + 2, loaded.count


async def _volume_of(cloud: VolCloud, member: Who, **fields: object) -> str:
    """A volume row of the member's, made directly (what the listed rows hang off)."""
    volume_id = str(uuid.uuid4())
    async with cloud.runtime.db.transaction() as txn:
        txn.session.add(Volume(id=volume_id, project_id=member.project_id, size=1,
                               availability_zone="nova", metadata_={}, image_metadata={},
                               **fields))
    return volume_id


async def _next_page(cloud: VolCloud, member: Who, first: dict[str, Any], collection: str,
                     model: type, version: str | None = None) -> tuple[list[str], int]:
    """The ids on the page ``first``'s next link names, and the ``model`` rows loaded."""
    href = first[f"{collection}_links"][0]["href"]
    with count_loaded(model) as loaded:
        second = await cloud.call("GET", href.split(f"/v3/{member.project_id}", 1)[1], member,
                                  version=version)
    assert second.status_code == 200, second.text
    return [row["id"] for row in second.json()[collection]], loaded.count


async def test_page_two_of_a_thousand_snapshots(cloud: VolCloud) -> None:
    member = await cloud.project()
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    volume_id = await _volume_of(cloud, member, status="available")
    ids = [str(uuid.UUID(int=i + 1)) for i in range(ROWS)]
    async with cloud.runtime.db.transaction() as txn:
        txn.session.add_all(
            Snapshot(id=snapshot_id, project_id=member.project_id, volume_id=volume_id,
                     size=1, status="available", metadata_={},
                     created_at=start + dt.timedelta(seconds=i))
            for i, snapshot_id in enumerate(ids))
    newest_first = list(reversed(ids))

    first = (await cloud.call("GET", f"/snapshots?limit={LIMIT}", member)).json()
    assert [s["id"] for s in first["snapshots"]] == newest_first[:LIMIT]
    second, loaded = await _next_page(cloud, member, first, "snapshots", Snapshot)
    assert second == newest_first[LIMIT:2 * LIMIT]
    assert loaded <= LIMIT + 2, loaded


async def test_page_two_of_a_thousand_attachments(cloud: VolCloud) -> None:
    member = await cloud.project()
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    volume_id = await _volume_of(cloud, member, status="in-use", multiattach=True)
    ids = [str(uuid.UUID(int=i + 1)) for i in range(ROWS)]
    async with cloud.runtime.db.transaction() as txn:
        txn.session.add_all(
            Attachment(id=attachment_id, volume_id=volume_id, instance_uuid=str(uuid.uuid4()),
                       attach_status="attached", created_at=start + dt.timedelta(seconds=i))
            for i, attachment_id in enumerate(ids))

    everything = await cloud.call("GET", "/attachments", member, version="3.27")
    assert everything.status_code == 200, everything.text
    assert [a["id"] for a in everything.json()["attachments"]] == ids  # unpaged: all, oldest first

    first = (await cloud.call("GET", f"/attachments/detail?limit={LIMIT}", member,
                              version="3.27")).json()
    assert [a["id"] for a in first["attachments"]] == ids[:LIMIT]
    second, loaded = await _next_page(cloud, member, first, "attachments", Attachment, "3.27")
    assert second == ids[LIMIT:2 * LIMIT]
    assert loaded <= LIMIT + 2, loaded
