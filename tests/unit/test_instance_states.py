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


def _names(prefixes: tuple[str, ...]) -> set[str]:
    """Every state string the module names, and every prefix ``status`` tests for."""
    named = {v for k, v in vars(states).items() if k.isupper() and isinstance(v, str)}
    return named | {p + suffix for p in prefixes for suffix in ("", "_x")}


def test_a_status_filter_reads_every_vm_state_that_can_show_it() -> None:
    """The vm_states a status filter reads in SQL include every one whose servers show
    that status, whatever their task state; UNKNOWN reads them all."""
    vm_states = _names(()) | {"melted"}
    task_states = _names(("rebuild", "resize")) | {None, "migrating", "resize_reverting"}
    for vm_state in vm_states:
        for task_state in task_states:
            shown = states.status(vm_state, task_state)
            showing = states.vm_states_showing(shown)
            assert showing is None or vm_state in showing, (vm_state, task_state, shown)
    assert states.vm_states_showing("BUILD") == {states.BUILDING}
    assert states.vm_states_showing("UNKNOWN") is None
    assert states.vm_states_showing("NOT-A-STATUS") == set()
