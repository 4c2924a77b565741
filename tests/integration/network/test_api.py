"""The Network v2.0 API: CRUD, defaults, errors in Neutron's format, listing, isolation."""

from __future__ import annotations

import ipaddress

from tests.integration.network.conftest import NetCloud, assert_neutron_error


async def test_discovery_needs_no_token(cloud: NetCloud) -> None:
    versions = await cloud.client.get("/network/")
    assert versions.status_code == 200
    assert versions.json()["versions"][0]["id"] == "v2.0"
    assert versions.json()["versions"][0]["links"][0]["href"] == "http://test/network/v2.0/"
    resources = await cloud.client.get("/network/v2.0")
    assert {r["collection"] for r in resources.json()["resources"]} >= {
        "networks", "subnets", "ports", "security-groups"}
    extensions = (await cloud.client.get("/network/v2.0/extensions")).json()["extensions"]
    aliases = {e["alias"] for e in extensions}
    assert {"binding", "security-group", "quotas", "agent", "external-net",
            "provider"} <= aliases
    one = await cloud.client.get("/network/v2.0/extensions/binding")
    assert one.json()["extension"]["alias"] == "binding"
    missing = await cloud.client.get("/network/v2.0/extensions/nope")
    assert_neutron_error(missing, 404, "NotFound")
    unauthenticated = await cloud.client.get("/network/v2.0/networks")
    assert unauthenticated.status_code == 401
    assert "NeutronError" in unauthenticated.json()


