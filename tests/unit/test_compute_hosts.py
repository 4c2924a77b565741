"""Host liveness and zones: the one place that decides whether a compute host is up."""

from __future__ import annotations

import datetime as dt

from stratus.compute.hosts import (
    COMPUTE_BINARY,
    DEFAULT_DOWN_TIME,
    INTERNAL_ZONE,
    ComputeServiceRecord,
    is_up,
    zone_of,
    zone_states,
)
from stratus.core.config import Settings

NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def test_a_host_is_up_until_its_heartbeat_is_older_than_the_down_time() -> None:
    assert is_up(NOW - dt.timedelta(seconds=60), False, 60.0, NOW)
    assert not is_up(NOW - dt.timedelta(seconds=61), False, 60.0, NOW)
    assert not is_up(None, False, 60.0, NOW)
    assert not is_up(NOW, True, 60.0, NOW)  # forced down


def test_the_default_down_time_is_the_settings_default() -> None:
    assert Settings().compute.service_down_time == DEFAULT_DOWN_TIME


def _service(host: str, binary: str, zone: str, disabled: bool) -> ComputeServiceRecord:
    return ComputeServiceRecord(host=host, binary=binary, zone=zone, disabled=disabled)


def test_a_zone_is_available_with_one_enabled_compute_service() -> None:
    services = [_service("a", COMPUTE_BINARY, "az1", True),
                _service("b", COMPUTE_BINARY, "az1", False),
                _service("c", COMPUTE_BINARY, "az2", True),
                _service("d", "nova-scheduler", "az3", False)]
    assert zone_states(services) == {"az1": True, "az2": False}
    assert zone_of(services[3]) == INTERNAL_ZONE
    assert zone_of(services[0]) == "az1"
