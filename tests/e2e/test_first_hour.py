"""The first hour on a machine without the optional parts: ``stratus up`` with ``PATH``
stripped of qemu-img, dnsmasq and QEMU, as a new user on a fresh Debian runs it.

Every feature works without them or says what it needs: empty volumes become ``available``
(sparse files, no qemu-img), the banner shows the DHCP and L2 agents as not started with the
reason and the command that adds dnsmasq, ``stratus doctor`` lists each missing part with its
``apt-get install``, and the console stays short while the log file holds the rest.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.cloud import BIN, Cloud, base_env, free_port

pytestmark = pytest.mark.e2e

#: What the stripped PATH leaves out: QEMU (every qemu-* program, kvm), qemu-img, dnsmasq.
LEFT_OUT = ("qemu", "kvm", "dnsmasq")
#: The console budget of a first start without --verbose.
MAX_CONSOLE_LINES = 15
#: What a first start on SQLite logs for the databases it makes from the schema snapshots.
FRESH_DATABASES = "made at their schemas' heads from snapshots"


def stripped_path(tmp_path: Path) -> str:
    """A PATH of one directory holding links to every program on this PATH but QEMU,
    qemu-img and dnsmasq (they all live in /usr/bin and /usr/sbin beside what we keep)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not directory or not os.path.isdir(directory):
            continue
        for entry in sorted(Path(directory).iterdir()):
            name = entry.name
            if name.startswith(LEFT_OUT) or (bin_dir / name).exists():
                continue
            if entry.is_file() and os.access(entry, os.X_OK):
                (bin_dir / name).symlink_to(entry)
    return str(bin_dir)


def wait_for_text(cloud: Cloud, text: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while text not in (console := cloud.console()):
        assert time.monotonic() < deadline, f"{text!r} never printed:\n{console}"
        time.sleep(0.1)
    return console


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    environment = base_env(PATH=stripped_path(tmp_path))
    # The virt driver is chosen as for a user: automatically (QEMU is missing: fake).
    environment.pop("STRATUS_COMPUTE__VIRT_DRIVER")
    return environment


def test_without_qemu_img_dnsmasq_and_qemu(tmp_path: Path, env: dict[str, str]) -> None:
    for program in ("qemu-img", "dnsmasq", "qemu-system-x86_64"):
        assert subprocess.run(["sh", "-c", f"command -v {program}"], env=env,
                              capture_output=True).returncode != 0, program
    cloud = Cloud(tmp_path / "data", free_port(), env)
    cloud.start(timeout=60)
    try:
        console = wait_for_text(cloud, "Then: openstack")
        lines = console.splitlines()
        # A first start: one progress line, then the summary; the chatter is in the log.
        assert lines[0].startswith("First start:"), console
        assert len(lines) <= MAX_CONSOLE_LINES, console
        assert "alembic" not in console and FRESH_DATABASES not in console
        logged = (cloud.data_dir / "stratus.log").read_text()
        assert FRESH_DATABASES in logged
        assert "created the admin user" in logged

        (not_started,) = [line for line in lines if "not started" in line]
        assert "dhcp-agent, l2-agent" in not_started
        assert "dnsmasq is not installed; apt-get install dnsmasq-base" in not_started
        running = next(line for line in lines if line.strip().startswith("running"))
        assert "volume-manager" in running and "dhcp-agent" not in running
        virt = next(line for line in lines if "virt driver" in line)
        assert "fake" in virt and "apt-get install qemu-system-x86" in virt
        volume_backend = next(line for line in lines if "volume backend" in line)
        assert "apt-get install qemu-utils" in volume_backend

        # An empty volume needs no qemu-img: it becomes available.
        cloud.openstack("volume", "create", "--size", "1", "v1")
        deadline = time.monotonic() + 60
        while (status := cloud.openstack_json("volume", "show", "v1")["status"]) != "available":
            assert status == "creating", status
            assert time.monotonic() < deadline, "v1 stuck in creating"
            time.sleep(0.2)
        volume_files = list((cloud.data_dir / "volumes").glob("volume-*"))
        assert len(volume_files) == 1 and volume_files[0].stat().st_size == 1 << 30

        # stratus doctor names each missing part and the command that adds it.
        doctor = subprocess.run([str(BIN / "stratus"), "doctor"], env=env, capture_output=True,
                                text=True, timeout=60)
        assert doctor.returncode == 0, doctor.stderr
        report = doctor.stdout + doctor.stderr
        for program, install in (("qemu-img", "apt-get install qemu-utils"),
                                 ("dnsmasq", "apt-get install dnsmasq-base"),
                                 ("qemu-system-x86_64", "apt-get install qemu-system-x86")):
            (line,) = [x for x in report.splitlines() if f" {program} " in x]
            assert line.startswith("missing"), line
            hint = report.splitlines()[report.splitlines().index(line) + 1]
            assert f"to add it: {install}" in hint, (line, hint)
        packages = subprocess.run([str(BIN / "stratus"), "doctor", "--packages"], env=env,
                                  capture_output=True, text=True, timeout=60).stdout.split()
        assert {"qemu-utils", "dnsmasq-base", "qemu-system-x86"} <= set(packages)
    finally:
        assert cloud.stop() == 0
    password = (cloud.data_dir / "admin-password").read_text().strip()
    assert password not in cloud.log()


def test_verbose_logs_to_the_console_too(tmp_path: Path) -> None:
    cloud = Cloud(tmp_path / "data", free_port(), base_env(),
                  args=["up", "--verbose", "--network-backend", "noop"])
    cloud.start()
    try:
        console = wait_for_text(cloud, "Then: openstack")
        assert FRESH_DATABASES in console
        assert FRESH_DATABASES in (cloud.data_dir / "stratus.log").read_text()
    finally:
        assert cloud.stop() == 0
    # A second start is no first start, and says so.
    cloud.args = ["up", "--network-backend", "noop"]
    cloud.log_path.unlink()  # type: ignore[union-attr]
    cloud.start()
    try:
        console = wait_for_text(cloud, "Then: openstack")
        assert console.splitlines()[0].startswith("Starting Stratus from"), console
        assert FRESH_DATABASES not in console and "Running upgrade" not in console
    finally:
        assert cloud.stop() == 0


def test_libvirt_asked_for_without_qemu_is_refused_at_once(tmp_path: Path,
                                                           env: dict[str, str]) -> None:
    result = subprocess.run([str(BIN / "stratus"), "up", "--virt-driver", "libvirt",
                             "--data-dir", str(tmp_path / "data"), "--port", str(free_port())],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert ("The libvirt virt driver cannot run here: qemu-system-x86_64 is not installed; "
            "apt-get install qemu-system-x86") in result.stderr