async def test_network_subnet_port_lifecycle(cloud: NetCloud) -> None:
    net = await cloud.create("network", name="blue", admin_state_up=True)
    assert net["status"] == "ACTIVE" and net["shared"] is False and net["subnets"] == []
    assert net["mtu"] == 1500 and net["router:external"] is False
    assert net["project_id"] == net["tenant_id"] == cloud.admin.project_id
    assert net["revision_number"] >= 1 and net["created_at"].endswith("Z")
    assert net["provider:network_type"] == "flat"  # admin sees provider attributes
    vxlan = await cloud.create("network", name="v", **{"provider:network_type": "vxlan"})
    assert vxlan["provider:network_type"] == "vxlan" and vxlan["provider:segmentation_id"] >= 1
    vlan = await cloud.call("POST", "/networks", json={"network": {
        "name": "vl", "provider:network_type": "vlan"}})
    assert_neutron_error(vlan, 400, "InvalidInput")

    sub = await cloud.create("subnet", network_id=net["id"], cidr="10.1.0.0/24",
                             ip_version=4, name="blue-sub")
    assert sub["gateway_ip"] == "10.1.0.1"
    assert sub["allocation_pools"] == [{"start": "10.1.0.2", "end": "10.1.0.254"}]
    assert sub["enable_dhcp"] is True and sub["dns_nameservers"] == []
    assert sub["host_routes"] == [] and sub["ipv6_ra_mode"] is None
    shown = (await cloud.call("GET", f"/networks/{net['id']}")).json()["network"]
    assert shown["subnets"] == [sub["id"]]

    port = await cloud.create("port", network_id=net["id"], name="p1")
    assert port["mac_address"].startswith("fa:16:3e:")
    assert port["status"] == "DOWN"
    assert port["fixed_ips"][0]["subnet_id"] == sub["id"]
    assert port["fixed_ips"][0]["ip_address"].startswith("10.1.0.")
    assert port["binding:vif_type"] == "unbound" and port["binding:vnic_type"] == "normal"
    assert len(port["security_groups"]) == 1  # the project's default group

    got = (await cloud.call("GET", f"/ports/{port['id']}")).json()["port"]
    assert got == port
    updated = await cloud.call("PUT", f"/ports/{port['id']}", json={"port": {"name": "p2"}})
    assert updated.status_code == 200
    assert updated.json()["port"]["name"] == "p2"
    assert updated.json()["port"]["revision_number"] > port["revision_number"]

    busy = await cloud.call("DELETE", f"/networks/{net['id']}")
    assert_neutron_error(busy, 409, "NetworkInUse")
    busy = await cloud.call("DELETE", f"/subnets/{sub['id']}")
    assert_neutron_error(busy, 409, "SubnetInUse")

    deleted = await cloud.call("DELETE", f"/ports/{port['id']}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert_neutron_error(await cloud.call("GET", f"/ports/{port['id']}"), 404, "PortNotFound")
    assert (await cloud.call("DELETE", f"/subnets/{sub['id']}")).status_code == 204
    assert (await cloud.call("DELETE", f"/networks/{net['id']}")).status_code == 204
    assert_neutron_error(await cloud.call("GET", f"/networks/{net['id']}"), 404,
                         "NetworkNotFound")


async def test_subnet_options_and_validation(cloud: NetCloud) -> None:
    net = await cloud.create("network", name="opts")
    sub = await cloud.create(
        "subnet", network_id=net["id"], cidr="192.168.10.0/24", ip_version=4,
        gateway_ip="192.168.10.254", dns_nameservers=["8.8.8.8"], enable_dhcp=False,
        allocation_pools=[{"start": "192.168.10.10", "end": "192.168.10.20"}],
        host_routes=[{"destination": "10.9.0.0/16", "nexthop": "192.168.10.1"}])
    assert sub["gateway_ip"] == "192.168.10.254" and sub["enable_dhcp"] is False
    assert sub["allocation_pools"] == [{"start": "192.168.10.10", "end": "192.168.10.20"}]
    assert sub["host_routes"] == [{"destination": "10.9.0.0/16", "nexthop": "192.168.10.1"}]
    no_gw = await cloud.create("subnet", network_id=net["id"], cidr="192.168.11.0/24",
                               ip_version=4, gateway_ip=None)
    assert no_gw["gateway_ip"] is None
    assert no_gw["allocation_pools"] == [{"start": "192.168.11.1", "end": "192.168.11.254"}]

    bad = [
        ({"network_id": net["id"], "cidr": "192.168.10.128/25"}, "overlaps"),
        ({"network_id": net["id"], "cidr": "10.0.0.5/24"}, "cidr"),
        ({"network_id": net["id"], "cidr": "fd00::/64", "ip_version": 6}, "IPv4"),
        ({"network_id": net["id"], "cidr": "10.5.0.0/24", "gateway_ip": "10.6.0.1"},
         "Gateway"),
        ({"network_id": net["id"], "cidr": "10.5.0.0/24",
          "allocation_pools": [{"start": "10.5.0.1", "end": "10.5.0.9"}]}, "conflicts"),
        ({"network_id": net["id"], "cidr": "10.5.0.0/24", "dns_nameservers": ["x"]},
         "not a valid IP"),
        ({"network_id": net["id"], "cidr": "10.5.0.0/24", "bogus": 1}, "Unrecognized"),
    ]
    for body, words in bad:
        response = await cloud.call("POST", "/subnets", json={"subnet": body})
        message = assert_neutron_error(response, 400, "InvalidInput")
        assert words in message, (body, message)
    missing_net = await cloud.call("POST", "/subnets", json={"subnet": {
        "network_id": "00000000-0000-0000-0000-000000000000", "cidr": "10.7.0.0/24"}})
    assert_neutron_error(missing_net, 404, "NetworkNotFound")
    garbage = await cloud.call("POST", "/networks", content=b"{not json",
                               headers={"Content-Type": "application/json"})
    assert garbage.status_code == 400 and "NeutronError" in garbage.json()
    wrong_key = await cloud.call("POST", "/networks", json={"net": {}})
    assert_neutron_error(wrong_key, 400, "InvalidInput")

    updated = await cloud.call("PUT", f"/subnets/{sub['id']}", json={"subnet": {
        "dns_nameservers": ["1.1.1.1", "9.9.9.9"], "name": "renamed"}})
    assert updated.status_code == 200, updated.text
    assert updated.json()["subnet"]["dns_nameservers"] == ["1.1.1.1", "9.9.9.9"]
    read_only = await cloud.call("PUT", f"/subnets/{sub['id']}",
                                 json={"subnet": {"cidr": "10.0.0.0/8"}})
    assert_neutron_error(read_only, 400, "InvalidInput")


async def test_port_fixed_ips_mac_and_readdressing(cloud: NetCloud) -> None:
    net, sub = await cloud.network_with_subnet(cidr="10.2.0.0/28")
    fixed = await cloud.create("port", network_id=net["id"],
                               fixed_ips=[{"ip_address": "10.2.0.5"}],
                               mac_address="fa:16:3e:00:00:01")
    assert fixed["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": "10.2.0.5"}]
    assert fixed["mac_address"] == "fa:16:3e:00:00:01"
    taken = await cloud.call("POST", "/ports", json={"port": {
        "network_id": net["id"], "fixed_ips": [{"ip_address": "10.2.0.5"}]}})
    assert_neutron_error(taken, 409, "IpAddressAlreadyAllocated")
    same_mac = await cloud.call("POST", "/ports", json={"port": {
        "network_id": net["id"], "mac_address": "fa:16:3e:00:00:01"}})
    assert_neutron_error(same_mac, 409, "MacAddressInUse")
    outside = await cloud.call("POST", "/ports", json={"port": {
        "network_id": net["id"], "fixed_ips": [{"ip_address": "10.3.0.5"}]}})
    assert_neutron_error(outside, 400, "InvalidIpForSubnet")
    gateway = await cloud.call("POST", "/ports", json={"port": {
        "network_id": net["id"], "fixed_ips": [{"ip_address": "10.2.0.1"}]}})
    assert gateway.status_code == 409
    by_subnet = await cloud.create("port", network_id=net["id"],
                                   fixed_ips=[{"subnet_id": sub["id"]}])
    assert by_subnet["fixed_ips"][0]["subnet_id"] == sub["id"]

    # Re-addressing frees the old address: another port can take it at once. The new
    # address is one no port holds (the ones above got theirs from the allocator).
    listed = (await cloud.call("GET", f"/ports?network_id={net['id']}")).json()["ports"]
    held = {ip["ip_address"] for p in listed for ip in p["fixed_ips"]}
    pool = sub["allocation_pools"][0]
    last = ipaddress.ip_address(pool["end"])
    target = next(str(last - n) for n in range(32) if str(last - n) not in held)
    moved = await cloud.call("PUT", f"/ports/{fixed['id']}", json={"port": {
        "fixed_ips": [{"ip_address": target}]}})
    assert moved.status_code == 200, moved.text
    assert moved.json()["port"]["fixed_ips"] == [{"subnet_id": sub["id"],
                                                   "ip_address": target}]
    reuse = await cloud.create("port", network_id=net["id"],
                               fixed_ips=[{"ip_address": "10.2.0.5"}])
    assert reuse["fixed_ips"][0]["ip_address"] == "10.2.0.5"
    kept = await cloud.call("PUT", f"/ports/{fixed['id']}", json={"port": {
        "fixed_ips": [{"ip_address": target}, {"subnet_id": sub["id"]}]}})
    assert kept.status_code == 200, kept.text
    addresses = [ip["ip_address"] for ip in kept.json()["port"]["fixed_ips"]]
    assert addresses[0] == target and len(addresses) == 2


