"""A port list that asks a few ``fields`` builds none of the related rows it does not show
(compute asks ``device_id,security_groups`` of a page of servers' ports); what it shows, and
what a full list or a filter on a relation shows, stay the same."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from stratus.network.models import (
    IPAllocation,
    Network,
    Port,
    PortAllowedAddressPair,
    PortSecurityGroup,
    Subnet,
)
from tests.integration.network.conftest import NetCloud


@contextmanager
def _loaded(*classes: type) -> Iterator[Counter[str]]:
    """How many objects of each of ``classes`` the ORM builds from rows meanwhile."""
    built: Counter[str] = Counter()

    def count(target: Any, context: Any) -> None:
        built[type(target).__name__] += 1

    for cls in classes:
        event.listen(cls, "load", count)
    try:
        yield built
    finally:
        for cls in classes:
            event.remove(cls, "load", count)


async def test_a_few_fields_load_only_the_relations_they_show(cloud: NetCloud) -> None:
    net, sub = await cloud.network_with_subnet()
    group = await cloud.create("security-group", name="web")
    ports = [await cloud.create("port", network_id=net["id"], device_id=f"server-{n}",
                                security_groups=[group["id"]],
                                allowed_address_pairs=[{"ip_address": "10.1.0.200"}])
             for n in range(3)]

    related = (IPAllocation, PortAllowedAddressPair, PortSecurityGroup)
    by_device = [("device_id", p["device_id"]) for p in ports]
    with _loaded(*related) as built:
        few = await cloud.call("GET", "/ports", params=[
            *by_device, ("fields", "device_id"), ("fields", "security_groups")])
    assert few.status_code == 200, few.text
    assert sorted((p["device_id"], p["security_groups"]) for p in few.json()["ports"]) == [
        (f"server-{n}", [group["id"]]) for n in range(3)]
    # The groups a list shows come with its page's rows (their ids), not as rows of their own.
    assert built == {}
    with _loaded(*related) as built:
        assert (await cloud.call("GET", "/ports", params=by_device)).status_code == 200
    assert built == {"IPAllocation": 3, "PortAllowedAddressPair": 3}

    # Asked for, or filtered on, a relation is loaded as before.
    full = await cloud.call("GET", "/ports", params={"device_id": "server-0",
                                                     "fields": "fixed_ips"})
    (shown,) = full.json()["ports"]
    assert shown["fixed_ips"] == ports[0]["fixed_ips"] and shown["fixed_ips"]
    address = ports[1]["fixed_ips"][0]["ip_address"]
    filtered = await cloud.call("GET", "/ports", params=[
        ("fixed_ips", f"ip_address={address}"), ("fields", "id")])
    assert [p["id"] for p in filtered.json()["ports"]] == [ports[1]["id"]]
    whole = await cloud.call("GET", "/ports", params={"device_id": "server-2"})
    (port,) = whole.json()["ports"]
    assert port["allowed_address_pairs"][0]["ip_address"] == "10.1.0.200"
    assert port["fixed_ips"] and port["security_groups"] == [group["id"]]
    assert sub["id"] == port["fixed_ips"][0]["subnet_id"]


async def test_a_created_port_shows_what_the_database_then_holds(cloud: NetCloud) -> None:
    """A create answers from the rows it wrote, not from a read-back: the answer is what a
    GET of the port shows afterwards, with two addresses (given out of order), two groups
    and the MAC drawn for it; and the port changes as any other in the same request's
    session would (an update right after sees one revision)."""
    net, sub = await cloud.network_with_subnet(cidr="10.7.0.0/24")
    second = await cloud.create("subnet", network_id=net["id"], cidr="10.8.0.0/24",
                                ip_version=4)
    groups = sorted([(await cloud.create("security-group", name=f"g{n}"))["id"]
                     for n in range(2)], reverse=True)
    created = await cloud.create("port", network_id=net["id"], name="shown",
                                 security_groups=groups, fixed_ips=[
                                     {"subnet_id": second["id"], "ip_address": "10.8.0.9"},
                                     {"subnet_id": sub["id"]}])
    shown = (await cloud.call("GET", f"/ports/{created['id']}")).json()["port"]
    # The groups' order is the database's on a read (none is defined): compared as sets.
    assert {**created, "security_groups": sorted(created["security_groups"])} == \
        {**shown, "security_groups": sorted(shown["security_groups"])}
    assert created["fixed_ips"][0]["ip_address"] == "10.8.0.9"
    assert created["security_groups"] == groups
    assert created["revision_number"] == 1 and created["mac_address"]
    default = await cloud.create("port", network_id=net["id"])
    assert default == (await cloud.call("GET", f"/ports/{default['id']}")).json()["port"]
    assert len(default["fixed_ips"]) == 1 and len(default["security_groups"]) == 1


async def test_a_port_create_builds_no_object_from_a_read(cloud: NetCloud) -> None:
    """A create reads its network and subnets by one Core statement and shows the port from
    the rows it wrote: the ORM builds no network, subnet or port from a row meanwhile (its
    joined load of the network with its subnets was ~390 of a create's ~4,400 Python calls),
    and the answer is still what a GET then shows."""
    net, sub = await cloud.network_with_subnet(cidr="10.9.0.0/24")
    await cloud.create("port", network_id=net["id"])  # the project's default group made
    with _loaded(Network, Subnet, Port, IPAllocation, PortSecurityGroup) as built:
        created = await cloud.create("port", network_id=net["id"], name="plain")
    assert built == {}
    assert created == (await cloud.call("GET", f"/ports/{created['id']}")).json()["port"]
    assert created["fixed_ips"][0]["subnet_id"] == sub["id"]


async def test_a_port_bound_at_create_is_active_in_the_database_too(cloud: NetCloud) -> None:
    """A server's port bound as it is made is wired at once by the noop backend: ACTIVE in
    the answer and in the database (the notifier's change to a port made persistent in the
    session, flushed before the commit)."""
    net, _ = await cloud.network_with_subnet(cidr="10.10.0.0/24")
    created = await cloud.create("port", network_id=net["id"], device_id="server-1",
                                 device_owner="compute:nova", **{"binding:host_id": "host-1"})
    assert created["status"] == "ACTIVE"
    shown = (await cloud.call("GET", f"/ports/{created['id']}")).json()["port"]
    assert shown["status"] == "ACTIVE" and shown["binding:host_id"] == "host-1"
