"""A compute host reports a failed build to the conductor even when the conductor cannot
record the build's action event (its database restarting): otherwise the instance would
stay in BUILD for good (found by the chaos run during a PostgreSQL restart)."""

from __future__ import annotations

from typing import Any, cast

from stratus.compute.agent.manager import ComputeAgentManager
from stratus.compute.objects import FlavorInfo, InstanceRecord
from stratus.compute.rpcapi import ConductorAPI
from stratus.compute.virt.fake import FakeDriver
from stratus.core.bus.errors import RemoteError
from stratus.core.context import RequestContext


class Conductor:
    """The conductor while its database is away: every write fails as it would."""

    def __init__(self) -> None:
        self.failed: list[dict[str, Any]] = []

    async def instance_update(self, ctx: RequestContext, instance_uuid: str,
                              *args: Any, **kwargs: Any) -> None:
        raise RemoteError("ConnectionRefusedError", "[Errno 111] Connect call failed")

    async def action_event(self, ctx: RequestContext, instance_uuid: str, event: str,
                           **kwargs: Any) -> None:
        raise RemoteError("ConnectionRefusedError", "[Errno 111] Connect call failed")

    async def build_failed(self, ctx: RequestContext, instance_uuid: str, host: str,
                           fault: Any, alternates: list[str], attempt: int,
                           admin_password: str | None = None) -> None:
        self.failed.append({"uuid": instance_uuid, "host": host, "fault": fault.message})


async def test_a_failed_build_is_reported_though_its_event_cannot_be_recorded() -> None:
    conductor = Conductor()
    agent = ComputeAgentManager("chaos-host", FakeDriver(), cast(ConductorAPI, conductor))
    instance = InstanceRecord(
        uuid="vm-1", name="vm-1", hostname="vm-1", project_id="p", user_id="u",
        flavor=FlavorInfo(id="1", name="tiny", vcpus=1, ram=512, disk=1), image_ref="img",
        vm_state="building")
    await agent._build_tracked(RequestContext(), instance, alternates=[], attempt=1)
    assert [(f["uuid"], f["host"]) for f in conductor.failed] == [("vm-1", "chaos-host")]
    assert "Connect call failed" in conductor.failed[0]["fault"]