async def test_ipam_exhaustion_and_reuse(cloud: NetCloud) -> None:
    net, _sub = await cloud.network_with_subnet(cidr="10.4.0.0/29")  # 5 usable addresses
    ports = [await cloud.create("port", network_id=net["id"]) for _ in range(5)]
    addresses = {p["fixed_ips"][0]["ip_address"] for p in ports}
    assert addresses == {f"10.4.0.{i}" for i in range(2, 7)}
    full = await cloud.call("POST", "/ports", json={"port": {"network_id": net["id"]}})
    assert_neutron_error(full, 409, "IpAddressGenerationFailure")
    # Nothing was left behind by the failed create.
    listed = (await cloud.call("GET", "/ports", params={"network_id": net["id"]})).json()
    assert len(listed["ports"]) == 5
    freed = ports[2]["fixed_ips"][0]["ip_address"]
    assert (await cloud.call("DELETE", f"/ports/{ports[2]['id']}")).status_code == 204
    again = await cloud.create("port", network_id=net["id"])
    assert again["fixed_ips"][0]["ip_address"] == freed


async def test_listing_filters_fields_sort_and_pages(cloud: NetCloud) -> None:
    net, _ = await cloud.network_with_subnet(cidr="10.6.0.0/24")
    names = ["c", "a", "b", "a"]
    for name in names:
        await cloud.create("port", network_id=net["id"], name=name)
    base = {"network_id": net["id"]}
    only_a = (await cloud.call("GET", "/ports", params={**base, "name": "a"})).json()["ports"]
    assert [p["name"] for p in only_a] == ["a", "a"]
    a_or_b = (await cloud.call("GET", "/ports", params=[
        ("name", "a"), ("name", "b"), ("network_id", net["id"])])).json()["ports"]
    assert sorted(p["name"] for p in a_or_b) == ["a", "a", "b"]
    cut = (await cloud.call("GET", "/ports", params=[
        ("fields", "id"), ("fields", "name"), ("fields", "fixed_ips"),
        ("network_id", net["id"])])).json()["ports"]
    assert all(set(p) == {"id", "name", "fixed_ips"} for p in cut)
    by_status = (await cloud.call("GET", "/ports", params={**base, "status": "DOWN",
                                                           "admin_state_up": "True"})).json()
    assert len(by_status["ports"]) == 4
    ip = cut[0]["fixed_ips"][0]["ip_address"]
    by_ip = (await cloud.call("GET", "/ports", params={
        **base, "fixed_ips": f"ip_address={ip}"})).json()["ports"]
    assert [p["id"] for p in by_ip] == [cut[0]["id"]]
    ordered = (await cloud.call("GET", "/ports", params={
        **base, "sort_key": "name", "sort_dir": "desc"})).json()["ports"]
    assert [p["name"] for p in ordered] == ["c", "b", "a", "a"]

    seen: list[str] = []
    url = f"/ports?sort_key=name&sort_dir=asc&limit=3&network_id={net['id']}"
    page = (await cloud.call("GET", url)).json()
    seen += [p["name"] for p in page["ports"]]
    next_link = next(link for link in page["ports_links"] if link["rel"] == "next")["href"]
    assert next_link.startswith("http://test/network/v2.0/ports?")
    page = (await cloud.client.get(next_link, headers=cloud.admin.headers)).json()
    seen += [p["name"] for p in page["ports"]]
    assert seen == ["a", "a", "b", "c"]
    assert not [link for link in page.get("ports_links", []) if link["rel"] == "next"]

    unknown = await cloud.call("GET", "/ports", params={"colour": "red"})
    assert_neutron_error(unknown, 400, "InvalidInput")
    bad_dir = await cloud.call("GET", "/ports?sort_key=name&sort_dir=up")
    assert_neutron_error(bad_dir, 400, "InvalidInput")


