"""Host aggregates (``os-aggregates``): an operator's sets of compute hosts with metadata,
which the hosts' resource providers carry for the scheduler's aggregate filter."""

from __future__ import annotations

from stratus.compute.models import ResourceProvider
from stratus.compute.placement import InventorySpec, provider_uuid
from tests.integration.compute.conftest import ComputeCloud, assert_compute_error


async def _host(cloud: ComputeCloud, host: str) -> None:
    """A compute host as its report makes it: the service and its resource provider."""
    assert cloud.stack is not None and cloud.stack.compute is not None
    async with cloud.stack.compute.service() as svc:
        await svc.hosts.heartbeat(host, "nova")
        await svc.placement.ensure_provider(provider_uuid(host), host,
                                            {"VCPU": InventorySpec(4)})


async def _provider_metadata(cloud: ComputeCloud, host: str) -> dict[str, str]:
    assert cloud.stack is not None and cloud.stack.compute is not None
    async with cloud.stack.compute.service() as svc:
        provider = await svc.session.get(ResourceProvider, provider_uuid(host),
                                         populate_existing=True)
        assert provider is not None
        return dict(provider.aggregate_metadata)


async def test_aggregate_lifecycle_and_the_metadata_hosts_carry(
        cloud: ComputeCloud) -> None:
    await _host(cloud, "node-1")
    created = await cloud.compute("POST", "/os-aggregates", version="2.41", json={
        "aggregate": {"name": "fast", "availability_zone": "zone-a"}})
    assert created.status_code == 200, created.text
    aggregate = created.json()["aggregate"]
    assert set(aggregate) == {"id", "name", "availability_zone", "created_at", "updated_at",
                              "deleted", "deleted_at", "uuid"}
    path = f"/os-aggregates/{aggregate['id']}"
    duplicate = await cloud.compute("POST", "/os-aggregates", json={
        "aggregate": {"name": "fast"}})
    assert_compute_error(duplicate, 409, "conflictingRequest")

    added = await cloud.compute("POST", f"{path}/action", json={
        "add_host": {"host": "node-1"}})
    assert added.status_code == 200, added.text
    assert added.json()["aggregate"]["hosts"] == ["node-1"]
    assert_compute_error(await cloud.compute("POST", f"{path}/action", json={
        "add_host": {"host": "node-1"}}), 409, "conflictingRequest")
    assert_compute_error(await cloud.compute("POST", f"{path}/action", json={
        "add_host": {"host": "nowhere"}}), 404, "itemNotFound")

    tagged = await cloud.compute("POST", f"{path}/action", json={
        "set_metadata": {"metadata": {"ssd": "true", "gpu": "no"}}})
    assert tagged.json()["aggregate"]["metadata"] == {
        "availability_zone": "zone-a", "ssd": "true", "gpu": "no"}
    assert await _provider_metadata(cloud, "node-1") == {
        "availability_zone": "zone-a", "ssd": "true", "gpu": "no"}
    # A host's report keeps what its aggregates gave its provider.
    await _host(cloud, "node-1")
    untagged = await cloud.compute("POST", f"{path}/action", json={
        "set_metadata": {"metadata": {"gpu": None}}})
    assert "gpu" not in untagged.json()["aggregate"]["metadata"]
    assert await _provider_metadata(cloud, "node-1") == {
        "availability_zone": "zone-a", "ssd": "true"}

    renamed = await cloud.compute("PUT", path, json={"aggregate": {"name": "faster"}})
    assert renamed.json()["aggregate"]["name"] == "faster"
    listed = (await cloud.compute("GET", "/os-aggregates")).json()["aggregates"]
    assert [(a["name"], a["hosts"]) for a in listed] == [("faster", ["node-1"])]
    assert "uuid" not in listed[0]

    assert_compute_error(await cloud.compute("DELETE", path), 400, "badRequest")
    removed = await cloud.compute("POST", f"{path}/action", json={
        "remove_host": {"host": "node-1"}})
    assert removed.json()["aggregate"]["hosts"] == []
    assert await _provider_metadata(cloud, "node-1") == {}
    assert_compute_error(await cloud.compute("POST", f"{path}/action", json={
        "remove_host": {"host": "node-1"}}), 404, "itemNotFound")
    assert (await cloud.compute("DELETE", path)).status_code == 200
    assert_compute_error(await cloud.compute("GET", path), 404, "itemNotFound")
    assert_compute_error(await cloud.compute("GET", "/os-aggregates/x"), 400, "badRequest")


async def test_aggregates_are_an_operators(cloud: ComputeCloud) -> None:
    token, _, _ = await cloud.member("agg-user")
    for method, path in (("GET", "/os-aggregates"), ("POST", "/os-aggregates")):
        response = await cloud.compute(method, path, token=token,
                                       json={"aggregate": {"name": "x"}})
        assert_compute_error(response, 403, "forbidden")
    bad = await cloud.compute("POST", "/os-aggregates", json={"aggregate": {"name": ""}})
    assert_compute_error(bad, 400, "badRequest")


async def _zones(cloud: ComputeCloud) -> list[str]:
    body = (await cloud.compute("GET", "/os-availability-zone")).json()
    return [z["zoneName"] for z in body["availabilityZoneInfo"]]


async def test_an_aggregates_zone_is_its_hosts_zone(cloud: ComputeCloud) -> None:
    await _host(cloud, "node-1")
    assert await _zones(cloud) == ["nova"]
    zone_a = (await cloud.compute("POST", "/os-aggregates", json={
        "aggregate": {"name": "a", "availability_zone": "zone-a"}})).json()["aggregate"]
    zone_b = (await cloud.compute("POST", "/os-aggregates", json={
        "aggregate": {"name": "b", "availability_zone": "zone-b"}})).json()["aggregate"]
    no_zone = (await cloud.compute("POST", "/os-aggregates", json={
        "aggregate": {"name": "plain"}})).json()["aggregate"]
    for aggregate in (zone_a, no_zone):
        added = await cloud.compute("POST", f"/os-aggregates/{aggregate['id']}/action",
                                    json={"add_host": {"host": "node-1"}})
        assert added.status_code == 200, added.text
    assert await _zones(cloud) == ["zone-a"]
    # One zone at a time: not into zone-b, and the plain aggregate cannot get zone-b.
    assert_compute_error(await cloud.compute(
        "POST", f"/os-aggregates/{zone_b['id']}/action",
        json={"add_host": {"host": "node-1"}}), 409, "conflictingRequest")
    assert_compute_error(await cloud.compute(
        "PUT", f"/os-aggregates/{no_zone['id']}",
        json={"aggregate": {"availability_zone": "zone-b"}}), 409, "conflictingRequest")
    # A host's report keeps the zone its aggregate gave it.
    await _host(cloud, "node-1")
    assert await _zones(cloud) == ["zone-a"]
    await cloud.compute("POST", f"/os-aggregates/{zone_a['id']}/action",
                        json={"remove_host": {"host": "node-1"}})
    assert await _zones(cloud) == ["nova"]
