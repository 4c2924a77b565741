"""The launch flow in one process: compute-api → scheduler → compute agent ↔ conductor.

Everything is real except the hypervisor (the fake driver): the memory bus, the identity,
image and compute APIs over HTTP, the database (SQLite and PostgreSQL).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from stratus.compute import boot, states
from stratus.compute.boot import BootRequest
from stratus.compute.errors import QuotaExceeded
from stratus.compute.objects import InstanceUpdate
from stratus.compute.placement import Placement
from stratus.compute.rpcapi import ConductorAPI
from stratus.compute.virt.fake import FakeDriver
from stratus.core.config import Settings
from stratus.core.context import RequestContext
from stratus.stack import Stack
from tests.integration.asgi import served_stack
from tests.integration.compute.conftest import (
    ADMIN_PASSWORD,
    ROOT,
    assert_compute_error,
    auth_body,
)

UNITS = ["identity-api", "image-api", "compute-api", "conductor", "scheduler", "compute-agent",
         "network-api"]


@dataclass
class Cloud:
    client: httpx.AsyncClient
    token: str
    stack: Stack

    def headers(self, version: str | None = "2.96") -> dict[str, str]:
        headers = {"X-Auth-Token": self.token}
        if version:
            headers["OpenStack-API-Version"] = f"compute {version}"
        return headers

    async def compute(self, method: str, path: str, version: str | None = "2.96",
                      **kwargs: Any) -> httpx.Response:
        return await self.client.request(method, f"/compute/v2.1{path}",
                                         headers=self.headers(version), **kwargs)

    async def wait_for(self, server_id: str, status: str) -> dict[str, Any]:
        deadline = time.monotonic() + 20
        while True:
            response = await self.compute("GET", f"/servers/{server_id}")
            if status == "DELETED" and response.status_code == 404:
                return {}
            server: dict[str, Any] = response.json()["server"]
            if server["status"] == status:
                return server
            assert time.monotonic() < deadline, f"{server_id} stuck in {server['status']}"
            await asyncio.sleep(0.02)


@pytest.fixture
async def cloud(db_url: str, tmp_path: Path) -> AsyncIterator[Cloud]:
    settings = Settings(data_dir=tmp_path, database_url=db_url, public_url=ROOT,
                        admin_password=ADMIN_PASSWORD, identity={"bcrypt_rounds": 4},
                        network={"backend": "noop"},
                        compute={"fake_hosts": 3, "host": "node", "fake_memory_mb": 4096,
                                 "fake_vcpus": 4, "reserved_host_memory_mb": 0,
                                 "ram_allocation_ratio": 1.0, "cpu_allocation_ratio": 1.0})
    async with started_cloud(settings) as started:
        yield started


@contextlib.asynccontextmanager
async def started_cloud(settings: Settings, units: list[str] = UNITS,
                        http_timeout: float = 5.0) -> AsyncIterator[Cloud]:
    """A cloud of ``units`` in this process (bootstrapped, one ASGI app through which the
    services reach each other) with an admin token scoped to the admin project; closed on
    exit. ``http_timeout``: the client's per-request timeout."""
    async with served_stack(settings, units) as (stack, app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=ROOT,
            timeout=http_timeout) as client:
        response = await client.post("/identity/v3/auth/tokens",
                                     json=auth_body("admin", ADMIN_PASSWORD, "admin"))
        yield Cloud(client, response.headers["X-Subject-Token"], stack)


async def upload_image(cloud: Cloud) -> str:
    created = await cloud.client.post("/image/v2/images", headers=cloud.headers(None), json={
        "name": "tiny", "disk_format": "raw", "container_format": "bare"})
    assert created.status_code == 201, created.text
    image_id: str = created.json()["id"]
    upload = await cloud.client.put(f"/image/v2/images/{image_id}/file",
                                    headers={**cloud.headers(None),
                                             "Content-Type": "application/octet-stream"},
                                    content=b"\0" * 4096)
    assert upload.status_code == 204, upload.text
    return image_id