async def test_bulk_create_is_all_or_nothing(cloud: NetCloud) -> None:
    net, _ = await cloud.network_with_subnet(cidr="10.8.0.0/24")
    response = await cloud.call("POST", "/ports", json={"ports": [
        {"network_id": net["id"], "name": "x"}, {"network_id": net["id"], "name": "y"}]})
    assert response.status_code == 201, response.text
    assert [p["name"] for p in response.json()["ports"]] == ["x", "y"]
    failing = await cloud.call("POST", "/ports", json={"ports": [
        {"network_id": net["id"], "name": "z"},
        {"network_id": net["id"], "fixed_ips": [{"ip_address": "10.9.9.9"}]}]})
    assert failing.status_code == 400
    names = [p["name"] for p in (await cloud.call(
        "GET", "/ports", params={"network_id": net["id"]})).json()["ports"]]
    assert sorted(names) == ["x", "y"]


async def test_project_isolation_and_shared_networks(cloud: NetCloud) -> None:
    alice, bob = await cloud.project(), await cloud.project()
    private, _ = await cloud.network_with_subnet(alice, cidr="10.10.0.0/24")
    assert private["project_id"] == alice.project_id
    assert "provider:network_type" not in private  # members do not see provider attributes
    assert_neutron_error(await cloud.call("GET", f"/networks/{private['id']}", bob), 404,
                         "NetworkNotFound")
    listed = (await cloud.call("GET", "/networks", bob)).json()["networks"]
    assert private["id"] not in {n["id"] for n in listed}
    steal = await cloud.call("POST", "/ports", bob, json={"port": {
        "network_id": private["id"]}})
    assert_neutron_error(steal, 404, "NetworkNotFound")
    admin_view = (await cloud.call("GET", f"/networks/{private['id']}")).json()
    assert admin_view["network"]["id"] == private["id"]

    not_shareable = await cloud.call("POST", "/networks", alice, json={"network": {
        "name": "s", "shared": True}})
    assert_neutron_error(not_shareable, 403, "PolicyNotAuthorized")
    shared = await cloud.create("network", name="shared-net", shared=True)
    await cloud.create("subnet", network_id=shared["id"], cidr="10.11.0.0/24")
    seen = (await cloud.call("GET", f"/networks/{shared['id']}", bob)).json()["network"]
    assert seen["shared"] is True and len(seen["subnets"]) == 1
    port = await cloud.create("port", bob, network_id=shared["id"])
    assert port["project_id"] == bob.project_id
    assert_neutron_error(await cloud.call("GET", f"/ports/{port['id']}", alice), 404,
                         "PortNotFound")
    binding = await cloud.call("POST", "/ports", bob, json={"port": {
        "network_id": shared["id"], "binding:host_id": "node1"}})
    assert_neutron_error(binding, 403, "PolicyNotAuthorized")
    delete_shared = await cloud.call("DELETE", f"/networks/{shared['id']}", bob)
    assert delete_shared.status_code in (403, 404)


