"""The machine side of libvirt: starting its daemons (a busy daemon is not a dead one, and a
start that loses the race to another caller's waits for that daemon instead of failing)."""

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