def boot_body(image_id: str, name: str = "vm", flavor: str = "1", **extra: Any) -> dict[str, Any]:
    return {"server": {"name": name, "imageRef": image_id, "flavorRef": flavor,
                       "networks": "none", "min_count": 1, "max_count": 1,
                       "block_device_mapping_v2": [{
                           "uuid": image_id, "boot_index": 0, "source_type": "image",
                           "destination_type": "local", "delete_on_termination": True}],
                       **extra}}


async def test_boot_to_active_then_stop_start_reboot_console_delete(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)
    created = await cloud.compute("POST", "/servers", json=boot_body(image_id))
    assert created.status_code == 202, created.text
    body = created.json()["server"]
    assert set(body) == {"id", "links", "OS-DCF:diskConfig", "security_groups", "adminPass"}
    server_id = body["id"]
    assert created.headers["Location"].endswith(f"/servers/{server_id}")

    server = await cloud.wait_for(server_id, "ACTIVE")
    assert server["OS-EXT-STS:vm_state"] == "active"
    assert server["OS-EXT-STS:task_state"] is None
    assert server["OS-EXT-STS:power_state"] == 1
    assert server["OS-EXT-SRV-ATTR:host"].startswith("node")
    assert server["flavor"]["original_name"] == "m1.tiny"  # embedded from 2.47
    assert server["image"]["id"] == image_id
    assert server["OS-SRV-USG:launched_at"] is not None

    old = (await cloud.compute("GET", f"/servers/{server_id}", version=None)).json()["server"]
    assert old["flavor"] == {"id": "1", "links": [
        {"rel": "bookmark", "href": f"{ROOT}/compute/flavors/1"}]}
    for newer in ("locked", "description", "tags", "server_groups", "host_status"):
        assert newer not in old

    console = await cloud.compute("POST", f"/servers/{server_id}/action",
                                  json={"os-getConsoleOutput": {"length": 2}})
    assert console.status_code == 200
    assert len(console.json()["output"].split("\n")) == 2

    assert (await cloud.compute("POST", f"/servers/{server_id}/action",
                                json={"os-stop": None})).status_code == 202
    stopped = await cloud.wait_for(server_id, "SHUTOFF")
    assert stopped["OS-EXT-STS:power_state"] == 4
    again = await cloud.compute("POST", f"/servers/{server_id}/action", json={"os-stop": None})
    assert_compute_error(again, 409, "conflictingRequest")
    assert (await cloud.compute("POST", f"/servers/{server_id}/action",
                                json={"os-start": None})).status_code == 202
    await cloud.wait_for(server_id, "ACTIVE")
    assert (await cloud.compute("POST", f"/servers/{server_id}/action",
                                json={"reboot": {"type": "HARD"}})).status_code == 202
    await cloud.wait_for(server_id, "ACTIVE")

    actions = (await cloud.compute("GET", f"/servers/{server_id}/os-instance-actions")).json()
    assert [a["action"] for a in actions["instanceActions"]] == [
        "reboot", "start", "stop", "create"]
    create_request = actions["instanceActions"][-1]["request_id"]
    create = (await cloud.compute(
        "GET", f"/servers/{server_id}/os-instance-actions/{create_request}")).json()
    events = {e["event"]: e["result"] for e in create["instanceAction"]["events"]}
    assert events == {"conductor_schedule_and_build_instances": "Success",
                      "compute__do_build_and_run_instance": "Success"}

    deleted = await cloud.compute("DELETE", f"/servers/{server_id}")
    assert deleted.status_code == 204 and deleted.content == b""
    await cloud.wait_for(server_id, "DELETED")


