"""``stratus.core.ceph``: the process's librados connection, on the run's real cluster."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path

import pytest

from stratus.core import ceph as core_ceph
from stratus.core.ceph import CephUnavailable, acquire, release
from stratus.core.ceph_dev import DevCluster
from stratus.core.config import CephSettings


def _settings(cluster: DevCluster, **overrides: object) -> CephSettings:
    values: dict[str, object] = {"conf": cluster.conf, "user": "stratus",
                                 "keyring": cluster.stratus_keyring, "connect_timeout": 5}
    values.update(overrides)
    return CephSettings.model_validate(values)


async def test_one_connection_per_process_the_fsid_and_the_monitors(
        ceph_cluster: DevCluster) -> None:
    settings = _settings(ceph_cluster)
    first = await acquire(settings)
    second = await acquire(settings)
    try:
        assert first is second
        assert first.users == 2
        conf = ceph_cluster.conf.read_text()
        assert f"fsid = {first.fsid}" in conf
        monitors = await first.monitors()
        ports = ceph_cluster.ports()
        assert [(m.host, m.port) for m in monitors] == [("127.0.0.1", ports["mon_v1"])]
    finally:
        await release(second)
    assert first._cluster is not None  # one user left: still connected
    await release(first)
    assert first._cluster is None
    third = await acquire(settings)  # a new connection after the last user left
    try:
        assert third is not first
    finally:
        await release(third)


async def test_calls_run_off_the_loop_on_a_bounded_pool(ceph_cluster: DevCluster) -> None:
    ceph = await acquire(_settings(ceph_cluster, threads=2))
    running = 0
    most = 0
    names: set[str] = set()
    lock = threading.Lock()

    def call() -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
            names.add(threading.current_thread().name)
        time.sleep(0.2)
        with lock:
            running -= 1

    try:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        tick = asyncio.create_task(ticker())
        await asyncio.gather(*(ceph.run(call) for _ in range(6)))
        tick.cancel()
        assert most == 2
        assert all(name.startswith("ceph") for name in names)
        assert ticks > 20  # the loop went on while the calls blocked
        stats = await ceph.run(lambda: ceph.ioctx("images").get_stats())
        assert "num_objects" in stats
    finally:
        await release(ceph)


async def test_a_refused_key_and_a_missing_conf_are_clear_503s(
        ceph_cluster: DevCluster, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.keyring"
    wrong.write_text("[client.stratus]\n\tkey = AQBx3hFkAAAAABAAxqvYKe2GnK7Bx+6Bc5qqkA==\n")
    with pytest.raises(CephUnavailable) as refused:
        await acquire(_settings(ceph_cluster, keyring=wrong))
    assert refused.value.status == 503
    assert "client.stratus" in str(refused.value)
    assert "AQBx3h" not in str(refused.value)
    with pytest.raises(CephUnavailable, match="no configuration at"):
        await acquire(_settings(ceph_cluster, conf=tmp_path / "absent.conf"))
    assert core_ceph._connections == {}


async def test_missing_bindings_say_which_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rados", None)
    with pytest.raises(CephUnavailable, match="apt-get install python3-rados python3-rbd"):
        core_ceph.bindings()


async def test_unreachable_monitors_are_a_503_within_the_timeout(
        ceph_cluster: DevCluster, tmp_path: Path) -> None:
    from stratus.core.ceph_dev import free_port

    conf = tmp_path / "ceph.conf"
    conf.write_text(f"[global]\nmon host = 127.0.0.1:{free_port()}\n")
    started = time.monotonic()
    with pytest.raises(CephUnavailable, match="TimedOut"):
        await acquire(_settings(ceph_cluster, conf=conf, connect_timeout=2))
    assert time.monotonic() - started < 15  # bounded: never a hang
    assert core_ceph._connections == {}
