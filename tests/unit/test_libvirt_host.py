"""The machine side of libvirt: starting its daemons (a busy daemon is not a dead one, and a
start that loses the race to another caller's waits for that daemon instead of failing) and
the guests' CPU weight in the cgroup partition libvirt puts them in."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from pathlib import Path

import pytest

from stratus.compute.virt.libvirt import host


def test_a_virtlogd_with_a_full_backlog_answers_and_a_stale_socket_does_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "virtlogd-sock"
    monkeypatch.setattr(host, "VIRTLOGD_SOCKET", str(path))
    assert not host._virtlogd_answers()  # no socket file
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(0)
    waiting = []
    try:
        # Fill the backlog (nothing accepts): a non-blocking connect then gets EAGAIN.
        while True:
            client = socket.socket(socket.AF_UNIX)
            client.setblocking(False)
            try:
                client.connect(str(path))
            except BlockingIOError:
                client.close()
                break
            waiting.append(client)
        assert host._virtlogd_answers()
    finally:
        for client in waiting:
            client.close()
        listener.close()
    assert not host._virtlogd_answers()  # the file is left, nothing listens: refused


def test_a_start_that_fails_is_no_failure_while_a_daemon_of_that_name_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``sleep -d -p FILE`` fails as a second virtlogd's start fails on the first one's
    pid file: with that command running it is waited on, without it it is the error. The
    command is a copy of sleep under a name of this test's own (the machine runs others)."""
    name = f"sl-{uuid.uuid4().hex[:8]}"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", tmp_path / name)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setattr(host, "DAEMON_DIR", tmp_path)
    log = tmp_path / "daemon.log"
    with pytest.raises(host.DaemonError):
        host._start_unless_starting(name, log, "UNUSED_LOG_OUTPUTS")
    running = subprocess.Popen([name, "30"])
    try:
        host._start_unless_starting(name, log, "UNUSED_LOG_OUTPUTS")
    finally:
        running.kill()
        running.wait()


def _cgroup(path: Path, name: str, weight: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / name).write_text(f"{weight}\n")


@pytest.mark.parametrize(("version", "top", "name", "default"), [
    (1, "cpu/machine", "cpu.shares", 1024), (2, "machine", "cpu.weight", 100)])
def test_the_guests_partition_weighs_as_its_guests(tmp_path: Path, version: int, top: str,
                                                   name: str, default: int) -> None:
    """libvirt's partition (no systemd) is one cgroup: by default all guests together weigh
    as one host task. It is given the sum of its guests' weights, never below the default
    nor above the controller's largest; without the partition (systemd's machine.slice is
    the operator's) nothing is written."""
    assert host.weigh_guest_partition(version, tmp_path) is None
    partition = tmp_path / top
    _cgroup(partition, name, default)
    assert host.weigh_guest_partition(version, tmp_path) == default  # no guests
    _cgroup(partition / "qemu-1-instance-a.libvirt-qemu", name, 2 * default)
    _cgroup(partition / "qemu-2-instance-b.libvirt-qemu", name, 5 * default)
    assert host.weigh_guest_partition(version, tmp_path) == 7 * default
    assert (partition / name).read_text().strip() == str(7 * default)
    for guest in partition.glob("qemu-1-*"):  # a guest stopped: libvirt removed its cgroup
        (guest / name).unlink()
        guest.rmdir()
    assert host.weigh_guest_partition(version, tmp_path) == 5 * default
    _cgroup(partition / "qemu-3-instance-c.libvirt-qemu", name, host.CPU_WEIGHT_MAX[version])
    assert host.weigh_guest_partition(version, tmp_path) == host.CPU_WEIGHT_MAX[version]
