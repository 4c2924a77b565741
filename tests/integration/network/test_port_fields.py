"""A port list that asks a few ``fields`` builds none of the related rows it does not show
(compute asks ``device_id,security_groups`` of a page of servers' ports); what it shows, and
what a full list or a filter on a relation shows, stay the same."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from stratus.network.models import IPAllocation, PortAllowedAddressPair, PortSecurityGroup
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
    assert built == {"PortSecurityGroup": 3}
    with _loaded(*related) as built:
        assert (await cloud.call("GET", "/ports", params=by_device)).status_code == 200
    assert built == {"PortSecurityGroup": 3, "IPAllocation": 3, "PortAllowedAddressPair": 3}

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
