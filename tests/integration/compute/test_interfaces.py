"""``os-interface`` end to end in one process: compute-api checks and makes ports with the
caller's token, the compute host binds them (noop network backend: wired at once), the fake
driver hot-plugs the NIC, and the server's addresses follow; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from tests.integration.compute.test_boot_flow import upload_image
from tests.integration.volume.test_server_volumes import Cloud, _server
from tests.integration.volume.test_server_volumes import cloud as cloud


async def _network(cloud: Cloud, name: str, cidr: str) -> dict[str, Any]:
    headers = cloud.headers()
    net = await cloud.client.post("/network/v2.0/networks", headers=headers,
                                  json={"network": {"name": name}})
    assert net.status_code == 201, net.text
    network: dict[str, Any] = net.json()["network"]
    subnet = await cloud.client.post("/network/v2.0/subnets", headers=headers, json={
        "subnet": {"network_id": network["id"], "cidr": cidr, "ip_version": 4}})
    assert subnet.status_code == 201, subnet.text
    return network


async def _port(cloud: Cloud, port_id: str) -> httpx.Response:
    return await cloud.client.get(f"/network/v2.0/ports/{port_id}", headers=cloud.headers())


async def _ports_on(cloud: Cloud, network_id: str) -> list[dict[str, Any]]:
    listed = await cloud.client.get(f"/network/v2.0/ports?network_id={network_id}",
                                    headers=cloud.headers())
    return [p for p in listed.json()["ports"]
            if not p["device_owner"].startswith("network:")]


async def test_attach_and_detach_ports_and_networks(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)  # type: ignore[arg-type]
    net = await _network(cloud, "blue", "10.41.0.0/24")
    other = await _network(cloud, "green", "10.42.0.0/24")
    created = await cloud.client.post("/network/v2.0/ports", headers=cloud.headers(),
                                      json={"port": {"network_id": net["id"]}})
    assert created.status_code == 201, created.text
    port = created.json()["port"]
    server = await _server(cloud, image_id, "nic")
    sid, host = server["id"], server["OS-EXT-SRV-ATTR:host"]
    driver = cloud.driver(server)

    # A port the user made: bound to the server's host, wired, plugged, in the addresses.
    attached = await cloud.compute("POST", f"/servers/{sid}/os-interface",
                                   json={"interfaceAttachment": {"port_id": port["id"]}})
    assert attached.status_code == 200, attached.text
    body = attached.json()["interfaceAttachment"]
    assert body["port_id"] == port["id"] and body["net_id"] == net["id"]
    assert body["mac_addr"] == port["mac_address"] and body["port_state"] == "ACTIVE"
    assert body["fixed_ips"][0]["ip_address"] == port["fixed_ips"][0]["ip_address"]
    assert body["tag"] is None  # 2.70+ shows the tag
    bound = (await _port(cloud, port["id"])).json()["port"]
    assert bound["device_id"] == sid and bound["binding:host_id"] == host
    assert bound["device_owner"].startswith("compute:") and bound["status"] == "ACTIVE"
    assert set(driver.interfaces(sid)) == {port["mac_address"]}
    shown = (await cloud.compute("GET", f"/servers/{sid}")).json()["server"]
    assert [a["addr"] for a in shown["addresses"]["blue"]] == [
        port["fixed_ips"][0]["ip_address"]]

    # A network: a port is made on it (with the address asked for) and tagged.
    on_net = await cloud.compute("POST", f"/servers/{sid}/os-interface", version="2.70",
                                 json={"interfaceAttachment": {
                                     "net_id": other["id"], "tag": "backend",
                                     "fixed_ips": [{"ip_address": "10.42.0.50"}]}})
    assert on_net.status_code == 200, on_net.text
    made = on_net.json()["interfaceAttachment"]
    assert made["tag"] == "backend" and made["fixed_ips"][0]["ip_address"] == "10.42.0.50"
    listed = (await cloud.compute("GET", f"/servers/{sid}/os-interface", version="2.70")
              ).json()["interfaceAttachments"]
    assert {(i["port_id"], i["tag"]) for i in listed} == {(port["id"], None),
                                                          (made["port_id"], "backend")}
    one = await cloud.compute("GET", f"/servers/{sid}/os-interface/{made['port_id']}")
    assert one.json()["interfaceAttachment"]["net_id"] == other["id"]
    assert len(driver.interfaces(sid)) == 2

    # Refusals, with nothing changed.
    for request, status in (
            ({"port_id": port["id"], "net_id": net["id"]}, 400),
            ({"port_id": port["id"], "fixed_ips": [{"ip_address": "10.41.0.9"}]}, 400),
            ({"port_id": port["id"]}, 409),  # in use
            ({"port_id": str(uuid.uuid4())}, 404),
            ({"net_id": str(uuid.uuid4())}, 404),
            ({"net_id": other["id"], "fixed_ips": [{"ip_address": "10.42.0.50"}]}, 409),
            ({"net_id": other["id"], "tag": "x"}, 400)):  # a tag needs 2.49
        refused = await cloud.compute("POST", f"/servers/{sid}/os-interface", version="2.48",
                                      json={"interfaceAttachment": request})
        assert refused.status_code == status, (request, refused.text)
    assert len(driver.interfaces(sid)) == 2
    assert len(await _ports_on(cloud, other["id"])) == 1
    missing = await cloud.compute("DELETE", f"/servers/{sid}/os-interface/{uuid.uuid4()}")
    assert missing.status_code == 404

    # Detach: the user's port is unbound and kept, the one made for the server deleted.
    gone = await cloud.compute("DELETE", f"/servers/{sid}/os-interface/{port['id']}")
    assert gone.status_code == 202, gone.text
    kept = (await _port(cloud, port["id"])).json()["port"]
    assert kept["device_id"] == "" and kept["binding:host_id"] == ""
    assert set(driver.interfaces(sid)) == {made["mac_addr"]}
    gone = await cloud.compute("DELETE", f"/servers/{sid}/os-interface/{made['port_id']}")
    assert gone.status_code == 202, gone.text
    assert (await _port(cloud, made["port_id"])).status_code == 404
    assert driver.interfaces(sid) == {}
    shown = (await cloud.compute("GET", f"/servers/{sid}")).json()["server"]
    assert shown["addresses"] == {}
    actions = (await cloud.compute("GET", f"/servers/{sid}/os-instance-actions")).json()
    assert {"attach_interface", "detach_interface"} <= {
        a["action"] for a in actions["instanceActions"]}


async def test_a_host_that_fails_the_hot_plug_leaves_no_port(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)  # type: ignore[arg-type]
    net = await _network(cloud, "red", "10.43.0.0/24")
    server = await _server(cloud, image_id, "nic")
    driver = cloud.driver(server)
    driver.fail_next("attach_interface", "no PCI slot left")
    failed = await cloud.compute("POST", f"/servers/{server['id']}/os-interface",
                                 json={"interfaceAttachment": {"net_id": net["id"]}})
    assert failed.status_code == 400, failed.text
    assert "no PCI slot left" in failed.json()["badRequest"]["message"]
    assert await _ports_on(cloud, net["id"]) == []
    assert driver.interfaces(server["id"]) == {}
    listed = await cloud.compute("GET", f"/servers/{server['id']}/os-interface")
    assert listed.json()["interfaceAttachments"] == []


async def test_deleting_a_server_gives_its_attached_ports_back(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)  # type: ignore[arg-type]
    net = await _network(cloud, "white", "10.44.0.0/24")
    own = (await cloud.client.post("/network/v2.0/ports", headers=cloud.headers(),
                                   json={"port": {"network_id": net["id"]}})).json()["port"]
    server = await _server(cloud, image_id, "nic")
    sid = server["id"]
    for request in ({"port_id": own["id"]}, {"net_id": net["id"]}):
        attached = await cloud.compute("POST", f"/servers/{sid}/os-interface",
                                       json={"interfaceAttachment": request})
        assert attached.status_code == 200, attached.text
    made = attached.json()["interfaceAttachment"]["port_id"]
    assert (await cloud.compute("DELETE", f"/servers/{sid}")).status_code == 204
    for _ in range(400):
        if (await cloud.compute("GET", f"/servers/{sid}")).status_code == 404:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the server was not deleted")
    # The port made for the network went with the server; the user's own is unbound.
    assert (await _port(cloud, made)).status_code == 404
    kept = (await _port(cloud, own["id"])).json()["port"]
    assert kept["device_id"] == "" and kept["binding:host_id"] == ""
