"""A compute host asks for its servers in its start's report only: the agent reconciles its
guests with them then; its periodic heartbeats ignore the answer, so they do not ask for it
(on the conductor, a read of every server of the host on each report)."""

from __future__ import annotations

from typing import Any, cast

from stratus.compute.agent.manager import ComputeAgentManager
from stratus.compute.objects import HostReport
from stratus.compute.rpcapi import ConductorAPI
from stratus.compute.virt.fake import FakeDriver
from stratus.core.context import RequestContext


class Conductor:
    def __init__(self) -> None:
        self.reports: list[HostReport] = []

    async def host_report(self, ctx: RequestContext, report: HostReport,
                          **kwargs: Any) -> list[str]:
        self.reports.append(report)
        return []

    async def host_instance_states(self, ctx: RequestContext, host: str) -> list[Any]:
        return []


async def test_only_the_starts_report_asks_for_the_hosts_instances() -> None:
    conductor = Conductor()
    agent = ComputeAgentManager("host-1", FakeDriver(), cast(ConductorAPI, conductor))
    await agent.start()
    try:
        await agent._beat()
    finally:
        await agent.stop()
    first, *beats = conductor.reports
    assert first.with_instances
    assert beats and not any(beat.with_instances for beat in beats)