async def test_a_build_without_volumes_goes_from_networking_to_spawning_in_one_call(
        cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no volume to connect the host asks the conductor for networking → spawning in
    one call (one bus round trip and one transaction fewer), not through
    block_device_mapping; the create action's events and the server are as before."""
    updates: list[tuple[str | None, list[str | None] | None]] = []
    sent = ConductorAPI.instance_update

    async def recorded(self: ConductorAPI, ctx: Any, instance_uuid: str,
                       update: InstanceUpdate, *args: Any, **kwargs: Any) -> Any:
        expected = args[0] if args else kwargs.get("expected_task_state")
        updates.append((update.task_state, expected))
        return await sent(self, ctx, instance_uuid, update, *args, **kwargs)

    monkeypatch.setattr(ConductorAPI, "instance_update", recorded)
    image_id = await upload_image(cloud)
    created = await cloud.compute("POST", "/servers", json=boot_body(image_id))
    assert created.status_code == 202, created.text
    server_id = created.json()["server"]["id"]
    await cloud.wait_for(server_id, "ACTIVE")
    assert updates == [(states.SPAWNING, [states.NETWORKING]), (None, [states.SPAWNING])]
    actions = (await cloud.compute("GET", f"/servers/{server_id}/os-instance-actions")).json()
    request_id = actions["instanceActions"][0]["request_id"]
    create = (await cloud.compute(
        "GET", f"/servers/{server_id}/os-instance-actions/{request_id}")).json()
    assert sorted((e["event"], e["result"]) for e in create["instanceAction"]["events"]) == [
        ("compute__do_build_and_run_instance", "Success"),
        ("conductor_schedule_and_build_instances", "Success")]


async def test_a_boot_is_taken_up_by_its_scheduler_not_by_a_call_from_its_host(
        cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scheduler's claim moves the instance to ``networking`` and starts the build's
    event, and its cast carries the record: the host builds from it with no ``begin_build``
    call to the conductor (a bus round trip and a transaction fewer per boot). The build's
    event names the host and finishes Success, as before."""
    taken_up: list[str] = []
    sent = ConductorAPI.begin_build

    async def recorded(self: ConductorAPI, ctx: Any, instance_uuid: str,
                       *args: Any, **kwargs: Any) -> Any:
        taken_up.append(instance_uuid)
        return await sent(self, ctx, instance_uuid, *args, **kwargs)

    monkeypatch.setattr(ConductorAPI, "begin_build", recorded)
    image_id = await upload_image(cloud)
    created = await cloud.compute("POST", "/servers", json=boot_body(image_id))
    assert created.status_code == 202, created.text
    server_id = created.json()["server"]["id"]
    server = await cloud.wait_for(server_id, "ACTIVE")
    assert taken_up == []
    actions = (await cloud.compute("GET", f"/servers/{server_id}/os-instance-actions")).json()
    request_id = actions["instanceActions"][0]["request_id"]
    create = (await cloud.compute(
        "GET", f"/servers/{server_id}/os-instance-actions/{request_id}")).json()
    events = {e["event"]: e for e in create["instanceAction"]["events"]}
    build = events["compute__do_build_and_run_instance"]
    assert (build["result"], build["host"]) == (
        "Success", server["OS-EXT-SRV-ATTR:host"]), build
    assert events["conductor_schedule_and_build_instances"]["result"] == "Success"


async def test_no_valid_host_is_an_error_with_a_fault(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)
    created = await cloud.compute("POST", "/servers", json=boot_body(image_id, flavor="4"))
    server = await cloud.wait_for(created.json()["server"]["id"], "ERROR")
    assert server["OS-EXT-STS:task_state"] is None
    assert "ResourceFilter removed 3 of 3 hosts" in server["fault"]["message"]
    assert server["fault"]["code"] == 500


async def test_failed_build_is_rescheduled_to_an_alternate(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)
    drivers = {agent.host: agent.driver for agent in cloud.stack.agents}
    assert len(drivers) == 3
    for driver in drivers.values():
        assert isinstance(driver, FakeDriver)
        driver.fail_next("spawn", "disk on fire")
    # Every host fails once: the first attempt and the rescheduled ones all fail...
    created = await cloud.compute("POST", "/servers", json=boot_body(image_id, name="a"))
    failed = await cloud.wait_for(created.json()["server"]["id"], "ERROR")
    assert "disk on fire" in failed["fault"]["message"]
    tried = [host for host, d in drivers.items() if ("spawn", failed["id"]) in d.calls]
    assert len(tried) == 3  # first host plus two alternates: MAX_BUILD_ATTEMPTS
    # ... and no claim is left behind by the three failed attempts.
    async with cloud.stack.compute.db.session() as session:  # type: ignore[union-attr]
        assert await Placement(session).allocations_of(failed["id"]) == {}

    # Now every host works again: a build that fails once lands on an alternate.
    next(iter(drivers.values())).fail_next("spawn", "flaky")
    created = await cloud.compute("POST", "/servers", json=boot_body(image_id, name="b"))
    server = await cloud.wait_for(created.json()["server"]["id"], "ACTIVE")
    spawned_on = [h for h, d in drivers.items() if ("spawn", server["id"]) in d.calls]
    assert server["OS-EXT-SRV-ATTR:host"] == spawned_on[-1]


async def test_quota_and_bad_input(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)
    too_many = await cloud.compute("POST", "/servers", json=boot_body(
        image_id, min_count=11, max_count=11))
    assert "Quota exceeded for instances" in assert_compute_error(too_many, 403, "forbidden")
    listed = (await cloud.compute("GET", "/servers")).json()["servers"]
    assert listed == []  # nothing was created
    bad_flavor = await cloud.compute("POST", "/servers", json=boot_body(image_id, flavor="99"))
    assert_compute_error(bad_flavor, 400, "badRequest")
    bad_image = await cloud.compute("POST", "/servers", json=boot_body(
        "00000000-0000-0000-0000-000000000000"))
    assert_compute_error(bad_image, 400, "badRequest")
    no_networks = boot_body(image_id)
    del no_networks["server"]["networks"]
    assert_compute_error(await cloud.compute("POST", "/servers", json=no_networks), 400,
                         "badRequest")
    bad_key = await cloud.compute("POST", "/servers", json=boot_body(image_id, key_name="nope"))
    assert_compute_error(bad_key, 400, "badRequest")
    bad_user_data = await cloud.compute("POST", "/servers", json=boot_body(
        image_id, user_data="not base64!"))
    assert_compute_error(bad_user_data, 400, "badRequest")
    # Malformed ids and addresses are a 400 before anything is looked up.
    for networks in ([{"uuid": "a-b-c-d-e-f-g-h-i-j", "fixed_ip": "10.0.1.1"}],
                     [{"port": "not-a-port-id"}],
                     [{"uuid": "6a1c5f33-0f0e-4b8a-9b5c-6b8b1c6c7d01", "fixed_ip": "10.0.1"}]):
        bad_network = await cloud.compute("POST", "/servers",
                                          json=boot_body(image_id, networks=networks))
        assert_compute_error(bad_network, 400, "badRequest")
    for field, value in (("accessIPv6", "notvalid"), ("accessIPv4", "1.2.3"),
                         ("accessIPv4", "::1")):
        bad_ip = await cloud.compute("POST", "/servers",
                                     json=boot_body(image_id, **{field: value}))
        assert field in assert_compute_error(bad_ip, 400, "badRequest")
    assert (await cloud.compute("GET", "/servers")).json()["servers"] == []


async def test_a_limit_set_after_unlimited_boots_is_enforced(cloud: Cloud) -> None:
    """Once a project's boots found its quota unlimited, they take its quota lock shared;
    a limit set afterwards is still counted against (the shared check finds it and the
    boot runs again under the exclusive lock)."""
    image_id = await upload_image(cloud)
    token = await cloud.client.get("/identity/v3/auth/tokens", headers={
        **cloud.headers(None), "X-Subject-Token": cloud.token})
    project_id = token.json()["token"]["project"]["id"]
    unlimited = {"quota_set": {"instances": -1, "cores": -1, "ram": -1}}
    set_unlimited = await cloud.compute("PUT", f"/os-quota-sets/{project_id}", json=unlimited)
    assert set_unlimited.status_code == 200, set_unlimited.text
    for name in ("a", "b"):
        created = await cloud.compute("POST", "/servers", json=boot_body(image_id, name=name))
        assert created.status_code == 202, created.text
    limited = await cloud.compute("PUT", f"/os-quota-sets/{project_id}",
                                  json={"quota_set": {"instances": 3}})
    assert limited.status_code == 200, limited.text
    third = await cloud.compute("POST", "/servers", json=boot_body(image_id, name="c"))
    assert third.status_code == 202, third.text
    over = await cloud.compute("POST", "/servers", json=boot_body(image_id, name="d"))
    assert "Quota exceeded for instances" in assert_compute_error(over, 403, "forbidden")
    assert len((await cloud.compute("GET", "/servers")).json()["servers"]) == 3


async def test_access_addresses_are_kept_in_their_shortest_form(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)
    created = await cloud.compute("POST", "/servers", json=boot_body(
        image_id, accessIPv4="192.0.2.7",
        accessIPv6="0000:0000:0000:0000:0000:babe:220.12.22.2"))
    assert created.status_code == 202, created.text
    shown = await cloud.wait_for(created.json()["server"]["id"], "ACTIVE")
    assert shown["accessIPv4"] == "192.0.2.7"
    assert shown["accessIPv6"] == "::babe:dc0c:1602"
    updated = await cloud.compute("PUT", f"/servers/{shown['id']}", json={
        "server": {"accessIPv6": "2001:DB8:0:0:0:0:0:1"}})
    assert updated.json()["server"]["accessIPv6"] == "2001:db8::1"
    refused = await cloud.compute("PUT", f"/servers/{shown['id']}", json={
        "server": {"accessIPv6": "2001:db8::zz"}})
    assert_compute_error(refused, 400, "badRequest")


async def test_a_host_that_dies_mid_build_leaves_nothing_stuck(cloud: Cloud) -> None:
    """Builds on a host that stops answering end in ERROR with their claims freed; a
    restarted agent fails the builds it had in flight."""
    from sqlalchemy import select

    from stratus.compute.conductor.manager import ConductorManager
    from stratus.compute.models import ComputeServiceRecord
    from stratus.compute.rpcapi import ComputeAgentAPI
    from stratus.core.context import RequestContext

    image_id = await upload_image(cloud)
    # The first host's driver takes "forever" to spawn: the host dies mid-build.
    victim = cloud.stack.agents[0]
    assert isinstance(victim.driver, FakeDriver)
    gate = asyncio.Event()
    original_spawn = victim.driver.spawn

    async def hanging_spawn(guest: Any) -> None:
        await gate.wait()
        await original_spawn(guest)

    victim.driver.spawn = hanging_spawn  # type: ignore[method-assign]
    for other in cloud.stack.agents[1:]:  # the others are full, so the victim gets it
        other.driver.fail_next("spawn", "full", times=5)  # type: ignore[attr-defined]
    created = await cloud.compute("POST", "/servers", json=boot_body(image_id, "doomed"))
    servers = [created.json()["server"]["id"]]
    runtime = cloud.stack.compute
    assert runtime is not None
    deadline = time.monotonic() + 10
    while True:  # wait until the victim has one of them spawning
        spawning = [s for s in servers if (await cloud.compute("GET", f"/servers/{s}")).json()[
            "server"]["OS-EXT-STS:task_state"] == "spawning"]
        if spawning:
            break
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    (stuck,) = spawning[:1]

    # Its heartbeats stop: the conductor's watchdog settles what it left.
    async with runtime.db.session() as session:
        service = await session.scalar(select(ComputeServiceRecord).where(
            ComputeServiceRecord.host == victim.host))
        assert service is not None
        service.last_seen_up = service.last_seen_up.replace(year=2001)  # type: ignore[union-attr]
    watchdog = ConductorManager(runtime, ComputeAgentAPI(await cloud.stack.transport()),
                                service_down_time=60)
    assert stuck in await watchdog.recover_orphans()
    failed = await cloud.wait_for(stuck, "ERROR")
    assert "stopped responding" in failed["fault"]["message"]
    async with runtime.db.session() as session:
        assert await Placement(session).allocations_of(stuck) == {}
    assert await watchdog.recover_orphans() == []  # nothing more to do
    gate.set()
    # The released build runs to its end (refused: the instance is no longer its to finish)
    # before the row is made to look mid-build again, or it would finish that row.
    deadline = time.monotonic() + 20
    while REGISTRY.get_sample_value("stratus_compute_agent_builds_in_flight",
                                    {"host": victim.host}):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)

    # A restarted agent reconciles: a build it had in flight fails cleanly. (The row is
    # put back in the state a crash mid-build leaves it in.)
    ctx = RequestContext(user_id="test", project_id="service", roles=["service"])
    async with runtime.service() as svc:
        row = await svc.instances.get(stuck, include_deleted=True)
        row.vm_state, row.task_state, row.host = "building", "spawning", victim.host
    await victim.reconcile(ctx, [stuck])
    again = await cloud.wait_for(stuck, "ERROR")
    assert "interrupted by a restart" in again["fault"]["message"]
    assert stuck not in await victim.driver.list_guests()


async def test_ports_follow_the_server_and_a_failed_release_is_an_error_not_a_stuck_delete(
        cloud: Cloud) -> None:
    from stratus.compute.agent.network import NetworkError

    admin = {"X-Auth-Token": cloud.token}
    network = (await cloud.client.post("/network/v2.0/networks", headers=admin, json={
        "network": {"name": "blue"}})).json()["network"]
    created = await cloud.client.post("/network/v2.0/subnets", headers=admin, json={
        "subnet": {"network_id": network["id"], "cidr": "10.9.0.0/24", "ip_version": 4}})
    assert created.status_code == 201, created.text
    image = await upload_image(cloud)
    body = boot_body(image, "wired")
    body["server"]["networks"] = [{"uuid": network["id"]}]
    server_id = (await cloud.compute("POST", "/servers", json=body)).json()["server"]["id"]
    server = await cloud.wait_for(server_id, "ACTIVE")
    [address] = server["addresses"]["blue"]
    assert address["addr"].startswith("10.9.0.")
    # /ips: the same addresses per network, version and address only.
    ips = await cloud.compute("GET", f"/servers/{server_id}/ips", version="2.1")
    assert ips.json() == {"addresses": {"blue": [{"version": 4, "addr": address["addr"]}]}}
    one = await cloud.compute("GET", f"/servers/{server_id}/ips/blue")
    assert one.json() == {"blue": [{"version": 4, "addr": address["addr"]}]}
    assert_compute_error(await cloud.compute("GET", f"/servers/{server_id}/ips/red"), 404,
                         "itemNotFound")

    async def ports() -> list[dict[str, Any]]:
        response = await cloud.client.get(f"/network/v2.0/ports?device_id={server_id}",
                                          headers=admin)
        found: list[dict[str, Any]] = response.json()["ports"]
        return found

    [port] = await ports()
    assert port["status"] == "ACTIVE"  # wired: the agent waited for network-vif-plugged
    assert port["fixed_ips"][0]["ip_address"] == address["addr"]

    agent = next(a for a in cloud.stack.agents if a.host == server["OS-EXT-SRV-ATTR:host"])
    assert agent.network is not None
    release = agent.network.deallocate

    async def unreachable(*args: Any, **kwargs: Any) -> None:
        raise NetworkError("The network service is unreachable.")

    agent.network.deallocate = unreachable  # type: ignore[method-assign]
    assert (await cloud.compute("DELETE", f"/servers/{server_id}")).status_code == 204
    failed = await cloud.wait_for(server_id, "ERROR")
    assert "could not be deleted" in failed["fault"]["message"]
    assert len(await ports()) == 1  # nothing was lost track of

    agent.network.deallocate = release  # type: ignore[method-assign]
    assert (await cloud.compute("DELETE", f"/servers/{server_id}")).status_code == 204
    await cloud.wait_for(server_id, "DELETED")
    assert await ports() == []


async def test_a_redelivered_schedule_after_a_lost_cast_builds_once(cloud: Cloud) -> None:
    """The scheduler placed and claimed, then died before casting the build: the request is
    delivered again, and the instance is built on the host it holds, with one claim."""
    from stratus.compute.instances import NewInstance, flavor_info
    from stratus.compute.objects import BuildRequest
    from stratus.compute.rpcapi import ComputeAgentAPI
    from stratus.compute.scheduler.manager import SchedulerManager
    from stratus.compute.scheduler.selector import HostSelector
    from stratus.core.context import RequestContext

    image = await upload_image(cloud)
    runtime = cloud.stack.compute
    bus = cloud.stack.bus
    assert runtime is not None and bus is not None
    token = (await cloud.client.get("/identity/v3/auth/tokens", headers={
        "X-Auth-Token": cloud.token, "X-Subject-Token": cloud.token})).json()["token"]
    ctx = RequestContext(user_id=token["user"]["id"], project_id=token["project"]["id"],
                         roles=["admin"], auth_token=cloud.token)
    async with runtime.service() as svc:
        flavor = await svc.flavors.get("1")
        [instance] = await svc.instances.create(ctx, NewInstance(
            name="redelivered", image_ref=image, flavor=flavor, requested_networks="none"))
        request = BuildRequest(instance_uuids=[instance.uuid], project_id=ctx.project_id,
                               flavor=flavor_info(flavor))

    class LostCast(ComputeAgentAPI):
        async def build_and_run_instance(self, *args: Any, **kwargs: Any) -> None:
            raise ConnectionError("the scheduler died here")

    with pytest.raises(ConnectionError):
        await SchedulerManager(runtime, HostSelector(runtime.db), LostCast(bus)) \
            .schedule_and_build(ctx, request)
    await SchedulerManager(runtime, HostSelector(runtime.db), ComputeAgentAPI(bus)) \
        .schedule_and_build(ctx, request)
    server = await cloud.wait_for(instance.uuid, "ACTIVE")
    async with runtime.service() as svc:
        held = await Placement(svc.session).allocations_of(instance.uuid)
    assert list(held) and len(held) == 1  # one provider: the host it was placed on
    assert held[next(iter(held))]["MEMORY_MB"] == 512
    assert server["OS-EXT-SRV-ATTR:host"]


def _boot_context(project_id: str) -> RequestContext:
    return RequestContext(user_id="u-rows", project_id=project_id, roles=["member"])


def _queries(seen: list[tuple[str, Any]]) -> list[str]:
    """The statements that read or write (no BEGIN, COMMIT or pragma)."""
    return [sql for sql, _ in seen
            if sql.split(None, 1)[0].upper() in ("SELECT", "INSERT", "UPDATE", "WITH")]


async def test_a_boots_checks_and_rows_are_few_statements(cloud: Cloud) -> None:
    """The flavor, the quota limits (and on PostgreSQL the quota lock) are one statement;
    the usage, when a limit is set, is counted in it on SQLite (whose write transaction is
    the lock) and after it on PostgreSQL (whose statement's snapshot predates its wait for
    the lock); on PostgreSQL the instance and its action are one INSERT. The rows are
    what the boot answered with."""
    from tests.dbcount import statements_of

    compute = cloud.stack.compute
    assert compute is not None
    postgresql = compute.db.backend == "postgresql"
    request = BootRequest(name="rows", image_id="", flavor_ref="1", metadata={"k": "v"})
    limited = _boot_context("p-limited")  # the defaults: 10 instances, 20 cores
    with statements_of(compute.db.engine) as seen:
        (made,), flavor = await boot.create_rows(compute, limited, request, {})
    # SQLite: the read with the usage, two INSERTs; PostgreSQL: the read with the lock,
    # the usage, one INSERT (before: 6 and 7, the limits read twice with metadata).
    assert len(_queries(seen.seen)) == 3, seen.seen
    assert flavor.id == "1"

    unlimited = _boot_context("p-unlimited")
    async with compute.service() as svc:
        await svc.quotas.set_limits("p-unlimited", {"instances": -1, "cores": -1, "ram": -1})
    await boot.create_rows(compute, unlimited, request, {})  # learns: nothing is counted
    with statements_of(compute.db.engine) as seen:
        await boot.create_rows(compute, unlimited, request, {})
    assert len(_queries(seen.seen)) == (2 if postgresql else 3), seen.seen  # before: 6, 5

    async with compute.service() as svc:
        stored = await svc.instances.get(made.uuid)
        action = await svc.instances.action_for(made.uuid, limited.request_id)
    assert (stored.display_name, stored.reservation_id, stored.launch_index,
            stored.security_groups) == (made.display_name, made.reservation_id,
                                        made.launch_index, made.security_groups)
    assert (stored.project_id, stored.user_id, stored.hostname, stored.vcpus,
            stored.memory_mb, stored.flavor_id, stored.image_ref) == (
        "p-limited", "u-rows", "rows", 1, 512, "1", "")
    assert (stored.vm_state, stored.task_state, stored.locked, stored.deleted_at) == (
        states.BUILDING, states.SCHEDULING, False, None)
    assert stored.server_metadata == {"k": "v"} and stored.flavor["name"] == "m1.tiny"
    assert action is not None
    assert (action.action, action.project_id, action.user_id, action.start_time) == (
        "create", "p-limited", "u-rows", stored.created_at)


async def test_concurrent_boots_take_exactly_the_quota(cloud: Cloud) -> None:
    """Boots of one project at once, under a limit: each counts the others' rows (counted
    after the quota lock, which the flavor's statement takes on PostgreSQL)."""
    compute = cloud.stack.compute
    assert compute is not None
    async with compute.service() as svc:
        await svc.quotas.set_limits("p-race", {"instances": 3})
    request = BootRequest(name="race", image_id="", flavor_ref="1")

    async def one() -> str:
        try:
            await boot.create_rows(compute, _boot_context("p-race"), request, {})
        except QuotaExceeded:
            return "over"
        return "made"

    results = await asyncio.gather(*(one() for _ in range(8)))
    assert sorted(results) == ["made"] * 3 + ["over"] * 5
    async with compute.service() as svc:
        assert (await svc.quotas.usage("p-race"))["instances"] == 3


async def test_a_boot_of_several_makes_a_row_and_an_action_each(cloud: Cloud) -> None:
    compute = cloud.stack.compute
    assert compute is not None
    context = _boot_context("p-several")
    made, _ = await boot.create_rows(
        compute, context, BootRequest(name="many", image_id="", flavor_ref="1", count=3), {})
    assert [m.display_name for m in made] == ["many-1", "many-2", "many-3"]
    assert len({m.reservation_id for m in made}) == 1
    async with compute.service() as svc:
        for index, created in enumerate(made):
            stored = await svc.instances.get(created.uuid)
            action = await svc.instances.action_for(created.uuid, context.request_id)
            assert (stored.display_name, stored.launch_index, stored.reservation_id) == (
                created.display_name, index, created.reservation_id)
            assert action is not None and action.start_time == stored.created_at
        assert (await svc.quotas.usage("p-several"))["instances"] == 3
