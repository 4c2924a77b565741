"""The power-state sync's decisions (``stratus.compute.agent.power_sync.decide``)."""

from __future__ import annotations

import pytest

from stratus.compute import states
from stratus.compute.agent.power_sync import decide
from stratus.compute.virt.driver import PowerState

P = PowerState


@pytest.mark.parametrize(("vm_state", "db", "hv", "power", "vm", "power_off"), [
    (states.ACTIVE, P.RUNNING, P.SHUTDOWN, P.SHUTDOWN, states.STOPPED, False),
    (states.ACTIVE, P.RUNNING, P.CRASHED, P.SHUTDOWN, states.STOPPED, True),
    (states.ACTIVE, P.RUNNING, P.SUSPENDED, P.SHUTDOWN, states.STOPPED, True),
    (states.ACTIVE, P.RUNNING, P.PAUSED, P.PAUSED, None, False),
    (states.ACTIVE, P.RUNNING, P.NOSTATE, P.NOSTATE, None, False),
    (states.STOPPED, P.SHUTDOWN, P.RUNNING, P.SHUTDOWN, None, True),
    (states.STOPPED, P.SHUTDOWN, P.NOSTATE, P.NOSTATE, None, False),
    (states.STOPPED, P.SHUTDOWN, P.CRASHED, P.CRASHED, None, False),
    (states.ERROR, P.NOSTATE, P.RUNNING, P.RUNNING, None, False),
    # A paused guest that went down by itself: the instance is stopped, as Nova's sync does.
    (states.PAUSED, P.PAUSED, P.SHUTDOWN, P.SHUTDOWN, states.STOPPED, False),
    (states.PAUSED, P.PAUSED, P.CRASHED, P.SHUTDOWN, states.STOPPED, True),
    # Suspended and rescued instances only have their power state recorded.
    (states.SUSPENDED, P.SUSPENDED, P.SHUTDOWN, P.SHUTDOWN, None, False),
    (states.SUSPENDED, P.SUSPENDED, P.RUNNING, P.RUNNING, None, False),
    (states.RESCUED, P.RUNNING, P.SHUTDOWN, P.SHUTDOWN, None, False),
    (states.RESCUED, P.RUNNING, P.CRASHED, P.CRASHED, None, False),
])
def test_decisions(vm_state: str, db: PowerState, hv: PowerState, power: PowerState,
                   vm: str | None, power_off: bool) -> None:
    decision = decide(vm_state, int(db), hv)
    assert decision is not None
    assert (decision.power_state, decision.vm_state, decision.power_off) == (power, vm,
                                                                              power_off)
    assert decision.reason


@pytest.mark.parametrize(("vm_state", "power"), [
    (states.ACTIVE, P.RUNNING), (states.STOPPED, P.SHUTDOWN), (states.ERROR, P.NOSTATE),
    (states.PAUSED, P.PAUSED), (states.SUSPENDED, P.SUSPENDED), (states.RESCUED, P.RUNNING)])
def test_nothing_to_do_when_all_agrees(vm_state: str, power: PowerState) -> None:
    assert decide(vm_state, int(power), power) is None
