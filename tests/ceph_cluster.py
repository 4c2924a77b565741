"""The test run's Ceph: one real single-node cluster (``stratus ceph``) shared by every
pytest-xdist worker.

The first test that asks for ``ceph_cluster`` starts it under an exclusive file lock; the
others find it healthy under the same lock and use it. The controller of a run that used it
(the only process of a run without xdist; see ``conftest.py``) stops and removes it when the
session ends, so one cluster start is paid per ``pytest`` run. The directory is fixed per
checkout (under /tmp: the daemons' socket paths must stay short): a run that crashed leaves
a cluster the next run either finds healthy and uses, or stops (its daemons are found by their
command line) and makes afresh.
``STRATUS_TEST_KEEP_CEPH=1`` leaves it running after the run (for quick re-runs).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stratus.core.ceph_dev import CephDevError, DevCluster, locked, missing_programs

ROOT = Path(__file__).resolve().parent.parent
#: One directory per checkout, so the worktrees of one machine do not share a cluster.
CEPH_TEST_DIR = Path(f"/tmp/stratus-ceph-{hashlib.sha256(str(ROOT).encode()).hexdigest()[:8]}")
LOCK = CEPH_TEST_DIR.with_name(CEPH_TEST_DIR.name + ".lock")


def bindings_missing() -> str | None:
    try:
        import rados  # noqa: F401
        import rbd  # noqa: F401
    except ImportError:
        return ("Debian's python3-rados/python3-rbd are not in the venv: apt-get install "
                "python3-rados python3-rbd, then make ceph-bindings")
    return None


@contextlib.contextmanager
def admin_connection(cluster: DevCluster) -> Iterator[Any]:
    """A librados connection to ``cluster`` as client.admin: what the tests check the
    stores and backends against (they themselves use client.stratus)."""
    import rados

    conn = rados.Rados(conffile=str(cluster.conf), rados_id="admin",
                       conf={"keyring": str(cluster.admin_keyring)})
    conn.connect(timeout=10)
    try:
        yield conn
    finally:
        conn.shutdown()


def ensure_cluster() -> DevCluster:
    """The run's cluster, healthy; started (or made) if needed. Raises ``CephDevError``."""
    cluster = DevCluster(CEPH_TEST_DIR)
    with locked(LOCK):
        if not cluster.healthy():
            cluster.down(purge=True)
            cluster.up()
    return cluster


def stop_cluster() -> None:
    if os.environ.get("STRATUS_TEST_KEEP_CEPH") or not CEPH_TEST_DIR.exists():
        return
    with locked(LOCK):
        DevCluster(CEPH_TEST_DIR).down(purge=True)


def cluster_for_tests() -> DevCluster:
    """The ``ceph_cluster`` fixture's value (conftest.py): skipped locally, failed in CI,
    when Ceph's packages or bindings are missing."""
    from tests.conftest import backend_unavailable

    missing = missing_programs()
    if missing:
        backend_unavailable(f"Ceph is not installed: apt-get install {' '.join(missing)}")
    reason = bindings_missing()
    if reason:
        backend_unavailable(reason)
    try:
        return ensure_cluster()
    except CephDevError as exc:
        pytest.fail(f"the test Ceph cluster did not start: {exc}", pytrace=False)
