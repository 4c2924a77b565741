"""The resource pages in a real browser (Debian's chromium driven by Playwright) against
one ``stratus up`` (fake hypervisor, network backend noop: the API and IPAM, no kernel
work): volumes, networks, routers, floating IPs, security groups, one flow each, every
result checked through the API. The cloud and the browser are the session's
(``conftest.py``); each test logs in with a fresh browser context.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from stratus.core.clients.volume import BOOT_FOR, DELETE_ON_TERMINATION
from tests.e2e.dashboard_browser import Admin, until

pytestmark = pytest.mark.e2e

# The session's dashboard cloud, its admin and a logged-in page (``conftest.py``), under
# the names these tests use.


@pytest.fixture
def admin(dashboard_admin: Admin) -> Admin:
    return dashboard_admin


@pytest.fixture
def page(dashboard_page: Any) -> Any:
    return dashboard_page


def test_volumes_create_attach_extend_snapshot_and_delete(page: Any, admin: Admin,
                                                          tmp_path: Path) -> None:
    from playwright.sync_api import expect

    server = admin.server("vol-host")
    page.get_by_role("link", name="Volumes").click()
    expect(page.get_by_role("heading", name="Create a volume")).to_be_visible()
    page.get_by_label("Name", exact=True).fill("data-1")
    page.get_by_label("Size (GiB)").fill("1")
    page.get_by_role("button", name="Create volume").click()
    row = page.locator("tr", has_text="data-1")
    expect(row.locator(".state")).to_have_text("available", timeout=60_000)
    volume = admin.volumes()["data-1"]
    assert volume["size"] == 1

    # A row in transition polls, and turns stable in place: the page is not reloaded.
    admin.reset_status(volume["id"], "creating")
    page.reload()
    expect(row.locator(".state")).to_have_text("creating")
    loads: list[str] = []
    page.on("load", lambda: loads.append(page.url))
    admin.reset_status(volume["id"], "available")
    expect(row.locator(".state")).to_have_text("available", timeout=60_000)
    expect(page.locator("#row-poller")).not_to_have_attribute("hx-post", re.compile("."))
    assert loads == []

    row.get_by_label("Attach data-1 to").select_option(label="vol-host")
    row.get_by_role("button", name="Attach data-1").click()
    expect(row.locator(".state")).to_have_text("in-use", timeout=60_000)
    expect(row).to_contain_text("vol-host on /dev/vdb")
    (attached,) = admin.volumes()["data-1"]["attachments"]
    assert attached["server_id"] == server["id"]
    page.screenshot(path=str(tmp_path / "volumes.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: no sideways scrolling
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(tmp_path / "volumes-phone.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 800})

    # The volume API's refusal is said at the row, not as an error page.
    row.get_by_label("New size of data-1 (GiB)").fill("1")
    row.get_by_role("button", name="Extend data-1").click()
    expect(row.locator(".error")).to_be_visible()
    assert admin.volumes()["data-1"]["size"] == 1

    row.get_by_role("button", name="Detach data-1 from vol-host").click()
    expect(row.locator(".state")).to_have_text("available", timeout=60_000)
    row.get_by_label("New size of data-1 (GiB)").fill("2")
    row.get_by_role("button", name="Extend data-1").click()
    expect(row.locator(".state")).to_have_text("available", timeout=60_000)
    expect(row).to_contain_text("2 GiB")
    assert admin.volumes()["data-1"]["size"] == 2

    page.get_by_label("Snapshot name").fill("data-1-snap")
    page.get_by_role("button", name="Create snapshot").click()
    snapshot = page.locator("#snapshots tr", has_text="data-1-snap")
    expect(snapshot.locator(".state")).to_have_text("available", timeout=60_000)
    snapshots = admin.get(f"/volume/v3/{admin.project_id}/snapshots/detail")["snapshots"]
    assert [(s["name"], s["volume_id"]) for s in snapshots] == [
        ("data-1-snap", admin.volumes()["data-1"]["id"])]
    snapshot.get_by_role("button", name="Delete snapshot data-1-snap").click()
    expect(snapshot).to_have_count(0, timeout=60_000)
    page.get_by_role("button", name="Delete volume data-1").click()
    expect(row).to_have_count(0, timeout=60_000)
    until(lambda: "data-1" not in admin.volumes(), "data-1 deleted")

    # From an image: the image's bytes, a bootable volume.
    page.get_by_label("Name", exact=True).fill("boot-1")
    page.get_by_role("radio", name="From an image").check()
    page.get_by_label("Image (when from an image)").select_option(label="vol-host-image")
    page.get_by_role("button", name="Create volume").click()
    boot = page.locator("tr", has_text="boot-1")
    expect(boot.locator(".state")).to_have_text("available", timeout=60_000)
    expect(boot).to_contain_text("(bootable)")
    (image,) = admin.get("/image/v2/images?name=vol-host-image")["images"]
    assert admin.volumes()["boot-1"]["volume_image_metadata"]["image_id"] == image["id"]
    boot.get_by_role("button", name="Delete volume boot-1").click()
    expect(boot).to_have_count(0, timeout=60_000)


def test_launch_from_a_volume_and_a_volume_snapshot(page: Any, admin: Admin) -> None:
    """The launch form's boot source: a bootable volume, then a snapshot of it (a new volume
    deleted with the server); each server's disk checked through the API, and the detail
    page lists the volume and (admin) the launch trace."""
    from playwright.sync_api import expect

    image = admin.image("boot-src-image")
    volumes = f"/volume/v3/{admin.project_id}"
    root = admin.post(f"{volumes}/volumes", {"volume": {
        "name": "boot-src", "size": 1, "imageRef": image["id"]}})["volume"]
    until(lambda: admin.volumes()["boot-src"]["status"] == "available", "boot-src available")
    snap = admin.post(f"{volumes}/snapshots", {"snapshot": {
        "volume_id": root["id"], "name": "boot-src-snap"}})["snapshot"]
    until(lambda: admin.get(f"{volumes}/snapshots/{snap['id']}")["snapshot"]["status"]
          == "available", "boot-src-snap available")

    def launch(name: str, source: str, pick: str, option: str, delete: bool) -> dict[str, Any]:
        page.get_by_role("link", name="Launch", exact=True).click()
        page.get_by_label("Name", exact=True).fill(name)
        page.get_by_label("Boot source").select_option(label=source)
        page.get_by_label(pick, exact=True).select_option(label=option)
        if delete:
            page.get_by_label("Delete the volume with the instance").check()
        page.get_by_label("Network").select_option(label="private")
        page.get_by_role("button", name="Launch").click()
        expect(page).to_have_url(re.compile(r"/dashboard/instances$"))
        row = page.locator("tr", has_text=name)
        expect(row.locator(".state")).to_have_text("ACTIVE", timeout=60_000)
        (server,) = [s for s in admin.get("/compute/v2.1/servers/detail")["servers"]
                     if s["name"] == name]
        return dict(server)

    from_volume = launch("from-vol", "Volume", "Volume", "boot-src (1 GiB)", delete=False)
    assert not from_volume["image"]  # no image: its root disk is the volume
    assert from_volume["os-extended-volumes:volumes_attached"] == [
        {"id": root["id"], "delete_on_termination": False}]
    (attached,) = admin.volumes()["boot-src"]["attachments"]
    assert attached["server_id"] == from_volume["id"]

    page.get_by_role("link", name="from-vol").click()
    disks = page.locator("#attached-volumes")
    expect(disks.locator(f"#attached-{root['id']}")).to_contain_text("boot-src")
    expect(disks).to_contain_text(attached["device"])
    # The spans reach the store about a second after they end.
    until(lambda: (page.reload(), page.locator("#launch-trace").count())[1],
          "the launch trace")
    boot = page.locator("#launch-trace tr", has_text="POST /v2.1/servers").first
    expect(boot.locator("td").first).to_have_text("4,7")
    expect(boot).to_contain_text("→ compute-api")

    from_snapshot = launch("from-snap", "Volume snapshot", "Volume snapshot",
                           "boot-src-snap (1 GiB)", delete=True)
    assert not from_snapshot["image"]
    (made,) = from_snapshot["os-extended-volumes:volumes_attached"]
    new_volume = admin.get(f"{volumes}/volumes/{made['id']}")["volume"]
    assert new_volume["snapshot_id"] == snap["id"] and new_volume["status"] == "in-use"
    # The box ticked: compute tagged the new volume to go with its server (the API's
    # volumes_attached says false for every volume).
    assert new_volume["metadata"][DELETE_ON_TERMINATION] == "true"
    assert new_volume["metadata"][BOOT_FOR] == from_snapshot["id"]


def test_networks_create_with_a_subnet_show_detail_and_delete(page: Any, admin: Admin,
                                                              tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page.get_by_role("link", name="Networks").click()
    # A subnet the API refuses: its message at the form, and no network left behind.
    page.get_by_label("Network name").fill("net-bad")
    page.get_by_label("CIDR").fill("192.168.77.0/99")
    page.get_by_role("button", name="Create network").click()
    expect(page.locator("#create-error")).to_be_visible()
    assert admin.network("networks", name="net-bad") == []

    page.get_by_label("Network name").fill("net-b")
    page.get_by_label("Subnet name").fill("sub-b")
    page.get_by_label("CIDR").fill("192.168.77.0/24")
    page.get_by_role("button", name="Create network").click()
    row = page.locator("#networks tr", has_text="net-b")
    expect(row).to_contain_text("sub-b 192.168.77.0/24")
    (network,) = admin.network("networks", name="net-b")
    (subnet,) = admin.network("subnets", network_id=network["id"])
    assert subnet["cidr"] == "192.168.77.0/24" and subnet["enable_dhcp"] is True
    page.screenshot(path=str(tmp_path / "networks.png"), full_page=True)

    row.get_by_role("link", name="net-b").click()
    expect(page.get_by_role("heading", name="Network net-b")).to_be_visible()
    expect(page.locator("#subnets")).to_contain_text("192.168.77.1")  # the gateway
    page.get_by_role("link", name="All networks").click()
    row.get_by_role("button", name="Delete network net-b").click()
    expect(row).to_have_count(0)
    assert admin.network("networks", name="net-b") == []


def test_routers_and_floating_ips_to_an_instance(page: Any, admin: Admin,
                                                 tmp_path: Path) -> None:
    from playwright.sync_api import expect

    server = admin.server("fip-host")
    # (The noop network backend makes no external network: the admin makes one.)
    public = admin.post("/network/v2.0/networks", {"network": {
        "name": "public", "router:external": True}})["network"]
    admin.post("/network/v2.0/subnets", {"subnet": {
        "network_id": public["id"], "cidr": "198.51.100.0/24", "ip_version": 4}})
    (private_subnet,) = admin.network("subnets", network_id=admin.network(
        "networks", name="private")[0]["id"])

    page.get_by_role("link", name="Routers").click()
    page.get_by_label("Router name").fill("edge")
    page.get_by_label("External network (gateway)").select_option(label="public")
    page.get_by_role("button", name="Create router").click()
    row = page.locator("#routers tr", has_text="edge")
    expect(row).to_contain_text("public 198.51.100.")
    row.get_by_label("Subnet to join to edge").select_option(value=private_subnet["id"])
    row.get_by_role("button", name="Add an interface to edge").click()
    expect(row).to_contain_text(private_subnet["gateway_ip"])
    (router,) = admin.network("routers", name="edge")
    assert router["external_gateway_info"]["network_id"] == public["id"]
    (leg,) = admin.network("ports", device_id=router["id"],
                           device_owner="network:router_interface")
    assert leg["fixed_ips"][0]["subnet_id"] == private_subnet["id"]
    page.screenshot(path=str(tmp_path / "routers.png"), full_page=True)

    page.get_by_role("link", name="Floating IPs").click()
    page.get_by_label("Pool (external network)").select_option(label="public")
    page.get_by_role("button", name="Allocate IP").click()
    (floating,) = admin.network("floatingips")
    address = floating["floating_ip_address"]
    fip = page.locator("#floating-ips tr", has_text=address)
    (port,) = admin.network("ports", device_id=server["id"])
    fixed = port["fixed_ips"][0]["ip_address"]
    fip.get_by_label(f"Instance port for {address}").select_option(label=f"fip-host: {fixed}")
    fip.get_by_role("button", name=f"Associate {address}").click()
    expect(fip).to_contain_text(f"fip-host: {fixed}")
    assert admin.network("floatingips")[0]["port_id"] == port["id"]
    page.screenshot(path=str(tmp_path / "floating-ips.png"), full_page=True)

    # The router still routes for the floating IP: the network API says so at the row.
    page.get_by_role("link", name="Routers").click()
    row.get_by_role("button", name=re.compile("^Remove the interface of edge")).click()
    expect(row.locator(".error")).to_be_visible()
    assert admin.network("ports", device_id=router["id"],
                         device_owner="network:router_interface") != []

    page.get_by_role("link", name="Floating IPs").click()
    fip.get_by_role("button", name=f"Disassociate {address}").click()
    expect(fip.get_by_role("button", name=f"Associate {address}")).to_be_visible()
    assert admin.network("floatingips")[0]["port_id"] is None
    fip.get_by_role("button", name=f"Release {address}").click()
    expect(fip).to_have_count(0)
    assert admin.network("floatingips") == []

    page.get_by_role("link", name="Routers").click()
    row.get_by_role("button", name=re.compile("^Remove the interface of edge")).click()
    expect(row).not_to_contain_text(private_subnet["gateway_ip"])
    row.get_by_role("button", name="Clear the gateway of edge").click()
    expect(row.get_by_role("button", name="Set the gateway of edge")).to_be_visible()
    assert admin.network("routers", name="edge")[0]["external_gateway_info"] is None
    row.get_by_role("button", name="Delete router edge").click()
    expect(row).to_have_count(0)
    assert admin.network("routers", name="edge") == []


def test_security_groups_create_add_and_remove_rules(page: Any, admin: Admin,
                                                     tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page.get_by_role("link", name="Security groups").click()
    page.get_by_label("Name", exact=True).fill("web")
    page.get_by_label("Description").fill("the web tier")
    page.get_by_role("button", name="Create security group").click()
    row = page.locator("#security-groups tr", has_text="web")
    expect(row).to_contain_text("the web tier")
    (group,) = admin.network("security-groups", name="web")

    row.get_by_role("link", name="Manage the rules of web").click()
    expect(page.get_by_role("heading", name="Security group web")).to_be_visible()
    page.get_by_label("Port (or first of a range; ICMP: type)").fill("22")
    page.get_by_label("Remote CIDR").fill("203.0.113.0/24")
    page.get_by_role("button", name="Add rule").click()
    rule_row = page.locator("#rules tr", has_text="203.0.113.0/24")
    expect(rule_row).to_contain_text("tcp")
    (rule,) = [r for r in admin.network("security-group-rules", security_group_id=group["id"])
               if r["remote_ip_prefix"] == "203.0.113.0/24"]
    assert (rule["protocol"], rule["port_range_min"], rule["port_range_max"],
            rule["direction"]) == ("tcp", 22, 22, "ingress")
    page.screenshot(path=str(tmp_path / "security-group.png"), full_page=True)

    # A CIDR the API refuses: its message at the rule form, the values kept.
    page.get_by_label("Port (or first of a range; ICMP: type)").fill("80")
    page.get_by_label("Remote CIDR").fill("203.0.113.0/99")
    page.get_by_role("button", name="Add rule").click()
    expect(page.locator("#rule-error")).to_be_visible()
    expect(page.get_by_label("Remote CIDR")).to_have_value("203.0.113.0/99")

    rule_row.get_by_role("button", name=re.compile("^Delete rule ingress tcp 22")).click()
    expect(rule_row).to_have_count(0)
    assert [r for r in admin.network("security-group-rules", security_group_id=group["id"])
            if r["remote_ip_prefix"] == "203.0.113.0/24"] == []
    page.get_by_role("link", name="All security groups").click()
    row.get_by_role("button", name="Delete security group web").click()
    expect(row).to_have_count(0)
    assert admin.network("security-groups", name="web") == []
