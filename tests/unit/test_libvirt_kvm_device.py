"""/dev/kvm's permissions as libvirt needs them: who may open it, what is wrong, the mend."""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path

import pytest

from stratus.compute.virt.libvirt import host

NOBODY = pwd.getpwnam("nobody")
NOBODY_GROUP = grp.getgrgid(NOBODY.pw_gid).gr_name


@pytest.mark.parametrize(("mode", "owner", "group", "uid", "gids", "expected"), [
    (0o600, 0, 0, 0, set(), True),            # root opens anything
    (0o600, 0, 0, 1000, {1000}, False),       # root's alone
    (0o660, 0, 115, 1000, {115}, True),       # through the group
    (0o640, 0, 115, 1000, {115}, False),      # the group may only read
    (0o606, 0, 115, 1000, {115}, False),      # others' bits do not help a group member
    (0o666, 0, 0, 1000, {1000}, True),        # anyone
    (0o600, 1000, 0, 1000, set(), True),      # the owner
])
def test_who_may_open_read_write(mode: int, owner: int, group: int, uid: int, gids: set[int],
                                 expected: bool) -> None:
    assert host.may_open_read_write(stat.S_IFCHR | mode, owner, group, uid, gids) is expected


def test_a_device_only_root_may_open_is_a_problem_and_is_mended(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    device = tmp_path / "kvm"
    device.touch()
    if os.geteuid() == 0:
        os.chown(device, 0, 0)
    device.chmod(0o600)
    problem = host.kvm_device_problem(device, "nobody")
    assert problem is not None and "not open to nobody" in problem
    monkeypatch.setattr(host, "KVM_GROUP", NOBODY_GROUP)
    host.ensure_kvm_device_access(device, "nobody")
    if os.geteuid() != 0:  # only root changes it
        assert stat.S_IMODE(device.stat().st_mode) == 0o600
        return
    assert device.stat().st_gid == NOBODY.pw_gid
    assert stat.S_IMODE(device.stat().st_mode) == host.KVM_MODE
    assert host.kvm_device_problem(device, "nobody") is None


def test_no_device_or_no_user_is_no_problem(tmp_path: Path) -> None:
    assert host.kvm_device_problem(tmp_path / "absent", "nobody") is None
    device = tmp_path / "kvm"
    device.touch()
    assert host.kvm_device_problem(device, "no-such-user-here") is None
