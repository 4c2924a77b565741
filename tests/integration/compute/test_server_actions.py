"""The guest state actions through the API of a whole in-process cloud (fake hypervisor,
memory bus, SQLite and PostgreSQL): pause, suspend, rescue, lock, crash dump, password, each
with Nova's state machine, instance actions and events, and 409s that change nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from stratus.compute.virt.driver import AgentNotEnabled
from stratus.compute.virt.fake import FakeDriver
from stratus.core.context import RequestContext
from tests.integration.compute import test_boot_flow
from tests.integration.compute.conftest import assert_compute_error, auth_body
from tests.integration.compute.test_boot_flow import Cloud, boot_body, upload_image

cloud = test_boot_flow.cloud  # the whole in-process cloud, three fake hosts


async def _boot(cloud: Cloud, image_id: str, name: str = "vm") -> dict[str, Any]:
    created = await cloud.compute("POST", "/servers", json=boot_body(image_id, name=name))
    assert created.status_code == 202, created.text
    return await cloud.wait_for(created.json()["server"]["id"], "ACTIVE")


async def _act(cloud: Cloud, server_id: str, body: dict[str, Any], version: str = "2.96",
               token: str | None = None) -> Any:
    headers = {"X-Auth-Token": token or cloud.token,
               "OpenStack-API-Version": f"compute {version}"}
    return await cloud.client.post(f"/compute/v2.1/servers/{server_id}/action", json=body,
                                   headers=headers)


async def _actions(cloud: Cloud, server_id: str) -> list[dict[str, Any]]:
    response = await cloud.compute("GET", f"/servers/{server_id}/os-instance-actions")
    assert response.status_code == 200, response.text
    actions: list[dict[str, Any]] = response.json()["instanceActions"]
    return actions


async def _events(cloud: Cloud, server_id: str, request_id: str) -> list[dict[str, Any]]:
    response = await cloud.compute(
        "GET", f"/servers/{server_id}/os-instance-actions/{request_id}")
    events: list[dict[str, Any]] = response.json()["instanceAction"]["events"]
    return events


def _states(server: dict[str, Any]) -> tuple[Any, ...]:
    return (server["status"], server["OS-EXT-STS:vm_state"], server["OS-EXT-STS:task_state"],
            server["OS-EXT-STS:power_state"], server["locked"])


def _driver(cloud: Cloud, server: dict[str, Any]) -> FakeDriver:
    host = server["OS-EXT-SRV-ATTR:host"]
    (driver,) = [a.driver for a in cloud.stack.agents if a.host == host]
    assert isinstance(driver, FakeDriver)
    return driver


async def _member_token(cloud: Cloud, name: str, project: str = "admin") -> str:
    """A user holding ``member`` (only) on ``project``."""
    admin = {"X-Auth-Token": cloud.token}
    projects = (await cloud.client.get(f"/identity/v3/projects?name={project}",
                                       headers=admin)).json()["projects"]
    if projects:
        project_id = projects[0]["id"]
    else:
        project_id = (await cloud.client.post("/identity/v3/projects", headers=admin, json={
            "project": {"name": project}})).json()["project"]["id"]
    user = (await cloud.client.post("/identity/v3/users", headers=admin, json={
        "user": {"name": name, "password": f"{name}-pw-1234"}})).json()["user"]
    role = (await cloud.client.get("/identity/v3/roles?name=member",
                                   headers=admin)).json()["roles"][0]
    granted = await cloud.client.put(f"/identity/v3/projects/{project_id}/users/{user['id']}"
                                     f"/roles/{role['id']}", headers=admin)
    assert granted.status_code == 204
    response = await cloud.client.post("/identity/v3/auth/tokens",
                                       json=auth_body(name, f"{name}-pw-1234", project))
    assert response.status_code == 201, response.text
    return str(response.headers["X-Subject-Token"])


async def test_pause_suspend_rescue_and_back_with_nova_states_and_events(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)
    server = await _boot(cloud, image_id)
    sid = server["id"]
    driver = _driver(cloud, server)

    steps = [({"pause": None}, "PAUSED", "paused", 3, "compute_pause_instance"),
             ({"unpause": None}, "ACTIVE", "active", 1, "compute_unpause_instance"),
             ({"suspend": None}, "SUSPENDED", "suspended", 7, "compute_suspend_instance"),
             ({"resume": None}, "ACTIVE", "active", 1, "compute_resume_instance")]
    for body, status, vm_state, power, event in steps:
        response = await _act(cloud, sid, body)
        assert response.status_code == 202, response.text
        assert response.content == b""
        shown = await cloud.wait_for(sid, status)
        assert (shown["OS-EXT-STS:vm_state"], shown["OS-EXT-STS:task_state"],
                shown["OS-EXT-STS:power_state"]) == (vm_state, None, power)
        latest = (await _actions(cloud, sid))[0]
        assert latest["action"] == next(iter(body))
        events = await _events(cloud, sid, latest["request_id"])
        assert [(e["event"], e["result"]) for e in events] == [(event, "Success")]

    # Rescue: the server's own image by default, a password in the answer (given or made).
    rescued = await _act(cloud, sid, {"rescue": {"adminPass": "s3cret-rescue"}})
    assert rescued.status_code == 200, rescued.text
    assert rescued.json() == {"adminPass": "s3cret-rescue"}
    shown = await cloud.wait_for(sid, "RESCUE")
    assert (shown["OS-EXT-STS:vm_state"], shown["OS-EXT-STS:power_state"]) == ("rescued", 1)
    spec = driver.rescued_with(sid)
    assert spec is not None and spec.admin_password == "s3cret-rescue"
    assert (await _act(cloud, sid, {"unrescue": None})).status_code == 202
    await cloud.wait_for(sid, "ACTIVE")
    assert driver.rescued_with(sid) is None
    generated = await _act(cloud, sid, {"rescue": None})
    assert generated.status_code == 200 and len(generated.json()["adminPass"]) >= 8
    await cloud.wait_for(sid, "RESCUE")
    assert (await _act(cloud, sid, {"unrescue": None})).status_code == 202
    await cloud.wait_for(sid, "ACTIVE")

    # An NMI (2.17+) and a password the fake hypervisor records.
    assert (await _act(cloud, sid, {"trigger_crash_dump": None})).status_code == 202
    changed = await _act(cloud, sid, {"changePassword": {"adminPass": "n3w-pass"}})
    assert changed.status_code == 202, changed.text
    assert driver.admin_passwords[sid] == "n3w-pass"
    shown = await cloud.wait_for(sid, "ACTIVE")
    assert shown["OS-EXT-STS:task_state"] is None
    log = (await _act(cloud, sid, {"os-getConsoleOutput": {}})).json()["output"]
    assert "rescue mode" in log and "NMI received" in log

    names = [a["action"] for a in await _actions(cloud, sid)]
    assert names == ["changePassword", "trigger_crash_dump", "unrescue", "rescue", "unrescue",
                     "rescue", "resume", "suspend", "unpause", "pause", "create"]


#: (action body, the vm_state it needs, Nova's verb in the message)
WRONG_STATE = [
    ({"unpause": None}, "unpause"),
    ({"resume": None}, "resume"),
    ({"unrescue": None}, "unrescue"),
]
WHILE_PAUSED = [
    ({"pause": None}, "pause"),
    ({"suspend": None}, "suspend"),
    ({"resume": None}, "resume"),
    ({"rescue": None}, "rescue"),
    ({"unrescue": None}, "unrescue"),
    ({"changePassword": {"adminPass": "x"}}, "changePassword"),
    ({"os-stop": None}, "stop"),
    ({"os-start": None}, "start"),
    ({"reboot": {"type": "SOFT"}}, "reboot"),
]


async def _refused(cloud: Cloud, sid: str, body: dict[str, Any], verb: str,
                   vm_state: str) -> None:
    before = (await cloud.compute("GET", f"/servers/{sid}")).json()["server"]
    actions = await _actions(cloud, sid)
    message = assert_compute_error(await _act(cloud, sid, body), 409, "conflictingRequest")
    assert message == f"Cannot '{verb}' instance {sid} while it is in vm_state {vm_state}"
    after = (await cloud.compute("GET", f"/servers/{sid}")).json()["server"]
    assert _states(after) == _states(before)
    assert await _actions(cloud, sid) == actions


async def test_every_action_in_a_wrong_state_is_a_409_that_changes_nothing(
        cloud: Cloud) -> None:
    image_id = await upload_image(cloud)
    sid = (await _boot(cloud, image_id))["id"]
    for body, verb in WRONG_STATE:
        await _refused(cloud, sid, body, verb, "active")
    assert (await _act(cloud, sid, {"pause": None})).status_code == 202
    await cloud.wait_for(sid, "PAUSED")
    for body, verb in WHILE_PAUSED:
        await _refused(cloud, sid, body, verb, "paused")
    assert (await _act(cloud, sid, {"unpause": None})).status_code == 202
    await cloud.wait_for(sid, "ACTIVE")
    assert (await _act(cloud, sid, {"os-stop": None})).status_code == 202
    await cloud.wait_for(sid, "SHUTOFF")
    for body, verb in (({"pause": None}, "pause"), ({"suspend": None}, "suspend"),
                       ({"trigger_crash_dump": None}, "trigger_crash_dump"),
                       ({"changePassword": {"adminPass": "x"}}, "changePassword")):
        await _refused(cloud, sid, body, verb, "stopped")


async def test_a_failing_hypervisor_leaves_the_state_as_it_was_with_an_error_event(
        cloud: Cloud) -> None:
    image_id = await upload_image(cloud)
    server = await _boot(cloud, image_id)
    sid = server["id"]
    _driver(cloud, server).fail_next("suspend", "the disk is full")
    assert (await _act(cloud, sid, {"suspend": None})).status_code == 202
    latest = (await _actions(cloud, sid))[0]
    assert latest["action"] == "suspend"
    for _ in range(200):
        events = await _events(cloud, sid, latest["request_id"])
        if events and events[0]["finish_time"]:
            break
        # Let the host's cast run: a poll's requests may take no turn of the loop at all.
        await asyncio.sleep(0.02)
    assert [(e["event"], e["result"], e["details"]) for e in events] == [
        ("compute_suspend_instance", "Error", "the disk is full")]
    shown = (await cloud.compute("GET", f"/servers/{sid}")).json()["server"]
    assert _states(shown) == ("ACTIVE", "active", None, 1, False)


async def test_lock_refuses_non_admins_with_409_and_unlock_follows_nova(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)
    sid = (await _boot(cloud, image_id))["id"]
    member = await _member_token(cloud, "lock-member")

    locked = await _act(cloud, sid, {"lock": {"locked_reason": "maintenance"}})
    assert locked.status_code == 202, locked.text
    shown = (await cloud.compute("GET", f"/servers/{sid}")).json()["server"]
    assert (shown["locked"], shown["locked_reason"]) == (True, "maintenance")
    old = (await cloud.compute("GET", f"/servers/{sid}", version="2.9")).json()["server"]
    assert old["locked"] is True and "locked_reason" not in old
    assert "locked" not in (await cloud.compute("GET", f"/servers/{sid}",
                                                version="2.8")).json()["server"]

    before = await _actions(cloud, sid)
    for body in ({"os-stop": None}, {"pause": None}, {"reboot": {"type": "HARD"}},
                 {"rescue": None}, {"changePassword": {"adminPass": "x"}},
                 {"rebuild": {"imageRef": image_id}}, {"shelve": None}, {"unshelve": None},
                 {"resize": {"flavorRef": "2"}}, {"revertResize": None}):
        message = assert_compute_error(await _act(cloud, sid, body, token=member), 409,
                                       "conflictingRequest")
        assert message == f"Instance {sid} is locked"
    deleted = await cloud.client.delete(f"/compute/v2.1/servers/{sid}",
                                        headers={"X-Auth-Token": member})
    assert_compute_error(deleted, 409, "conflictingRequest")
    attach = await cloud.client.post(
        f"/compute/v2.1/servers/{sid}/os-volume_attachments", headers={"X-Auth-Token": member},
        json={"volumeAttachment": {"volumeId": "9a1c8e2e-5a57-4d3b-9f43-0d2b3c1e4f55"}})
    assert assert_compute_error(attach, 409, "conflictingRequest") == \
        f"Instance {sid} is locked"
    plug = await cloud.client.post(
        f"/compute/v2.1/servers/{sid}/os-interface", headers={"X-Auth-Token": member},
        json={"interfaceAttachment": {"port_id": "5d0f1c2e-8a3b-4c6d-9e7f-1a2b3c4d5e6f"}})
    assert assert_compute_error(plug, 409, "conflictingRequest") == \
        f"Instance {sid} is locked"
    assert await _actions(cloud, sid) == before
    # Admins act on locked servers all the same.
    assert (await _act(cloud, sid, {"pause": None})).status_code == 202
    await cloud.wait_for(sid, "PAUSED")

    # The lock is the owner's side (the admin locked in the server's own project), so a
    # member of the project may lift it; the reason goes with it.
    assert (await _act(cloud, sid, {"unlock": None}, token=member)).status_code == 202
    shown = (await cloud.compute("GET", f"/servers/{sid}")).json()["server"]
    assert (shown["locked"], shown["locked_reason"]) == (False, None)
    assert (await _act(cloud, sid, {"unpause": None}, token=member)).status_code == 202
    await cloud.wait_for(sid, "ACTIVE")
    names = [a["action"] for a in await _actions(cloud, sid)]
    assert names[:4] == ["unpause", "unlock", "pause", "lock"]
    lock_action = next(a for a in await _actions(cloud, sid) if a["action"] == "lock")
    assert [e["event"] for e in await _events(cloud, sid, lock_action["request_id"])] == [
        "api_lock"]


async def test_an_admins_lock_on_another_project_needs_an_admin_to_lift(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)
    image = await cloud.client.patch(
        f"/image/v2/images/{image_id}", headers={**cloud.headers(None), "Content-Type":
                                                 "application/openstack-images-v2.1-json-patch"},
        json=[{"op": "replace", "path": "/visibility", "value": "public"}])
    assert image.status_code == 200, image.text
    member = await _member_token(cloud, "owner-user", project="elsewhere")
    created = await cloud.client.post(
        "/compute/v2.1/servers", json=boot_body(image_id, name="theirs"),
        headers={"X-Auth-Token": member, "OpenStack-API-Version": "compute 2.96"})
    assert created.status_code == 202, created.text
    sid = created.json()["server"]["id"]
    await cloud.wait_for(sid, "ACTIVE")
    assert (await _act(cloud, sid, {"lock": None})).status_code == 202
    assert_compute_error(await _act(cloud, sid, {"unlock": None}, token=member), 403,
                         "forbidden")
    assert (await _act(cloud, sid, {"unlock": None})).status_code == 202


@pytest.mark.parametrize(("version", "body", "status"), [
    ("2.72", {"lock": {"locked_reason": "why"}}, 400),
    ("2.73", {"lock": {"locked_reason": ""}}, 400),
    ("2.73", {"lock": {"locked_reason": "x" * 256}}, 400),
    ("2.73", {"lock": {"reason": "why"}}, 400),
    ("2.16", {"trigger_crash_dump": None}, 404),
    ("2.96", {"rescue": {"rescue_image_ref": "no-such-image"}}, 400),
    ("2.96", {"rescue": {"password": "x"}}, 400),
    ("2.96", {"changePassword": {}}, 400),
    ("2.96", {"changePassword": {"adminPass": 5}}, 400),
    ("2.96", {"pause": {"now": True}}, 400),
])
async def test_microversion_gates_and_bad_bodies_change_nothing(
        cloud: Cloud, version: str, body: dict[str, Any], status: int) -> None:
    image_id = await upload_image(cloud)
    sid = (await _boot(cloud, image_id))["id"]
    before = await _actions(cloud, sid)
    response = await _act(cloud, sid, body, version=version)
    assert_compute_error(response, status, "badRequest" if status == 400 else "itemNotFound")
    assert await _actions(cloud, sid) == before
    shown = (await cloud.compute("GET", f"/servers/{sid}")).json()["server"]
    assert _states(shown) == ("ACTIVE", "active", None, 1, False)


async def test_a_guest_without_an_agent_refuses_a_password_with_a_409_and_no_task_left(
        cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    image_id = await upload_image(cloud)
    server = await _boot(cloud, image_id)
    sid = server["id"]

    async def no_agent(uuid: str, password: str) -> None:
        raise AgentNotEnabled("QEMU guest agent is not enabled")

    monkeypatch.setattr(_driver(cloud, server), "set_admin_password", no_agent)
    response = await _act(cloud, sid, {"changePassword": {"adminPass": "n3w-pass"}})
    message = assert_compute_error(response, 409, "conflictingRequest")
    assert message == "QEMU guest agent is not enabled" and "n3w-pass" not in response.text
    shown = (await cloud.compute("GET", f"/servers/{sid}")).json()["server"]
    assert _states(shown) == ("ACTIVE", "active", None, 1, False)
    latest = (await _actions(cloud, sid))[0]
    assert [(e["event"], e["result"]) for e in await _events(cloud, sid, latest["request_id"])
            ] == [("compute_set_admin_password", "Error")]


async def test_an_agent_restart_ends_an_interrupted_pause_where_the_guest_really_is(
        cloud: Cloud) -> None:
    image_id = await upload_image(cloud)
    server = await _boot(cloud, image_id)
    sid = server["id"]
    (agent,) = [a for a in cloud.stack.agents if a.host == server["OS-EXT-SRV-ATTR:host"]]
    runtime = cloud.stack.compute
    assert runtime is not None
    # The state a crash between the API's "pausing" and the host's work leaves behind.
    async with runtime.service() as svc:
        row = await svc.instances.get(sid)
        row.task_state = "pausing"
    ctx = RequestContext(user_id="test", project_id="service", roles=["service"])
    await agent.reconcile(ctx, [sid])
    shown = (await cloud.compute("GET", f"/servers/{sid}")).json()["server"]
    assert _states(shown) == ("ACTIVE", "active", None, 1, False)
    assert (await _act(cloud, sid, {"pause": None})).status_code == 202
    await cloud.wait_for(sid, "PAUSED")


async def test_the_password_is_answered_unless_the_cloud_keeps_it_to_itself(
        cloud: Cloud) -> None:
    """Nova's ``enable_instance_password``: on (the default), rescue answers ``adminPass`` at
    every microversion; off, create, rebuild and rescue answer none, and the rescue still
    gets a password made for it."""
    image_id = await upload_image(cloud)
    sid = (await _boot(cloud, image_id, "pw"))["id"]
    rescued = await _act(cloud, sid, {"rescue": {"adminPass": "old-style-pw"}}, "2.1")
    assert (rescued.status_code, rescued.json()) == (200, {"adminPass": "old-style-pw"})
    await cloud.wait_for(sid, "RESCUE")
    assert (await _act(cloud, sid, {"unrescue": None}, "2.1")).status_code == 202
    await cloud.wait_for(sid, "ACTIVE")

    runtime = cloud.stack.compute
    assert runtime is not None
    runtime.settings.compute.enable_instance_password = False
    try:
        created = await cloud.compute("POST", "/servers", json=boot_body(image_id, name="q"))
        assert created.status_code == 202 and "adminPass" not in created.json()["server"]
        for version in ("2.1", "2.96"):
            quiet = await _act(cloud, sid, {"rescue": None}, version)
            assert (quiet.status_code, quiet.json()) == (200, {}), version
            shown = await cloud.wait_for(sid, "RESCUE")
            spec = _driver(cloud, shown).rescued_with(sid)
            assert spec is not None and len(spec.admin_password) >= 8
            assert (await _act(cloud, sid, {"unrescue": None}, version)).status_code == 202
            await cloud.wait_for(sid, "ACTIVE")
        rebuilt = await _act(cloud, sid, {"rebuild": {"imageRef": image_id}})
        assert rebuilt.status_code == 202, rebuilt.text
        assert "adminPass" not in rebuilt.json()["server"]
    finally:
        runtime.settings.compute.enable_instance_password = True
