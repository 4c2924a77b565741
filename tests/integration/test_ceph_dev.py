"""``stratus ceph``: the single-node development cluster, on Debian's real daemons."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from stratus.core.ceph_dev import DAEMONS, POOLS, DevCluster
from tests.ceph_cluster import bindings_missing


def _stratus(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).parent / "stratus"), *args],
                          capture_output=True, text=True, timeout=300, check=False)


def _rados(cluster: DevCluster, user: str, keyring: Path):  # type: ignore[no-untyped-def]
    import rados

    conn = rados.Rados(conffile=str(cluster.conf), rados_id=user,
                       conf={"keyring": str(keyring)})
    conn.connect(timeout=10)
    return conn


def test_the_run_cluster_has_the_pools_the_stratus_key_and_the_s3_user(
        ceph_cluster: DevCluster) -> None:
    import rados
    import rbd

    assert ceph_cluster.running() == set(DAEMONS)
    conn = _rados(ceph_cluster, "stratus", ceph_cluster.stratus_keyring)
    try:
        for pool in POOLS:
            name = f"t-{uuid.uuid4().hex[:8]}"
            with conn.open_ioctx(pool) as ioctx:
                rbd.RBD().create(ioctx, name, 1 << 20)
                with rbd.Image(ioctx, name) as image:
                    image.write(b"stratus", 0)
                    assert image.read(0, 7) == b"stratus"
                rbd.RBD().remove(ioctx, name)
        # RBD caps on those pools only: the gateway's pools are out of reach.
        with conn.open_ioctx(".rgw.root") as ioctx, pytest.raises(rados.PermissionError):
            ioctx.write_full("stratus-probe", b"x")
    finally:
        conn.shutdown()
    done = subprocess.run(["radosgw-admin", "-c", str(ceph_cluster.conf), "user", "info",
                           "--uid=stratus"], capture_output=True, text=True, timeout=60,
                          check=True)
    keys = json.loads(done.stdout)["keys"]
    assert keys[0]["access_key"] == ceph_cluster.s3().access_key


def test_up_env_down_restart_and_purge(tmp_path: Path) -> None:
    """The CLI makes a cluster and prints its settings; after a daemon crashed, ``down``
    stops the rest, leaving nothing running; ``up`` restarts it with its data; ``--purge``
    removes it."""
    if bindings_missing():
        pytest.skip("needs the bindings: the run's cluster fixture reports it")
    directory = Path(f"/tmp/sc-{uuid.uuid4().hex[:8]}")
    cluster = DevCluster(directory)
    try:
        up = _stratus("ceph", "up", "--dir", str(directory))
        assert up.returncode == 0, up.stderr
        assert cluster.running() == set(DAEMONS)
        env = _stratus("ceph", "env", "--dir", str(directory))
        assert f"export CEPH_CONF={directory}/ceph.conf" in env.stdout
        assert f"STRATUS_CEPH__KEYRING={directory}/ceph.client.stratus.keyring" in env.stdout
        conn = _rados(cluster, "admin", cluster.admin_keyring)
        try:
            with conn.open_ioctx("volumes") as ioctx:
                ioctx.write_full("kept", b"across a restart")
        finally:
            conn.shutdown()

        # A crash: the OSD dies. The cluster is no longer healthy; down stops the rest.
        osd = next(pid for pid, name in cluster.pids().items() if name == "osd.0")
        os.kill(osd, signal.SIGKILL)
        for _ in range(100):
            if osd not in cluster.pids():
                break
            time.sleep(0.1)
        assert not cluster.healthy(timeout=3)
        down = _stratus("ceph", "down", "--dir", str(directory))
        assert down.returncode == 0, down.stderr
        assert "Stopped: client.rgw.a, mgr.x, mon.a" in down.stderr
        assert cluster.pids() == {}

        again = _stratus("ceph", "up", "--dir", str(directory))
        assert again.returncode == 0, again.stderr
        assert "running" in again.stderr
        conn = _rados(cluster, "admin", cluster.admin_keyring)
        try:
            with conn.open_ioctx("volumes") as ioctx:
                assert ioctx.read("kept") == b"across a restart"
        finally:
            conn.shutdown()
    finally:
        purge = _stratus("ceph", "down", "--dir", str(directory), "--purge")
    assert purge.returncode == 0, purge.stderr
    assert cluster.pids() == {}
    assert not directory.exists()


def test_up_storage_ceph_without_a_cluster_says_how(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATUS_")}
    env.update({"STRATUS_CEPH__CONF": str(tmp_path / "absent.conf"),
                "STRATUS_CONFIG_FILE": "/nonexistent"})
    done = subprocess.run([str(Path(sys.executable).parent / "stratus"), "up", "--storage",
                           "ceph", "--data-dir", str(tmp_path / "data")], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    message = " ".join(done.stderr.split())
    assert f"no Ceph configuration at {tmp_path / 'absent.conf'}" in message
    assert "stratus ceph up" in message


def test_up_storage_ceph_with_the_cluster_down_exits_clearly(ceph_cluster: DevCluster,
                                                             tmp_path: Path) -> None:
    from stratus.core.ceph_dev import free_port

    conf = tmp_path / "ceph.conf"
    conf.write_text(f"[global]\nmon host = 127.0.0.1:{free_port()}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATUS_")}
    env.update({"STRATUS_CEPH__CONF": str(conf), "STRATUS_CONFIG_FILE": "/nonexistent",
                "STRATUS_CEPH__KEYRING": str(ceph_cluster.stratus_keyring),
                "STRATUS_CEPH__CONNECT_TIMEOUT": "2", "STRATUS_COMPUTE__VIRT_DRIVER": "fake",
                "STRATUS_NETWORK__BACKEND": "noop"})
    done = subprocess.run([str(Path(sys.executable).parent / "stratus"), "up", "--storage",
                           "ceph", "--data-dir", str(tmp_path / "data"), "--port",
                           str(free_port())], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 1, done.stderr
    message = " ".join(done.stderr.split())
    assert "Stratus cannot start: Ceph: cannot connect as client.stratus" in message
    assert "Traceback" not in done.stderr
