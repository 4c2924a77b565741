"""Server metadata, server groups, availability zones and external events, through the
API of a whole in-process cloud (fake hypervisor, memory bus, SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

from stratus.compute.objects import ExternalEvent
from stratus.compute.rpcapi import COMPUTE_EVENTS_TOPIC
from stratus.core.bus.target import cast_queue
from tests.integration.compute import test_boot_flow
from tests.integration.compute.conftest import assert_compute_error
from tests.integration.compute.test_boot_flow import Cloud, boot_body, upload_image

cloud = test_boot_flow.cloud  # the whole in-process cloud, three fake hosts


async def _admin_project(cloud: Cloud) -> str:
    response = await cloud.client.get("/identity/v3/auth/tokens", headers={
        **cloud.headers(None), "X-Subject-Token": cloud.token})
    project_id: str = response.json()["token"]["project"]["id"]
    return project_id


async def _boot_active(cloud: Cloud, image_id: str, name: str = "vm", version: str = "2.96",
                       **extra: Any) -> dict[str, Any]:
    created = await cloud.compute("POST", "/servers", version=version,
                                  json=boot_body(image_id, name=name, **extra))
    assert created.status_code == 202, created.text
    return await cloud.wait_for(created.json()["server"]["id"], "ACTIVE")


# Server metadata ----------------------------------------------------------------------------

async def test_server_metadata_read_merge_replace_delete(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)
    server = await _boot_active(cloud, image_id, metadata={"a": "1"})
    path = f"/servers/{server['id']}/metadata"

    assert (await cloud.compute("GET", path)).json() == {"metadata": {"a": "1"}}
    merged = await cloud.compute("POST", path, json={"metadata": {"b": "2", "a": "one"}})
    assert merged.status_code == 200
    assert merged.json() == {"metadata": {"a": "one", "b": "2"}}
    one = await cloud.compute("PUT", f"{path}/c", json={"meta": {"c": "3"}})
    assert one.status_code == 200 and one.json() == {"meta": {"c": "3"}}
    assert (await cloud.compute("GET", f"{path}/c")).json() == {"meta": {"c": "3"}}
    shown = (await cloud.compute("GET", f"/servers/{server['id']}")).json()["server"]
    assert shown["metadata"] == {"a": "one", "b": "2", "c": "3"}

    replaced = await cloud.compute("PUT", path, json={"metadata": {"only": "this"}})
    assert replaced.json() == {"metadata": {"only": "this"}}
    deleted = await cloud.compute("DELETE", f"{path}/only")
    assert deleted.status_code == 204 and deleted.content == b""
    assert (await cloud.compute("GET", path)).json() == {"metadata": {}}
    assert_compute_error(await cloud.compute("GET", f"{path}/only"), 404, "itemNotFound")
    assert_compute_error(await cloud.compute("DELETE", f"{path}/only"), 404, "itemNotFound")
    assert_compute_error(await cloud.compute("GET", "/servers/nope/metadata"), 404,
                         "itemNotFound")


async def test_server_metadata_bad_bodies_and_quota(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)
    server = await _boot_active(cloud, image_id)
    path = f"/servers/{server['id']}/metadata"
    for method, where, body in (
            ("PUT", f"{path}/k", {"meta": {"other": "v"}}),         # URI mismatch
            ("PUT", f"{path}/k", {"meta": {"k": "v", "j": "w"}}),   # too many
            ("PUT", f"{path}/k", {"metadata": {"k": "v"}}),         # wrong wrapper
            ("POST", path, {"metadata": {"": "v"}}),                # empty key
            ("POST", path, {"metadata": {"k" * 256: "v"}}),         # key too long
            ("POST", path, {"metadata": {"k": "v" * 256}}),         # value too long
            ("POST", path, {"metadata": {"k": 1}}),                 # not a string
            ("POST", path, {"metadata": ["k"]}),
            ("PUT", path, {"meta": {"k": "v"}})):
        assert_compute_error(await cloud.compute(method, where, json=body), 400, "badRequest")
    ok = await cloud.compute("POST", path, json={"metadata": {"k" * 255: "v" * 255}})
    assert ok.status_code == 200

    project_id = await _admin_project(cloud)
    quota = await cloud.compute("PUT", f"/os-quota-sets/{project_id}",
                                json={"quota_set": {"metadata_items": 2}})
    assert quota.status_code == 200, quota.text
    assert (await cloud.compute("POST", path, json={"metadata": {"b": "2"}})).status_code == 200
    over = await cloud.compute("POST", path, json={"metadata": {"c": "3"}})
    assert "metadata_items" in assert_compute_error(over, 403, "forbidden")
    assert len((await cloud.compute("GET", path)).json()["metadata"]) == 2
    boot = await cloud.compute("POST", "/servers", json=boot_body(
        image_id, name="meta", metadata={"x": "1", "y": "2", "z": "3"}))
    assert_compute_error(boot, 403, "forbidden")


async def test_server_metadata_is_refused_while_a_task_runs(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)
    server = await _boot_active(cloud, image_id)
    async with cloud.stack.compute.service() as svc:  # type: ignore[union-attr]
        row = await svc.instances.get(server["id"])
        row.task_state = "powering-off"
    busy = await cloud.compute("POST", f"/servers/{server['id']}/metadata",
                               json={"metadata": {"k": "v"}})
    assert_compute_error(busy, 409, "conflictingRequest")


# Server groups ------------------------------------------------------------------------------

async def test_server_group_views_per_microversion(cloud: Cloud) -> None:
    old = await cloud.compute("POST", "/os-server-groups", version="2.1", json={
        "server_group": {"name": "g-old", "policies": ["affinity"]}})
    assert old.status_code == 200, old.text
    assert set(old.json()["server_group"]) == {"id", "name", "policies", "members", "metadata"}
    assert old.json()["server_group"]["policies"] == ["affinity"]

    new = await cloud.compute("POST", "/os-server-groups", version="2.64", json={
        "server_group": {"name": "g-new", "policy": "anti-affinity",
                         "rules": {"max_server_per_host": "2"}}})
    assert new.status_code == 200, new.text
    group = new.json()["server_group"]
    assert set(group) == {"id", "name", "policy", "rules", "members", "project_id", "user_id"}
    assert group["rules"] == {"max_server_per_host": 2}

    shown = await cloud.compute("GET", f"/os-server-groups/{group['id']}", version="2.13")
    assert shown.json()["server_group"]["policies"] == ["anti-affinity"]
    assert "project_id" in shown.json()["server_group"]
    listed = (await cloud.compute("GET", "/os-server-groups?limit=1&offset=1",
                                  version="2.64")).json()["server_groups"]
    assert [g["name"] for g in listed] == ["g-new"]

    for version, body in (
            ("2.1", {"name": "x", "policies": ["soft-affinity"]}),   # needs 2.15
            ("2.1", {"name": "x", "policies": ["affinity", "anti-affinity"]}),
            ("2.1", {"name": "x", "policy": "affinity"}),            # needs 2.64
            ("2.64", {"name": "x", "policies": ["affinity"]}),       # gone in 2.64
            ("2.64", {"name": "x", "policy": "affinity",
                      "rules": {"max_server_per_host": 2}}),         # rules: anti only
            ("2.64", {"name": "x", "policy": "anti-affinity",
                      "rules": {"max_server_per_host": 0}}),
            ("2.64", {"name": "x", "policy": "spread"}),
            ("2.64", {"name": " ", "policy": "affinity"})):
        refused = await cloud.compute("POST", "/os-server-groups", version=version,
                                      json={"server_group": body})
        assert_compute_error(refused, 400, "badRequest")

    assert_compute_error(await cloud.compute("GET", "/os-server-groups/nope"), 404,
                         "itemNotFound")
    gone = await cloud.compute("DELETE", f"/os-server-groups/{group['id']}")
    assert gone.status_code == 204
    assert_compute_error(await cloud.compute("GET", f"/os-server-groups/{group['id']}"), 404,
                         "itemNotFound")


async def test_anti_affinity_group_spreads_its_members_and_counts_them(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)
    group = (await cloud.compute("POST", "/os-server-groups", json={
        "server_group": {"name": "spread", "policy": "anti-affinity"}})).json()["server_group"]
    hint = {"os:scheduler_hints": {"group": group["id"]}}
    servers = []
    for name in ("a", "b", "c"):
        # openstacksdk names the hints OS-SCH-HNT:scheduler_hints; Nova takes both names.
        hints = hint if name != "b" else {"OS-SCH-HNT:scheduler_hints": {"group": group["id"]}}
        created = await cloud.compute("POST", "/servers",
                                      json={**boot_body(image_id, name=name), **hints})
        assert created.status_code == 202, created.text
        servers.append(await cloud.wait_for(created.json()["server"]["id"], "ACTIVE"))
    hosts = {s["OS-EXT-SRV-ATTR:host"] for s in servers}
    assert len(hosts) == 3, hosts
    assert all(s["server_groups"] == [group["id"]] for s in servers)
    # Every host now holds a member: a fourth cannot be placed.
    fourth = await cloud.compute("POST", "/servers",
                                 json={**boot_body(image_id, name="d"), **hint})
    failed = await cloud.wait_for(fourth.json()["server"]["id"], "ERROR")
    assert "ServerGroupAntiAffinityFilter" in failed["fault"]["message"]

    members = (await cloud.compute("GET", f"/os-server-groups/{group['id']}")
               ).json()["server_group"]["members"]
    assert set(members) == {s["id"] for s in servers} | {failed["id"]}

    assert (await cloud.compute("DELETE", f"/servers/{servers[0]['id']}")).status_code == 204
    await cloud.wait_for(servers[0]["id"], "DELETED")
    assert (await cloud.compute("DELETE", f"/servers/{failed['id']}")).status_code == 204
    await cloud.wait_for(failed["id"], "DELETED")
    members = (await cloud.compute("GET", f"/os-server-groups/{group['id']}")
               ).json()["server_group"]["members"]
    assert set(members) == {servers[1]["id"], servers[2]["id"]}

    # The members quota counts live members only.
    project_id = await _admin_project(cloud)
    await cloud.compute("PUT", f"/os-quota-sets/{project_id}",
                        json={"quota_set": {"server_group_members": 2}})
    over = await cloud.compute("POST", "/servers", json={**boot_body(image_id, name="e"),
                                                         **hint})
    assert_compute_error(over, 403, "forbidden")
    unknown = await cloud.compute("POST", "/servers", json={
        **boot_body(image_id, name="f"), "os:scheduler_hints": {"group": "nope"}})
    assert_compute_error(unknown, 400, "badRequest")


async def test_server_group_quota_and_project_scope(cloud: Cloud) -> None:
    project_id = await _admin_project(cloud)
    await cloud.compute("PUT", f"/os-quota-sets/{project_id}",
                        json={"quota_set": {"server_groups": 1}})
    first = await cloud.compute("POST", "/os-server-groups", json={
        "server_group": {"name": "one", "policy": "affinity"}})
    assert first.status_code == 200
    second = await cloud.compute("POST", "/os-server-groups", json={
        "server_group": {"name": "two", "policy": "affinity"}})
    assert_compute_error(second, 403, "forbidden")
    detail = (await cloud.compute("GET", f"/os-quota-sets/{project_id}/detail")).json()
    assert detail["quota_set"]["server_groups"] == {"limit": 1, "in_use": 1, "reserved": 0}

    from tests.integration.compute.conftest import ComputeCloud
    helper = ComputeCloud(cloud.client, cloud.token)
    token, _, _ = await helper.member("grouper")
    mine = await helper.compute("POST", "/os-server-groups", token=token, version="2.64",
                                json={"server_group": {"name": "mine",
                                                       "policy": "soft-anti-affinity"}})
    assert mine.status_code == 200, mine.text
    theirs = first.json()["server_group"]["id"]
    assert_compute_error(await helper.compute("GET", f"/os-server-groups/{theirs}",
                                              token=token), 404, "itemNotFound")
    seen = (await helper.compute("GET", "/os-server-groups?all_projects=True",
                                 token=token)).json()["server_groups"]
    assert [g["name"] for g in seen] == ["mine"]
    everything = (await cloud.compute("GET", "/os-server-groups?all_projects=True")
                  ).json()["server_groups"]
    assert {g["name"] for g in everything} == {"one", "mine"}
    own = (await cloud.compute("GET", "/os-server-groups")).json()["server_groups"]
    assert [g["name"] for g in own] == ["one"]


async def test_quota_set_keys_per_microversion(cloud: Cloud) -> None:
    """Exactly Nova's keys: the ones 2.36 and 2.57 dropped before them, no others (clients
    validate the quota set with no other key allowed)."""
    project_id = await _admin_project(cloud)
    current = {"id", "instances", "cores", "ram", "key_pairs", "metadata_items",
               "server_groups", "server_group_members"}
    before_236 = {"fixed_ips", "floating_ips", "security_group_rules", "security_groups"}
    before_257 = {"injected_file_content_bytes", "injected_file_path_bytes", "injected_files"}
    for version, expected in (("2.1", current | before_236 | before_257),
                              ("2.36", current | before_257), ("2.57", current)):
        for path in (f"/os-quota-sets/{project_id}", f"/os-quota-sets/{project_id}/defaults",
                     f"/os-quota-sets/{project_id}/detail"):
            shown = await cloud.compute("GET", path, version=version)
            assert set(shown.json()["quota_set"]) == expected, (version, path)


# Availability zones -------------------------------------------------------------------------

async def test_availability_zones(cloud: Cloud) -> None:
    listed = await cloud.compute("GET", "/os-availability-zone")
    assert listed.json() == {"availabilityZoneInfo": [
        {"zoneName": "nova", "zoneState": {"available": True}, "hosts": None}]}
    detail = (await cloud.compute("GET", "/os-availability-zone/detail")).json()
    (zone,) = detail["availabilityZoneInfo"]
    assert zone["zoneName"] == "nova"
    assert set(zone["hosts"]) == {"node", "node-2", "node-3"}
    service = zone["hosts"]["node"]["nova-compute"]
    assert service["available"] is True and service["active"] is True
    assert service["updated_at"]

    from tests.integration.compute.conftest import ComputeCloud
    helper = ComputeCloud(cloud.client, cloud.token)
    token, _, _ = await helper.member("zoner")
    assert (await helper.compute("GET", "/os-availability-zone", token=token)).status_code == 200
    assert_compute_error(await helper.compute("GET", "/os-availability-zone/detail",
                                              token=token), 403, "forbidden")

    # A zone whose every host is disabled is shown unavailable.
    services = (await cloud.compute("GET", "/os-services")).json()["services"]
    for s in services:
        changed = await cloud.compute("PUT", f"/os-services/{s['id']}",
                                      json={"status": "disabled"})
        assert changed.status_code == 200
    listed = await cloud.compute("GET", "/os-availability-zone")
    assert listed.json()["availabilityZoneInfo"][0]["zoneState"] == {"available": False}


# External events ----------------------------------------------------------------------------

async def test_external_events_reach_the_waiter_on_the_instance_host(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)
    server = await _boot_active(cloud, image_id)
    agent = next(a for a in cloud.stack.agents if a.host == server["OS-EXT-SRV-ATTR:host"])
    waiter = agent.events.prepare(server["id"], ["network-vif-plugged:port-1"])

    body = {"events": [{"name": "network-vif-plugged", "server_uuid": server["id"],
                        "tag": "port-1", "status": "completed"}]}
    response = await cloud.compute("POST", "/os-server-external-events", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"events": [{**body["events"][0], "code": 200}]}
    assert await waiter.wait(5) == {"network-vif-plugged:port-1": "completed"}

    # Mixed: one accepted, one for an unknown server → 207, each with its code.
    mixed = await cloud.compute("POST", "/os-server-external-events", json={"events": [
        {"name": "network-changed", "server_uuid": server["id"]},
        {"name": "network-vif-unplugged", "server_uuid": "0" * 36, "tag": "p"}]})
    assert mixed.status_code == 207
    assert [e["code"] for e in mixed.json()["events"]] == [200, 404]
    assert mixed.json()["events"][0]["status"] == "completed"
    assert "tag" not in mixed.json()["events"][0]

    none = await cloud.compute("POST", "/os-server-external-events", json={"events": [
        {"name": "network-changed", "server_uuid": "0" * 36}]})
    assert_compute_error(none, 404, "itemNotFound")


async def test_external_events_for_a_dead_host_are_answered_at_once(cloud: Cloud) -> None:
    """The server's host is gone (no agent takes its events): compute-api answers 200 as
    soon as the broker holds the event, which waits in the host's events queue (a call to
    the host would hold the answer until it timed out, then answer 503)."""
    image_id = await upload_image(cloud)
    server = await _boot_active(cloud, image_id)
    assert cloud.stack.compute is not None and cloud.stack.bus is not None
    async with cloud.stack.compute.service() as svc:
        row = await svc.instances.get(server["id"])
        row.host = "gone-host"
    event = {"name": "network-vif-plugged", "server_uuid": server["id"], "tag": "p",
             "status": "completed"}
    response = await cloud.compute("POST", "/os-server-external-events",
                                   json={"events": [event]})
    assert response.status_code == 200, response.text
    assert response.json() == {"events": [{**event, "code": 200}]}
    queue = cast_queue(COMPUTE_EVENTS_TOPIC, "gone-host")
    assert await cloud.stack.bus.pending(queue) == 1


async def test_external_events_for_unplaced_servers_and_bad_requests(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)
    created = await cloud.compute("POST", "/servers", json=boot_body(image_id, flavor="4"))
    unplaced = await cloud.wait_for(created.json()["server"]["id"], "ERROR")  # no host
    response = await cloud.compute("POST", "/os-server-external-events", json={"events": [
        {"name": "network-vif-plugged", "server_uuid": unplaced["id"], "tag": "p"}]})
    assert_compute_error(response, 404, "itemNotFound")  # nothing accepted
    image_id2 = await upload_image(cloud)
    placed = await _boot_active(cloud, image_id2, name="placed")
    mixed = await cloud.compute("POST", "/os-server-external-events", json={"events": [
        {"name": "network-vif-plugged", "server_uuid": unplaced["id"], "tag": "p"},
        {"name": "network-changed", "server_uuid": placed["id"]}]})
    assert mixed.status_code == 207
    assert [e["code"] for e in mixed.json()["events"]] == [422, 200]

    for events in ([], [{"name": "bogus", "server_uuid": unplaced["id"]}],
                   [{"name": "network-changed", "server_uuid": unplaced["id"],
                     "status": "done"}],
                   [{"name": "network-changed", "server_uuid": unplaced["id"], "x": 1}]):
        refused = await cloud.compute("POST", "/os-server-external-events",
                                      json={"events": events})
        assert_compute_error(refused, 400, "badRequest")
    old = await cloud.compute("POST", "/os-server-external-events", version="2.50", json={
        "events": [{"name": "volume-extended", "server_uuid": unplaced["id"]}]})
    assert_compute_error(old, 400, "badRequest")

    from tests.integration.compute.conftest import ComputeCloud
    helper = ComputeCloud(cloud.client, cloud.token)
    token, _, _ = await helper.member("eventer")
    forbidden = await helper.compute("POST", "/os-server-external-events", token=token,
                                     json={"events": [{"name": "network-changed",
                                                       "server_uuid": unplaced["id"]}]})
    assert_compute_error(forbidden, 403, "forbidden")


async def test_events_dispatch_to_an_agent_directly(cloud: Cloud) -> None:
    """The agent's bus method, as compute-api casts it, wakes only matching waiters."""
    agent = cloud.stack.agents[0]
    waiter = agent.events.prepare("some-instance", ["network-vif-plugged:p"])
    from stratus.core.context import RequestContext
    ctx = RequestContext(user_id="u", project_id="p", roles=["admin"])
    await agent.external_instance_event(ctx, "some-instance", [
        ExternalEvent(name="network-vif-plugged", tag="other"),
        ExternalEvent(name="network-vif-plugged", tag="p", status="failed")])
    assert await waiter.wait(1, fail_on_failed=False) == {"network-vif-plugged:p": "failed"}


async def test_max_server_per_host_rule(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)
    group = (await cloud.compute("POST", "/os-server-groups", version="2.64", json={
        "server_group": {"name": "two-each", "policy": "anti-affinity",
                         "rules": {"max_server_per_host": 2}}})).json()["server_group"]
    hint = {"os:scheduler_hints": {"group": group["id"]}}
    placed = []
    for n in range(6):
        created = await cloud.compute("POST", "/servers",
                                      json={**boot_body(image_id, name=f"s{n}"), **hint})
        assert created.status_code == 202, created.text
        placed.append(await cloud.wait_for(created.json()["server"]["id"], "ACTIVE"))
    per_host: dict[str, int] = {}
    for server in placed:
        host = server["OS-EXT-SRV-ATTR:host"]
        per_host[host] = per_host.get(host, 0) + 1
    assert sorted(per_host.values()) == [2, 2, 2]
    seventh = await cloud.compute("POST", "/servers",
                                  json={**boot_body(image_id, name="s6"), **hint})
    failed = await cloud.wait_for(seventh.json()["server"]["id"], "ERROR")
    assert "ServerGroupAntiAffinityFilter" in failed["fault"]["message"]
