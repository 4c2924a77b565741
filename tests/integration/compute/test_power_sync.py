"""Power-state sync on a whole in-process cloud: the fake hypervisor changes guests behind
the agent's back, the sync brings the database (and the API) in line."""

from __future__ import annotations

import asyncio
import time

from stratus.compute.agent.power_sync import PowerStateSync
from stratus.compute.virt.fake import FakeDriver
from stratus.core.context import RequestContext
from tests.integration.compute import test_boot_flow
from tests.integration.compute.test_boot_flow import Cloud, boot_body, upload_image

cloud = test_boot_flow.cloud  # the whole in-process cloud, three fake hosts

CTX = RequestContext(user_id="compute-agent", project_id="service", roles=["service"])


async def _boot(cloud: Cloud, image_id: str, names: list[str]) -> list[dict[str, object]]:
    ids = []
    for name in names:
        created = await cloud.compute("POST", "/servers", json=boot_body(image_id, name=name))
        assert created.status_code == 202, created.text
        ids.append(created.json()["server"]["id"])
    return [await cloud.wait_for(i, "ACTIVE") for i in ids]


def _driver(cloud: Cloud, server: dict[str, object]) -> tuple[FakeDriver, PowerStateSync]:
    agent = next(a for a in cloud.stack.agents if a.host == server["OS-EXT-SRV-ATTR:host"])
    assert isinstance(agent.driver, FakeDriver)
    return agent.driver, agent.power_sync


async def test_sync_follows_the_hypervisor(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)
    crashed, shut, vanished, busy, fine = await _boot(
        cloud, image_id, ["crashed", "shut", "vanished", "busy", "fine"])
    _driver(cloud, crashed)[0].crash(str(crashed["id"]))
    await _driver(cloud, shut)[0].power_off(str(shut["id"]))       # shut down by itself
    await _driver(cloud, vanished)[0].destroy(str(vanished["id"]))  # gone from the host
    await _driver(cloud, busy)[0].power_off(str(busy["id"]))
    async with cloud.stack.compute.service() as svc:  # type: ignore[union-attr]
        (await svc.instances.get(str(busy["id"]))).task_state = "rebooting"

    applied: dict[str, object] = {}
    for agent in cloud.stack.agents:
        applied.update(await agent.power_sync.run_once(CTX))
    assert set(applied) == {crashed["id"], shut["id"], vanished["id"]}

    for server in (crashed, shut):
        shown = (await cloud.compute("GET", f"/servers/{server['id']}")).json()["server"]
        assert shown["status"] == "SHUTOFF"
        assert shown["OS-EXT-STS:power_state"] == 4
        assert shown["OS-EXT-STS:task_state"] is None
    # The crashed guest was really powered off, not just recorded.
    info = await _driver(cloud, crashed)[0].get_info(str(crashed["id"]))
    assert info.power_state == 4
    gone = (await cloud.compute("GET", f"/servers/{vanished['id']}")).json()["server"]
    assert (gone["status"], gone["OS-EXT-STS:power_state"]) == ("ACTIVE", 0)
    left = (await cloud.compute("GET", f"/servers/{busy['id']}")).json()["server"]
    assert left["OS-EXT-STS:power_state"] == 1, "an instance with a task is left alone"
    ok = (await cloud.compute("GET", f"/servers/{fine['id']}")).json()["server"]
    assert (ok["status"], ok["OS-EXT-STS:power_state"]) == ("ACTIVE", 1)

    # A stopped instance can be started again after the sync stopped it.
    started = await cloud.compute("POST", f"/servers/{shut['id']}/action",
                                  json={"os-start": None})
    assert started.status_code == 202
    await cloud.wait_for(str(shut["id"]), "ACTIVE")

    # A second pass finds nothing more to do.
    for agent in cloud.stack.agents:
        again = await agent.power_sync.run_once(CTX)
        assert set(again) <= {vanished["id"]} and not again.get(str(busy["id"]))
    assert not any([await a.power_sync.run_once(CTX) for a in cloud.stack.agents])


async def test_a_guest_running_while_stopped_is_powered_off(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)
    (server,) = await _boot(cloud, image_id, ["runaway"])
    assert (await cloud.compute("POST", f"/servers/{server['id']}/action",
                                json={"os-stop": None})).status_code == 202
    await cloud.wait_for(str(server["id"]), "SHUTOFF")
    driver, sync = _driver(cloud, server)
    await driver.power_on(str(server["id"]))  # someone started it behind our back
    assert set(await sync.run_once(CTX)) == {server["id"]}
    assert (await driver.get_info(str(server["id"]))).power_state == 4
    shown = (await cloud.compute("GET", f"/servers/{server['id']}")).json()["server"]
    assert (shown["status"], shown["OS-EXT-STS:power_state"],
            shown["OS-EXT-STS:task_state"]) == ("SHUTOFF", 4, None)


async def test_the_periodic_sync_runs_on_its_own(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)
    (server,) = await _boot(cloud, image_id, ["periodic"])
    driver, sync = _driver(cloud, server)
    fast = PowerStateSync(sync.host, driver, sync.conductor, interval=0.05)
    fast.start()
    try:
        driver.crash(str(server["id"]))
        deadline = time.monotonic() + 10
        while True:
            shown = (await cloud.compute("GET", f"/servers/{server['id']}")).json()["server"]
            if shown["status"] == "SHUTOFF":
                break
            assert time.monotonic() < deadline, shown["status"]
            await asyncio.sleep(0.05)
    finally:
        await fast.stop()
