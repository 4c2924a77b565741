"""The ``Stack`` starts each service's runtime once and stops them in reverse order; the
registry lists every service's units in ``stratus up``'s order."""

from __future__ import annotations

from pathlib import Path

from stratus.core.config import Settings
from stratus.stack import Stack
from stratus.units import UNITS


class FakeRuntime:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    async def start(self) -> None:
        self.log.append(f"start {self.name}")

    async def stop(self) -> None:
        self.log.append(f"stop {self.name}")


async def test_a_runtime_is_made_and_started_once_and_stopped_with_the_stack(
        tmp_path: Path) -> None:
    log: list[str] = []
    stack = Stack(Settings(data_dir=tmp_path))
    assert stack.compute is None and stack.running("compute") is None
    first = await stack.runtime("compute", lambda: FakeRuntime("compute", log))
    again = await stack.runtime("compute", lambda: FakeRuntime("other", log))
    await stack.runtime("network", lambda: FakeRuntime("network", log))
    assert again is first
    assert stack.compute is first  # type: ignore[comparison-overlap]
    assert log == ["start compute", "start network"]
    await stack.aclose()
    assert log == ["start compute", "start network", "stop network", "stop compute"]


def test_the_registry_holds_every_unit_in_start_order() -> None:
    assert list(UNITS) == [
        "identity-api", "image-api", "compute-api", "placement-api",
        "conductor", "scheduler", "compute-agent",
        "metadata-api", "console-proxy", "network-api", "dhcp-agent", "l2-agent", "l3-agent",
        "volume-api", "volume-manager", "dashboard"]
