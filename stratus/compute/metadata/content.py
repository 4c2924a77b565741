"""The metadata documents of one instance, as Nova's metadata service lays them out.

Everything here is pure: :class:`InstanceData` in, documents out. A tree is a ``dict``
whose values are strings (leaves), dicts (folders) or :class:`Named` folders (a folder
listed under another name, as EC2's ``public-keys/0=<key name>``). :func:`lookup` walks
a path through a tree and gives a leaf or the listing of a folder.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import os
from dataclasses import dataclass, field
from typing import Any

#: OpenStack metadata versions, oldest first; ``latest`` is the newest.
OPENSTACK_VERSIONS = ("2012-08-10", "2013-04-04", "2013-10-17", "2015-10-15", "2016-06-30",
                      "2016-10-06", "2017-02-22", "2018-08-27", "2020-10-14", "2025-04-04")
#: EC2 metadata versions, oldest first; ``latest`` is the newest.
EC2_VERSIONS = ("1.0", "2007-01-19", "2007-03-01", "2007-08-29", "2007-10-10", "2007-12-15",
                "2008-02-01", "2008-09-01", "2009-04-04")
#: VIF types network_data.json names as they are; any other shows as ``phy``.
LINK_TYPES = ("bridge", "dvs", "hw_veb", "hyperv", "ovs", "tap", "vhostuser", "vif")
JSON_TYPE = "application/json"
TEXT_TYPE = "text/plain"


@dataclass(frozen=True)
class InstanceData:
    """What the metadata documents are made of (read from compute's database)."""

    uuid: str
    name: str
    hostname: str
    project_id: str
    launch_index: int = 0
    availability_zone: str = "nova"
    reservation_id: str = ""
    image_ref: str = ""
    flavor_name: str = ""
    ephemeral_gb: int = 0
    swap_mb: int = 0
    metadata: dict[str, str] = field(default_factory=dict)
    key_name: str | None = None
    key_data: str | None = None
    key_type: str = "ssh"
    #: As given at boot: base64.
    user_data: str | None = None
    security_groups: tuple[str, ...] = ()
    #: ``VifInfo`` dicts (``stratus.compute.objects``).
    network_info: tuple[dict[str, Any], ...] = ()
    #: Appended to ``hostname`` (``<hostname>.<domain>``); empty means no suffix.
    dhcp_domain: str = "novalocal"

    @property
    def fqdn(self) -> str:
        return f"{self.hostname}.{self.dhcp_domain}" if self.dhcp_domain else self.hostname

    def decoded_user_data(self) -> bytes | None:
        if self.user_data is None:
            return None
        try:
            return base64.b64decode(self.user_data, validate=True)
        except (binascii.Error, ValueError):
            return None  # compute-api accepts only base64: this is a damaged row


@dataclass(frozen=True)
class Named:
    """A folder shown in its parent's listing as ``name`` rather than ``<key>/``."""

    name: str
    entries: dict[str, Any]


@dataclass(frozen=True)
class Document:
    body: bytes
    content_type: str


def _at_least(version: str, minimum: str) -> bool:
    return version >= minimum  # ISO dates compare as strings


def resolve_openstack(version: str) -> str | None:
    """The dated version a request names (``latest`` → newest); None if unknown."""
    if version == "latest":
        return OPENSTACK_VERSIONS[-1]
    return version if version in OPENSTACK_VERSIONS else None


def meta_data(data: InstanceData, version: str,
              random_bytes: bytes | None = None) -> dict[str, Any]:
    """``meta_data.json`` at ``version`` (a dated one)."""
    doc: dict[str, Any] = {"uuid": data.uuid}
    if data.metadata:
        doc["meta"] = dict(data.metadata)
    if data.key_name is not None and data.key_data:
        doc["public_keys"] = {data.key_name: data.key_data}
        doc["keys"] = [{"name": data.key_name, "type": data.key_type,
                        "data": data.key_data}]
    doc.update(hostname=data.fqdn, name=data.name, launch_index=data.launch_index,
               availability_zone=data.availability_zone)
    if _at_least(version, "2013-04-04"):
        seed = random_bytes if random_bytes is not None else os.urandom(512)
        doc["random_seed"] = base64.b64encode(seed).decode()
    if _at_least(version, "2015-10-15"):
        doc["project_id"] = data.project_id
    if _at_least(version, "2016-06-30"):
        doc["devices"] = []
    if _at_least(version, "2020-10-14"):
        doc["dedicated_cpus"] = []
    return doc


def _link_id(vif: dict[str, Any]) -> str:
    return str(vif.get("devname") or f"tap{str(vif['id'])[:11]}")


def _netmask(cidr: str) -> str:
    return str(ipaddress.ip_network(cidr, strict=False).netmask)


def network_data(data: InstanceData) -> dict[str, Any]:
    """``network_data.json``: links (NICs by MAC), networks (addresses), DNS services."""
    if not data.network_info:
        return {}
    links: list[dict[str, Any]] = []
    networks: list[dict[str, Any]] = []
    services: list[dict[str, str]] = []
    for vif in data.network_info:
        link = _link_id(vif)
        ips = list(vif.get("ips") or [])
        any_dhcp = any(ip.get("dhcp", True) for ip in ips)
        vif_type = str(vif.get("type") or "")
        links.append({"id": link, "vif_id": vif["id"],
                      "type": vif_type if vif_type in LINK_TYPES else "phy",
                      # DHCP hands the guest its MTU; a static link needs it said here.
                      "mtu": None if any_dhcp else vif.get("mtu"),
                      "ethernet_mac_address": vif["address"]})
        for ip in ips:
            version = int(ip.get("version", 4))
            entry: dict[str, Any] = {"id": f"network{len(networks)}", "link": link,
                                     "network_id": vif["network_id"]}
            dns = [{"type": "dns", "address": a} for a in ip.get("dns_nameservers") or []]
            if ip.get("dhcp", True):
                entry["type"] = "ipv4_dhcp" if version == 4 else "ipv6_dhcpv6-stateful"
            else:
                any_net = "0.0.0.0" if version == 4 else "::"
                routes = []
                if ip.get("gateway"):
                    routes.append({"network": any_net, "netmask": any_net,
                                   "gateway": ip["gateway"]})
                for route in ip.get("routes") or []:
                    dest = ipaddress.ip_network(route["destination"], strict=False)
                    routes.append({"network": str(dest.network_address),
                                   "netmask": str(dest.netmask),
                                   "gateway": route["nexthop"]})
                entry.update(type="ipv4" if version == 4 else "ipv6",
                             ip_address=ip["address"],
                             netmask=_netmask(ip.get("cidr") or
                                              f"{ip['address']}/{32 if version == 4 else 128}"),
                             routes=routes, services=dns)
            networks.append(entry)
            for service in dns:
                if service not in services:
                    services.append(service)
    return {"links": links, "networks": networks, "services": services}


def vendor_data() -> dict[str, Any]:
    return {}


def vendor_data2() -> dict[str, Any]:
    return {"static": {}}


def _json(doc: Any) -> Document:
    return Document(json.dumps(doc).encode(), JSON_TYPE)


def openstack_tree(data: InstanceData, version: str) -> dict[str, Any]:
    """The files of one dated OpenStack version folder (built lazily by name)."""
    names: dict[str, Any] = {"meta_data.json": "meta_data.json"}
    if data.user_data is not None:
        names["user_data"] = "user_data"
    if _at_least(version, "2013-04-04"):
        names["password"] = "password"
    if _at_least(version, "2013-10-17"):
        names["vendor_data.json"] = "vendor_data.json"
    if _at_least(version, "2015-10-15"):
        names["network_data.json"] = "network_data.json"
    if _at_least(version, "2016-10-06"):
        names["vendor_data2.json"] = "vendor_data2.json"
    return names


def openstack_file(data: InstanceData, version: str, name: str) -> Document | None:
    """One file of a dated OpenStack version; None if it does not exist there."""
    if name not in openstack_tree(data, version) or name == "password":
        return None  # the password is not instance data: the api reads it when asked
    if name == "meta_data.json":
        return _json(meta_data(data, version))
    if name == "user_data":
        raw = data.decoded_user_data()
        return None if raw is None else Document(raw, TEXT_TYPE)
    if name == "vendor_data.json":
        return _json(vendor_data())
    if name == "vendor_data2.json":
        return _json(vendor_data2())
    return _json(network_data(data))


def _first_ipv4(data: InstanceData) -> str:
    for vif in data.network_info:
        for ip in vif.get("ips") or []:
            if int(ip.get("version", 4)) == 4:
                return str(ip["address"])
    return ""


def _ec2_id(prefix: str, uuid: str) -> str:
    """EC2-style ids (``i-0a1b2c3d``) from the first 32 bits of a UUID."""
    return f"{prefix}-{uuid.replace('-', '')[:8] or '00000000'}"


def ec2_meta_data(data: InstanceData) -> dict[str, Any]:
    """The EC2 ``meta-data/`` tree."""
    mappings = {"ami": "vda", "root": "/dev/vda"}
    if data.ephemeral_gb:
        mappings["ephemeral0"] = "/dev/vdb"
    if data.swap_mb:
        mappings["swap"] = "/dev/vdc" if data.ephemeral_gb else "/dev/vdb"
    tree: dict[str, Any] = {
        "ami-id": _ec2_id("ami", data.image_ref) if data.image_ref else "",
        "ami-launch-index": str(data.launch_index),
        "ami-manifest-path": "FIXME",
        "block-device-mapping": mappings,
        "hostname": data.fqdn,
        "instance-action": "none",
        "instance-id": _ec2_id("i", data.uuid),
        "instance-type": data.flavor_name,
        "local-hostname": data.fqdn,
        "local-ipv4": _first_ipv4(data),
        "placement": {"availability-zone": data.availability_zone},
        "public-hostname": data.fqdn,
        "public-ipv4": "",
        "reservation-id": data.reservation_id,
        "security-groups": "\n".join(data.security_groups),
    }
    if data.key_name is not None and data.key_data:
        tree["public-keys"] = {"0": Named(f"0={data.key_name}",
                                          {"openssh-key": data.key_data})}
    return tree


def ec2_tree(data: InstanceData) -> dict[str, Any]:
    """One EC2 version folder: ``meta-data/`` and, when given, ``user-data``."""
    tree: dict[str, Any] = {"meta-data": ec2_meta_data(data)}
    raw = data.decoded_user_data()
    if raw is not None:
        tree["user-data"] = raw
    return tree


def listing(entries: dict[str, Any]) -> str:
    """A folder's text listing: sorted, sub-folders with a ``/`` (or their own name)."""
    lines = []
    for key in sorted(entries):
        value = entries[key]
        if isinstance(value, Named):
            lines.append(value.name)
        elif isinstance(value, dict):
            lines.append(f"{key}/")
        else:
            lines.append(key)
    return "\n".join(lines)


def lookup(tree: dict[str, Any], parts: list[str]) -> Document | None:
    """The leaf or folder listing at ``parts`` below ``tree``; None if there is none."""
    node: Any = tree
    for part in parts:
        entries = node.entries if isinstance(node, Named) else node
        if not isinstance(entries, dict) or part not in entries:
            return None
        node = entries[part]
    if isinstance(node, Named):
        return Document(listing(node.entries).encode(), TEXT_TYPE)
    if isinstance(node, dict):
        return Document(listing(node).encode(), TEXT_TYPE)
    if isinstance(node, bytes):
        return Document(node, TEXT_TYPE)
    return Document(str(node).encode(), TEXT_TYPE)
