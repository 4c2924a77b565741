"""The API status of each (vm_state, task_state), as Nova's state map gives it."""

import pytest

from stratus.compute import states


@pytest.mark.parametrize(("vm_state", "task_state", "expected"), [
    ("building", "scheduling", "BUILD"),
    ("building", None, "BUILD"),
    ("building", "spawning", "BUILD"),
    ("active", None, "ACTIVE"),
    ("active", "powering-off", "ACTIVE"),
    ("active", "rebooting", "REBOOT"),
    ("active", "reboot_started", "REBOOT"),
    ("active", "rebooting_hard", "HARD_REBOOT"),
    ("active", "reboot_pending_hard", "HARD_REBOOT"),
    ("active", "rebuilding", "REBUILD"),
    ("active", "resize_prep", "RESIZE"),
    ("active", "migrating", "MIGRATING"),
    ("active", "updating_password", "PASSWORD"),
    ("stopped", None, "SHUTOFF"),
    ("stopped", "powering-on", "SHUTOFF"),
    ("stopped", "resize_migrating", "RESIZE"),
    ("resized", None, "VERIFY_RESIZE"),
    ("resized", "resize_reverting", "REVERT_RESIZE"),
    ("error", None, "ERROR"),
    ("error", "rebuild_spawning", "REBUILD"),
    ("error", "deleting", "ERROR"),
    ("deleted", None, "DELETED"),
    ("soft-delete", None, "SOFT_DELETED"),
    ("shelved_offloaded", None, "SHELVED_OFFLOADED"),
    ("paused", None, "PAUSED"),
    ("rescued", None, "RESCUE"),
    ("melted", None, "UNKNOWN"),
])
def test_status(vm_state: str, task_state: str | None, expected: str) -> None:
    assert states.status(vm_state, task_state) == expected
