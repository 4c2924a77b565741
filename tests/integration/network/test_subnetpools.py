"""Subnet pools (``subnet_allocation``): CRUD, who sees and makes them, and subnets whose
CIDR is allocated from one."""

from __future__ import annotations

from tests.integration.network.conftest import NetCloud, assert_neutron_error


async def test_pool_lifecycle_and_allocation(cloud: NetCloud) -> None:
    member = await cloud.project()
    pool = await cloud.create("subnetpool", member, name="p",
                              prefixes=["10.10.0.0/16", "10.11.0.0/16", "10.10.4.0/24"],
                              default_prefixlen=24)
    # Overlapping prefixes are merged; the bounds default to Neutron's.
    assert pool["prefixes"] == ["10.10.0.0/15"]
    assert (pool["min_prefixlen"], pool["default_prefixlen"], pool["max_prefixlen"]) == (
        8, 24, 32)
    assert (pool["ip_version"], pool["shared"], pool["is_default"]) == (4, False, False)
    assert pool["project_id"] == member.project_id
    assert "subnet_allocation" in [e["alias"] for e in (
        await cloud.call("GET", "/extensions")).json()["extensions"]]

    net = await cloud.create("network", member, name="n")
    first = await cloud.create("subnet", member, network_id=net["id"], ip_version=4,
                               subnetpool_id=pool["id"])
    assert (first["cidr"], first["subnetpool_id"]) == ("10.10.0.0/24", pool["id"])
    assert first["gateway_ip"] == "10.10.0.1"
    # A chosen CIDR inside the pool, then the next free block of another length.
    chosen = await cloud.create("subnet", member, network_id=net["id"], ip_version=4,
                                subnetpool_id=pool["id"], cidr="10.10.1.0/25")
    assert chosen["cidr"] == "10.10.1.0/25"
    wide = await cloud.create("subnet", member, network_id=net["id"], ip_version=4,
                              subnetpool_id=pool["id"], prefixlen=23)
    assert wide["cidr"] == "10.10.2.0/23"
    listed = (await cloud.call("GET", f"/subnets?subnetpool_id={pool['id']}",
                               member)).json()["subnets"]
    assert {s["id"] for s in listed} == {first["id"], chosen["id"], wide["id"]}

    for body, status, error in (
            ({"cidr": "10.10.1.0/24"}, 409, "SubnetAllocationError"),  # overlaps chosen
            ({"cidr": "192.168.0.0/24"}, 409, "SubnetAllocationError"),  # not in the pool
            ({"prefixlen": 7}, 400, "InvalidInput")):  # under min_prefixlen
        response = await cloud.call("POST", "/subnets", member, json={"subnet": {
            "network_id": net["id"], "ip_version": 4, "subnetpool_id": pool["id"], **body}})
        assert_neutron_error(response, status, error)
    without_pool = await cloud.call("POST", "/subnets", member, json={"subnet": {
        "network_id": net["id"], "ip_version": 4, "cidr": "10.50.0.0/24", "prefixlen": 24}})
    assert_neutron_error(without_pool, 400, "InvalidInput")

    # Update: renamed, prefixes may grow but not shrink, bounds stay ordered.
    renamed = await cloud.call("PUT", f"/subnetpools/{pool['id']}", member, json={
        "subnetpool": {"name": "q", "prefixes": ["10.10.0.0/15", "10.20.0.0/16"]}})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["subnetpool"]["name"] == "q"
    assert renamed.json()["subnetpool"]["prefixes"] == ["10.10.0.0/15", "10.20.0.0/16"]
    assert renamed.json()["subnetpool"]["revision_number"] == 1
    for change in ({"prefixes": ["10.10.0.0/16"]}, {"min_prefixlen": 30}):
        assert_neutron_error(await cloud.call("PUT", f"/subnetpools/{pool['id']}", member,
                                              json={"subnetpool": change}), 400,
                             "InvalidInput")

    # In use: not deleted until its subnets are gone.
    assert_neutron_error(await cloud.call("DELETE", f"/subnetpools/{pool['id']}", member),
                         409, "SubnetPoolInUse")
    for subnet in (first, chosen, wide):
        assert (await cloud.call("DELETE", f"/subnets/{subnet['id']}",
                                 member)).status_code == 204
    assert (await cloud.call("DELETE", f"/subnetpools/{pool['id']}",
                             member)).status_code == 204
    assert_neutron_error(await cloud.call("GET", f"/subnetpools/{pool['id']}", member), 404,
                         "SubnetPoolNotFound")


async def test_shared_and_default_pools_are_an_admins(cloud: NetCloud) -> None:
    member, other = await cloud.project(), await cloud.project()
    for attrs in ({"shared": True}, {"is_default": True}):
        response = await cloud.call("POST", "/subnetpools", member, json={"subnetpool": {
            "name": "x", "prefixes": ["10.30.0.0/16"], **attrs}})
        assert_neutron_error(response, 403, "PolicyNotAuthorized")
    private = await cloud.create("subnetpool", member, prefixes=["10.31.0.0/16"])
    assert_neutron_error(await cloud.call("GET", f"/subnetpools/{private['id']}", other), 404,
                         "SubnetPoolNotFound")

    shared = await cloud.create("subnetpool", name="shared", prefixes=["10.40.0.0/16"],
                                shared=True, is_default=True, default_prefixlen=26)
    seen = (await cloud.call("GET", "/subnetpools", other)).json()["subnetpools"]
    assert [p["id"] for p in seen] == [shared["id"]]
    net = await cloud.create("network", other, name="n")
    subnet = await cloud.create("subnet", other, network_id=net["id"], ip_version=4,
                                use_default_subnetpool=True)
    assert (subnet["cidr"], subnet["subnetpool_id"]) == ("10.40.0.0/26", shared["id"])
    second_default = await cloud.call("POST", "/subnetpools", json={"subnetpool": {
        "prefixes": ["10.41.0.0/16"], "is_default": True}})
    assert_neutron_error(second_default, 400, "InvalidInput")
