"""metadata-api's documents (``stratus.compute.metadata.content``), without HTTP."""

from __future__ import annotations

import base64
import json

from stratus.compute.metadata import content
from stratus.compute.metadata.content import InstanceData
from stratus.compute.objects import VifInfo, VifIP

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG9vZ2xlZ29vZ2xlZ29vZ2xlZ29vZ2xlZ29vZ2xl me@here"
UUID = "0f1e2d3c-4b5a-4978-8a9b-0c1d2e3f4a5b"


def vif(dhcp: bool = True) -> dict[str, object]:
    return VifInfo(
        id="a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d", address="fa:16:3e:12:34:56",
        network_id="net-1", network_name="private", mtu=1450, devname="tapa1b2c3d4-e5",
        ips=[VifIP(address="10.0.0.5", cidr="10.0.0.0/24", gateway="10.0.0.1",
                   dns_nameservers=["10.0.0.2"], dhcp=dhcp,
                   routes=[{"destination": "192.168.0.0/16", "nexthop": "10.0.0.254"}]),
             VifIP(address="fd00::5", version=6, cidr="fd00::/64", dhcp=dhcp,
                   dns_nameservers=["10.0.0.2"])]).model_dump()


def data(**overrides: object) -> InstanceData:
    fields: dict[str, object] = dict(
        uuid=UUID, name="vm one", hostname="vm-one", project_id="proj", launch_index=0,
        availability_zone="nova", reservation_id="r-1234", image_ref="5a6b7c8d-0000",
        flavor_name="m1.tiny", metadata={"role": "web"}, key_name="mykey", key_data=KEY,
        user_data=base64.b64encode(b"#cloud-config\nhostname: x\n").decode(),
        security_groups=("default", "web"), network_info=(vif(),))
    fields.update(overrides)
    return InstanceData(**fields)  # type: ignore[arg-type]


def test_meta_data_follows_the_version() -> None:
    old = content.meta_data(data(), "2012-08-10")
    assert old == {"uuid": UUID, "meta": {"role": "web"}, "public_keys": {"mykey": KEY},
                   "keys": [{"name": "mykey", "type": "ssh", "data": KEY}],
                   "hostname": "vm-one.novalocal", "name": "vm one", "launch_index": 0,
                   "availability_zone": "nova"}
    new = content.meta_data(data(), "2020-10-14", random_bytes=b"\1" * 512)
    assert base64.b64decode(new["random_seed"]) == b"\1" * 512
    assert new["project_id"] == "proj" and new["devices"] == []
    assert new["dedicated_cpus"] == []
    bare = content.meta_data(data(metadata={}, key_name=None, key_data=None,
                                  dhcp_domain=""), "2018-08-27")
    assert "meta" not in bare and "public_keys" not in bare and "keys" not in bare
    assert bare["hostname"] == "vm-one" and "dedicated_cpus" not in bare
    seeds = {content.meta_data(data(), "latest")["random_seed"] for _ in range(3)}
    assert len(seeds) == 3


def test_network_data_with_dhcp() -> None:
    doc = content.network_data(data())
    assert doc["links"] == [{"id": "tapa1b2c3d4-e5",
                             "vif_id": "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
                             "type": "bridge", "mtu": None,
                             "ethernet_mac_address": "fa:16:3e:12:34:56"}]
    assert doc["networks"] == [
        {"id": "network0", "link": "tapa1b2c3d4-e5", "network_id": "net-1",
         "type": "ipv4_dhcp"},
        {"id": "network1", "link": "tapa1b2c3d4-e5", "network_id": "net-1",
         "type": "ipv6_dhcpv6-stateful"}]
    assert doc["services"] == [{"type": "dns", "address": "10.0.0.2"}]
    assert content.network_data(data(network_info=())) == {}


