"""IPAM under contention: more concurrent port creates than free addresses.

A /24 whose allocation pool holds 250 addresses gets 500 concurrent ``POST /ports``:
exactly 250 succeed, no address is handed out twice, the other 250 get Neutron's 409
``IpAddressGenerationFailure``, and nothing is left behind by the failures.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from tests.integration.network.conftest import NetCloud

FREE = 250
REQUESTS = 500


async def test_500_creates_for_250_addresses(cloud: NetCloud) -> None:
    net = await cloud.create("network", name="contended")
    sub = await cloud.create("subnet", network_id=net["id"], cidr="10.20.0.0/24",
                             allocation_pools=[{"start": "10.20.0.2", "end": "10.20.0.251"}])
    assert sub["allocation_pools"] == [{"start": "10.20.0.2", "end": "10.20.0.251"}]

    async def create(i: int) -> tuple[int, dict[str, object]]:
        response = await cloud.call("POST", "/ports", json={"port": {
            "network_id": net["id"], "name": f"p{i}"}})
        return response.status_code, response.json()

    results = await asyncio.gather(*(create(i) for i in range(REQUESTS)))
    statuses = Counter(status for status, _ in results)
    assert statuses == {201: FREE, 409: REQUESTS - FREE}, statuses
    addresses = [body["port"]["fixed_ips"][0]["ip_address"]  # type: ignore[index]
                 for status, body in results if status == 201]
    assert len(set(addresses)) == FREE
    assert set(addresses) == {f"10.20.0.{i}" for i in range(2, 252)}
    macs = [body["port"]["mac_address"] for status, body in results  # type: ignore[index]
            if status == 201]
    assert len(set(macs)) == FREE
    for status, body in results:
        if status == 409:
            assert body["NeutronError"]["type"] == "IpAddressGenerationFailure", body  # type: ignore[index]

    listed = (await cloud.call("GET", "/ports", params={"network_id": net["id"]})).json()
    assert len(listed["ports"]) == FREE
    held = sorted(p["fixed_ips"][0]["ip_address"] for p in listed["ports"])
    assert held == sorted(addresses)
