"""``stratus guest-image build`` (Debian packages → bootable qcow2, cached) and the automatic
choice of virt driver on this machine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stratus.compute.virt.select import choose_driver, embedded_choice
from stratus.core.config import Settings
from tests.realvm import libvirt_ready

pytestmark = [pytest.mark.realvm, pytest.mark.serial]

STRATUS = Path(sys.executable).parent / "stratus"


def build(data_dir: Path, *extra: str) -> str:
    done = subprocess.run([str(STRATUS), "guest-image", "build", "--data-dir", str(data_dir),
                           *extra], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_build_is_a_bootable_qcow2_cached_by_versions(tmp_path: Path) -> None:
    first = Path(build(tmp_path))
    assert first.parent == tmp_path / "guest-image"
    assert first.name.startswith("stratus-test-guest-") and first.suffix == ".qcow2"
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(first)],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["format"] == "qcow2" and "backing-filename" not in info
    subprocess.run(["qemu-img", "dd", "-f", "qcow2", "-O", "raw", "bs=512", "count=1",
                    f"if={first}", f"of={tmp_path / 'mbr'}"], check=True)
    # The boot sector extlinux wrote at the start of the disk, with its signature.
    assert (tmp_path / "mbr").read_bytes()[510:512] == b"\x55\xaa"
    built_at = first.stat().st_mtime_ns

    copy = tmp_path / "out" / "guest.qcow2"
    second = build(tmp_path, "--output", str(copy))
    assert Path(second) == copy and copy.read_bytes() == first.read_bytes()
    assert first.stat().st_mtime_ns == built_at  # reused, not rebuilt
    assert not list((tmp_path / "guest-image").glob(".build-*"))  # no scratch left


async def test_auto_choice_is_libvirt_where_usable(tmp_path: Path) -> None:
    libvirt_ready()
    auto = await choose_driver(Settings(data_dir=tmp_path, compute={"virt_driver": None}))
    assert auto.name == "libvirt" and "virt_type=" in auto.reason
    embedded = embedded_choice(Settings(data_dir=tmp_path, compute={"virt_driver": None}))
    assert embedded.name == "fake"  # no real guests by surprise in an embedded stack
    forced = await choose_driver(Settings(data_dir=tmp_path, compute={"virt_driver": "fake"}))
    assert forced.name == "fake"