def test_network_data_static() -> None:
    doc = content.network_data(data(network_info=(vif(dhcp=False),)))
    assert doc["links"][0]["mtu"] == 1450
    v4, v6 = doc["networks"]
    assert v4["type"] == "ipv4" and v4["ip_address"] == "10.0.0.5"
    assert v4["netmask"] == "255.255.255.0"
    assert v4["routes"] == [
        {"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.0.0.1"},
        {"network": "192.168.0.0", "netmask": "255.255.0.0", "gateway": "10.0.0.254"}]
    assert v4["services"] == [{"type": "dns", "address": "10.0.0.2"}]
    assert v6["type"] == "ipv6" and v6["netmask"] == "ffff:ffff:ffff:ffff::"
    assert v6["routes"] == []
    other = {**vif(), "type": "macvtap"}
    assert content.network_data(data(network_info=(other,)))["links"][0]["type"] == "phy"


def test_openstack_version_folders() -> None:
    assert list(content.openstack_tree(data(), "2012-08-10")) == ["meta_data.json",
                                                                  "user_data"]
    assert list(content.openstack_tree(data(user_data=None), "2018-08-27")) == [
        "meta_data.json", "password", "vendor_data.json", "network_data.json",
        "vendor_data2.json"]
    assert content.openstack_file(data(), "2018-08-27", "password") is None  # the api's
    assert content.resolve_openstack("latest") == "2025-04-04"
    assert content.resolve_openstack("2011-01-01") is None
    user = content.openstack_file(data(), "2018-08-27", "user_data")
    assert user is not None and user.body == b"#cloud-config\nhostname: x\n"
    assert content.openstack_file(data(user_data=None), "2018-08-27", "user_data") is None
    assert content.openstack_file(data(), "2012-08-10", "network_data.json") is None
    vendor2 = content.openstack_file(data(), "2018-08-27", "vendor_data2.json")
    assert vendor2 is not None and json.loads(vendor2.body) == {"static": {}}
    assert vendor2.content_type == "application/json"


def lookup(path: str, **overrides: object) -> str | None:
    document = content.lookup(content.ec2_tree(data(**overrides)),
                              [p for p in path.split("/") if p])
    return None if document is None else document.body.decode()


def test_ec2_tree() -> None:
    assert lookup("") == "meta-data/\nuser-data"
    assert lookup("", user_data=None) == "meta-data/"
    listing = lookup("meta-data").split("\n")  # type: ignore[union-attr]
    assert listing == sorted(listing)
    assert {"ami-id", "block-device-mapping/", "hostname", "instance-id", "local-ipv4",
            "placement/", "public-keys/", "reservation-id", "security-groups"} <= set(listing)
    assert lookup("meta-data/instance-id") == "i-0f1e2d3c"
    assert lookup("meta-data/local-ipv4") == "10.0.0.5"
    assert lookup("meta-data/local-ipv4", network_info=()) == ""
    assert lookup("meta-data/hostname") == "vm-one.novalocal"
    assert lookup("meta-data/instance-type") == "m1.tiny"
    assert lookup("meta-data/security-groups") == "default\nweb"
    assert lookup("meta-data/placement/availability-zone") == "nova"
    assert lookup("meta-data/public-keys") == "0=mykey"
    assert lookup("meta-data/public-keys/0") == "openssh-key"
    assert lookup("meta-data/public-keys/0/openssh-key") == KEY
    assert lookup("meta-data/block-device-mapping") == "ami\nroot"
    assert lookup("meta-data/block-device-mapping/root") == "/dev/vda"
    assert lookup("meta-data/block-device-mapping", ephemeral_gb=1,
                  swap_mb=512) == "ami\nephemeral0\nroot\nswap"
    assert lookup("user-data") == "#cloud-config\nhostname: x\n"
    assert "public-keys/" not in lookup("meta-data", key_name=None,  # type: ignore[operator]
                                        key_data=None)
    assert lookup("meta-data/nope") is None
    assert lookup("meta-data/hostname/deeper") is None