async def test_binding_needs_admin_or_a_service_token(cloud: NetCloud) -> None:
    """As a compute host binds a user's port: the user's token plus its own service token."""
    member = await cloud.project()
    net, _ = await cloud.network_with_subnet(member, cidr="10.12.0.0/24")
    body = {"port": {"network_id": net["id"], "device_id": "vm", "device_owner": "compute:nova",
                     "binding:host_id": "node1"}}
    alone = await cloud.call("POST", "/ports", member, json=body)
    assert_neutron_error(alone, 403, "PolicyNotAuthorized")
    forged = await cloud.call("POST", "/ports", member, json=body,
                              headers={"X-Service-Token": "not-a-token"})
    assert forged.status_code == 401
    service = {"X-Service-Token": cloud.admin.token}
    bound = await cloud.call("POST", "/ports", member, json=body, headers=service)
    assert bound.status_code == 201, bound.text
    port = bound.json()["port"]
    assert port["project_id"] == member.project_id  # still the user's port
    assert port["binding:host_id"] == "node1" and port["status"] == "ACTIVE"  # noop
    # The user alone reads the port, without the binding attributes.
    seen = (await cloud.call("GET", f"/ports/{port['id']}", member)).json()["port"]
    assert "binding:host_id" not in seen and seen["status"] == "ACTIVE"
    unbind = await cloud.call("PUT", f"/ports/{port['id']}", member, headers=service,
                              json={"port": {"binding:host_id": "", "device_id": ""}})
    assert unbind.status_code == 200 and unbind.json()["port"]["binding:host_id"] == ""


async def test_tags(cloud: NetCloud) -> None:
    red = await cloud.create("network", name="red")
    blue = await cloud.create("network", name="blue")
    replaced = await cloud.call("PUT", f"/networks/{red['id']}/tags",
                                json={"tags": ["a", "b", "a"]})
    assert replaced.status_code == 200 and replaced.json() == {"tags": ["a", "b"]}
    assert (await cloud.call("PUT", f"/networks/{blue['id']}/tags/b")).status_code == 201
    assert (await cloud.call("GET", f"/networks/{red['id']}/tags/a")).status_code == 204
    missing = await cloud.call("GET", f"/networks/{blue['id']}/tags/a")
    assert_neutron_error(missing, 404, "TagNotFound")
    shown = (await cloud.call("GET", f"/networks/{red['id']}")).json()["network"]
    assert shown["tags"] == ["a", "b"] and shown["revision_number"] > red["revision_number"]

    async def names(**params: str) -> list[str]:
        body = (await cloud.call("GET", "/networks", params=params)).json()["networks"]
        return sorted(n["name"] for n in body if n["name"] in ("red", "blue"))

    assert await names(tags="a,b") == ["red"]
    assert await names(**{"tags-any": "a,b"}) == ["blue", "red"]
    assert await names(**{"not-tags": "a"}) == ["blue"]
    assert await names(**{"not-tags-any": "b"}) == []
    bad = await cloud.call("PUT", f"/networks/{red['id']}/tags", json={"tags": ["x,y"]})
    assert_neutron_error(bad, 400, "InvalidInput")
    assert (await cloud.call("DELETE", f"/networks/{red['id']}/tags/a")).status_code == 204
    assert (await cloud.call("DELETE", f"/networks/{red['id']}/tags")).status_code == 204
    assert (await cloud.call("GET", f"/networks/{red['id']}/tags")).json() == {"tags": []}
    other = await cloud.project()
    hidden = await cloud.call("PUT", f"/networks/{red['id']}/tags/z", other)
    assert_neutron_error(hidden, 404, "NetworkNotFound")
    unknown = await cloud.call("GET", f"/routers/{red['id']}/tags")
    assert unknown.status_code == 404


async def test_members_choose_addresses_only_on_their_own_networks(cloud: NetCloud) -> None:
    owner, guest = await cloud.project(), await cloud.project()
    own, _ = await cloud.network_with_subnet(owner, cidr="10.13.0.0/24")
    port = await cloud.create("port", owner, network_id=own["id"],
                              fixed_ips=[{"ip_address": "10.13.0.50"}],
                              mac_address="fa:16:3e:aa:bb:cc")
    assert port["fixed_ips"][0]["ip_address"] == "10.13.0.50"
    shared = await cloud.create("network", name="shared-addr", shared=True)
    await cloud.create("subnet", network_id=shared["id"], cidr="10.14.0.0/24")
    chosen_ip = await cloud.create("port", guest, network_id=shared["id"],
                                   fixed_ips=[{"ip_address": "10.14.0.9"}])
    assert chosen_ip["fixed_ips"][0]["ip_address"] == "10.14.0.9"
    chosen_mac = await cloud.call("POST", "/ports", guest, json={"port": {
        "network_id": shared["id"], "mac_address": "fa:16:3e:aa:bb:cd"}})
    assert_neutron_error(chosen_mac, 403, "PolicyNotAuthorized")
