"""Ceph stopped under the rbd store: a clear 503 naming Ceph, no hang, no half image; started
again, the next upload works with nothing to clean by hand. A private cluster: the run's
shared one must not stop under other tests."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from stratus.core.ceph import CephUnavailable
from stratus.core.ceph_dev import DevCluster
from stratus.core.config import CephSettings
from stratus.image.stores.rbd import RbdStore
from tests.ceph_cluster import admin_connection, bindings_missing


def _names(cluster: DevCluster, image_id: str) -> list[str]:
    import rbd

    with admin_connection(cluster) as conn, conn.open_ioctx("images") as ioctx:
        return sorted(n for n in rbd.RBD().list(ioctx) if image_id in n)


async def test_osd_down_is_a_503_and_recovery_needs_nothing(
        ceph_cluster: DevCluster) -> None:
    del ceph_cluster  # (the packages and bindings are there: the fixture checked)
    if bindings_missing():
        pytest.skip("needs the bindings")
    cluster = DevCluster(Path(f"/tmp/sc-{uuid.uuid4().hex[:8]}"))
    try:
        await asyncio.to_thread(cluster.up)
        store = RbdStore(CephSettings(conf=cluster.conf, keyring=cluster.stratus_keyring,
                                      connect_timeout=3, op_timeout=3))
        await store.start()
        try:
            kept = str(uuid.uuid4())
            writer = await store.writer(kept)
            await writer.write(b"K" * 4096)
            location = await writer.commit()

            osd = next(pid for pid, name in cluster.pids().items() if name == "osd.0")
            os.kill(osd, signal.SIGTERM)
            while osd in cluster.pids():  # noqa: ASYNC110 - polling a process list
                await asyncio.sleep(0.1)
            lost = str(uuid.uuid4())
            started = time.monotonic()
            with pytest.raises(CephUnavailable) as refused:
                writer = await store.writer(lost)
                await writer.write(b"L" * (9 << 20))
            assert refused.value.status == 503
            assert "Ceph" in str(refused.value)
            assert time.monotonic() - started < 30  # an error, not a hang
            with pytest.raises(CephUnavailable):
                reader = await store.open(location)
                [chunk async for chunk in reader.chunks()]

            await asyncio.to_thread(cluster.up)  # the OSD again
            again = await store.writer(lost)  # the same image id: a stale .partial goes
            await again.write(b"L" * 4096)
            assert await again.commit()
            assert _names(cluster, lost) == [lost]
            reader = await store.open(location)
            assert b"".join([c async for c in reader.chunks()]) == b"K" * 4096
        finally:
            await store.stop()
    finally:
        await asyncio.to_thread(cluster.down, purge=True)
    assert cluster.pids() == {}
