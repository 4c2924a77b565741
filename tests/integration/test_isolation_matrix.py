"""Isolation matrix: nobody reads or changes another project's resources.

One in-process cloud (every API unit, the fake compute driver, the noop network backend, the
file volume backend) is built once per module; an *owner* project's member makes one of every
resource type. Then, from tables (one row a call, so a new resource is a row or a few):

* every call on the owner's resources made with ANOTHER project's member token is refused
  (404, or 403 where the API's reference says a foreign target is forbidden, as Keystone's),
  its answer holds nothing of the owner's (the owner's resources carry a marker in their
  names), and the owner, reading the resource again afterwards, finds it unchanged;
* every list, also with the filters that widen a list for an admin (``all_tenants``,
  ``project_id``, ``owner``...), leaves the owner's resources out for the other project;
* the other project's own resources cannot be made to reference the owner's (boot from its
  image or volume, plug into its network, port or router, take its security group...);
* the owner's quotas are read by nobody else;
* a ``reader`` of the owner project (by role, or a member through an application credential
  kept to ``reader``) can write nothing (403), and nothing changes; nor can a project the
  owner's image is shared with; a member does nothing only an admin may;
* a revoked, expired, forged or garbage token, and one whose role, user, project or
  application credential went away, gets 401 from every API.

Every refused read has its control: the owner reading the same URL gets it. The metadata
API (a signed instance id, no token) and the console proxy's one-use tokens have their own
tests (``compute/test_metadata_api.py``, ``compute/test_remote_consoles.py``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from stratus.identity.tokens import TokenFormatter
from tests.integration.clouds import CloudStarter, TestCloud, Who, auth_body

pytestmark = pytest.mark.asyncio(loop_scope="module")

ADMIN_PASSWORD = "isolation-admin-pw"
UNITS = ("identity-api", "image-api", "compute-api", "conductor", "scheduler", "compute-agent",
         "network-api", "volume-api", "volume-manager")
#: In every name the owner gives a resource: an answer to anybody else must not hold it.
#: Fixed (each run has its own database): test ids hold it, and xdist's workers must agree.
MARKER = "ownedq7x3kz9w"

API_PREFIX = {"identity": "/identity/v3", "compute": "/compute/v2.1", "image": "/image/v2",
              "network": "/network/v2.0", "volume": "/volume/v3/{me}",
              # The block storage API with the OWNER's project in the URL.
              "volume@owner": "/volume/v3/{owner}",
              # ... and with the other project's (for the admin's reads of its volumes).
              "volume@mine": "/volume/v3/{intruder}"}
API_VERSION = {"compute": "compute 2.96", "volume": "volume 3.60",
               "volume@owner": "volume 3.60", "volume@mine": "volume 3.60"}
PATCH_TYPE = "application/openstack-images-v2.1-json-patch"


@dataclass(frozen=True)
class Call:
    """One request on the owner's resources: ``path`` is formatted with the owner's resource
    ids (``{server}``, ``{volume}``...), ``{me}`` being the caller's own project."""

    api: str
    method: str
    path: str
    body: Any = None
    #: What another project's member gets.
    foreign: tuple[int, ...] = (404,)
    #: What a reader of the owner project gets when the call writes.
    reader: tuple[int, ...] = (403,)
    #: The owner's reads (``api path`` each) that must answer the same after the call.
    watch: tuple[str, ...] = ()
    content_type: str | None = None
    #: What the owner itself gets from a read (the control: the target exists).
    owner: tuple[int, ...] = (200, 204)

    @property
    def writes(self) -> bool:
        return self.method != "GET"

    @property
    def id(self) -> str:
        action = ""
        if isinstance(self.body, dict) and self.path.endswith("/action"):
            action = " " + next(iter(self.body))
        return f"{self.api} {self.method} {self.path}{action}"


def c(api: str, method: str, path: str, body: Any = None, *, watch: str | tuple[str, ...] = (),
      foreign: tuple[int, ...] = (404,), reader: tuple[int, ...] = (403,),
      content_type: str | None = None, owner: tuple[int, ...] = (200, 204)) -> Call:
    watched = (watch,) if isinstance(watch, str) else watch
    return Call(api, method, path, body, foreign, reader,
                tuple(w if " " in w else f"{api} {w}" for w in watched), content_type, owner)


FORBIDDEN = (403,)
KEYSTONE = (403, 404)  # Keystone: a foreign target is forbidden; an unknown one not found

PLANTED_KEY = Ed25519PrivateKey.generate().public_key().public_bytes(
    serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
S = "/servers/{server}"
SERVER_WATCH = ("compute /servers/{server}", "compute /servers/{server}/metadata",
                "compute /servers/{server}/tags", "compute /servers/{server}/os-interface",
                "compute /servers/{server}/os-volume_attachments")
SERVER_ACTIONS: list[dict[str, Any]] = [
    {"os-stop": None}, {"os-start": None}, {"reboot": {"type": "SOFT"}}, {"pause": None},
    {"suspend": None}, {"lock": None}, {"unlock": None}, {"shelve": None},
    {"createImage": {"name": "stolen"}}, {"resize": {"flavorRef": "2"}},
    {"rebuild": {"imageRef": "{image}"}}, {"changePassword": {"adminPass": "x-Pw-12345"}},
    {"addSecurityGroup": {"name": "default"}}, {"os-getConsoleOutput": {}},
    {"rescue": None}, {"migrate": None}, {"trigger_crash_dump": None},
]

COMPUTE: list[Call] = [
    c("compute", "GET", S),
    c("compute", "PUT", S, {"server": {"name": "stolen"}}, watch=SERVER_WATCH),
    c("compute", "DELETE", S, watch=SERVER_WATCH),
    *[c("compute", "POST", f"{S}/action", action, watch=SERVER_WATCH)
      for action in SERVER_ACTIONS],
    c("compute", "GET", f"{S}/metadata"),
    c("compute", "GET", f"{S}/metadata/secret"),
    c("compute", "POST", f"{S}/metadata", {"metadata": {"x": "y"}}, watch=SERVER_WATCH),
    c("compute", "PUT", f"{S}/metadata", {"metadata": {}}, watch=SERVER_WATCH),
    c("compute", "PUT", f"{S}/metadata/secret", {"meta": {"secret": "x"}}, watch=SERVER_WATCH),
    c("compute", "DELETE", f"{S}/metadata/secret", watch=SERVER_WATCH),
    c("compute", "GET", f"{S}/tags"),
    c("compute", "GET", f"{S}/tags/{MARKER}"),
    c("compute", "PUT", f"{S}/tags", {"tags": []}, watch=SERVER_WATCH),
    c("compute", "PUT", f"{S}/tags/new", watch=SERVER_WATCH),
    c("compute", "DELETE", f"{S}/tags", watch=SERVER_WATCH),
    c("compute", "DELETE", f"{S}/tags/{MARKER}", watch=SERVER_WATCH),
    c("compute", "GET", f"{S}/os-interface"),
    c("compute", "GET", f"{S}/os-interface/{{server_port}}"),
    c("compute", "POST", f"{S}/os-interface", {"interfaceAttachment": {"net_id": "{network}"}},
      watch=SERVER_WATCH),
    c("compute", "DELETE", f"{S}/os-interface/{{server_port}}", watch=SERVER_WATCH),
    c("compute", "GET", f"{S}/os-volume_attachments"),
    c("compute", "GET", f"{S}/os-volume_attachments/{{attached_volume}}"),
    c("compute", "POST", f"{S}/os-volume_attachments",
      {"volumeAttachment": {"volumeId": "{volume}"}}, watch=SERVER_WATCH),
    c("compute", "DELETE", f"{S}/os-volume_attachments/{{attached_volume}}",
      watch=SERVER_WATCH),
    # Admin only: the owner is refused too, but another project learns not even that.
    c("compute", "GET", f"{S}/migrations", owner=FORBIDDEN),
    c("compute", "GET", f"{S}/migrations/1", owner=FORBIDDEN),
    c("compute", "DELETE", f"{S}/migrations/1", watch=SERVER_WATCH),
    c("compute", "POST", f"{S}/migrations/1/action", {"force_complete": None},
      watch=SERVER_WATCH),
    c("compute", "GET", f"{S}/os-instance-actions"),
    c("compute", "GET", f"{S}/os-instance-actions/{{server_request}}"),
    c("compute", "GET", f"{S}/ips"),
    c("compute", "GET", f"{S}/os-security-groups"),
    c("compute", "GET", f"{S}/os-server-password"),
    c("compute", "DELETE", f"{S}/os-server-password", watch=SERVER_WATCH),
    c("compute", "POST", f"{S}/remote-consoles",
      {"remote_console": {"protocol": "vnc", "type": "novnc"}}, watch=SERVER_WATCH),
    c("compute", "GET", "/os-keypairs/{keypair}", reader=(404,)),
    c("compute", "DELETE", "/os-keypairs/{keypair}", reader=(404,),
      watch="/os-keypairs/{keypair}"),
    # Another user's key pairs by ``user_id`` (an admin's parameter).
    c("compute", "GET", "/os-keypairs/{keypair}?user_id={owner_user}", foreign=(403, 404),
      reader=(403, 404)),
    c("compute", "DELETE", "/os-keypairs/{keypair}?user_id={owner_user}", foreign=(403, 404),
      reader=(403, 404), watch="/os-keypairs/{keypair}"),
    c("compute", "POST", "/os-keypairs", {"keypair": {
        "name": "planted", "user_id": "{owner_user}", "public_key": PLANTED_KEY}},
      foreign=(400, 403), reader=(400, 403), watch="/os-keypairs"),
    c("compute", "GET", "/os-server-groups/{server_group}"),
    c("compute", "DELETE", "/os-server-groups/{server_group}",
      watch="/os-server-groups/{server_group}"),
    c("compute", "GET", "/os-quota-sets/{owner}", foreign=FORBIDDEN),
    c("compute", "GET", "/os-quota-sets/{owner}/detail", foreign=FORBIDDEN),
    c("compute", "PUT", "/os-quota-sets/{owner}", {"quota_set": {"instances": 99}},
      foreign=FORBIDDEN, watch="/os-quota-sets/{owner}"),
]

IMG = "/images/{image}"
IMAGE_WATCH = ("image /images/{image}", "image /images/{image}/members")
IMAGE: list[Call] = [
    c("image", "GET", IMG),
    c("image", "PATCH", IMG, [{"op": "replace", "path": "/name", "value": "stolen"}],
      content_type=PATCH_TYPE, watch=IMAGE_WATCH),
    c("image", "DELETE", IMG, watch=IMAGE_WATCH),
    c("image", "GET", f"{IMG}/file"),
    c("image", "PUT", f"{IMG}/file", b"stolen", content_type="application/octet-stream",
      watch=IMAGE_WATCH),
    # The owner's image is active: only a queued one takes a location (409 shows the
    # owner got past the policy).
    c("image", "POST", f"{IMG}/locations", {"url": "rbd://f/images/{image}/snap"},
      watch=IMAGE_WATCH, owner=(409,)),
    c("image", "POST", f"{IMG}/actions/deactivate", watch=IMAGE_WATCH),
    c("image", "POST", f"{IMG}/actions/reactivate", watch=IMAGE_WATCH),
    c("image", "PUT", f"{IMG}/tags/new", watch=IMAGE_WATCH),
    c("image", "DELETE", f"{IMG}/tags/{MARKER}", watch=IMAGE_WATCH),
    c("image", "GET", f"{IMG}/members"),
    c("image", "GET", f"{IMG}/members/{{member_project}}"),
    c("image", "POST", f"{IMG}/members", {"member": "{me}"}, watch=IMAGE_WATCH),
    c("image", "PUT", f"{IMG}/members/{{member_project}}", {"status": "accepted"},
      watch=IMAGE_WATCH),
    c("image", "DELETE", f"{IMG}/members/{{member_project}}", watch=IMAGE_WATCH),
]


def crud(api: str, collection: str, key: str, ref: str, update: dict[str, Any],
         **kwargs: Any) -> list[Call]:
    path = f"/{collection}/{{{ref}}}"
    return [c(api, "GET", path, **kwargs),
            c(api, "PUT", path, {key: update}, watch=path, **kwargs),
            c(api, "DELETE", path, watch=path, **kwargs)]


NETWORK: list[Call] = [
    *crud("network", "networks", "network", "network", {"name": "stolen"}),
    *crud("network", "subnets", "subnet", "subnet", {"name": "stolen"}),
    *crud("network", "ports", "port", "port", {"name": "stolen"}),
    *crud("network", "routers", "router", "router", {"name": "stolen"}),
    *crud("network", "floatingips", "floatingip", "floatingip", {"port_id": None}),
    *crud("network", "security-groups", "security_group", "security_group",
          {"name": "stolen"}),
    c("network", "GET", "/security-group-rules/{security_group_rule}"),
    c("network", "DELETE", "/security-group-rules/{security_group_rule}",
      watch="/security-groups/{security_group}"),
    c("network", "PUT", "/routers/{router}/add_router_interface", {"subnet_id": "{subnet}"},
      watch=("/routers/{router}", "/subnets/{subnet}")),
    c("network", "PUT", "/routers/{router}/remove_router_interface", {"port_id": "{port}"},
      watch=("/routers/{router}", "/ports/{port}")),
    *[row for kind, ref in (("networks", "network"), ("subnets", "subnet"), ("ports", "port"),
                            ("routers", "router"), ("floatingips", "floatingip"),
                            ("security-groups", "security_group"))
      for row in (
          c("network", "GET", f"/{kind}/{{{ref}}}/tags"),
          c("network", "PUT", f"/{kind}/{{{ref}}}/tags/new", watch=f"/{kind}/{{{ref}}}"),
          c("network", "PUT", f"/{kind}/{{{ref}}}/tags", {"tags": []},
            watch=f"/{kind}/{{{ref}}}"),
          c("network", "DELETE", f"/{kind}/{{{ref}}}/tags", watch=f"/{kind}/{{{ref}}}"))],
    c("network", "POST", "/subnets", {"subnet": {
        "network_id": "{network}", "cidr": "10.77.0.0/24", "ip_version": 4}},
      foreign=(403, 404), watch="/subnets?network_id={network}"),
    c("network", "POST", "/ports", {"port": {"network_id": "{network}"}},
      foreign=(403, 404), watch="/ports?network_id={network}"),
    c("network", "POST", "/security-group-rules", {"security_group_rule": {
        "security_group_id": "{security_group}", "direction": "ingress"}},
      foreign=(403, 404), watch="/security-groups/{security_group}"),
    c("network", "GET", "/quotas/{owner}", foreign=FORBIDDEN),
    c("network", "PUT", "/quotas/{owner}", {"quota": {"network": 99}}, foreign=FORBIDDEN,
      watch="/quotas/{owner}"),
    c("network", "DELETE", "/quotas/{owner}", foreign=FORBIDDEN, watch="/quotas/{owner}"),
]

V = "/volumes/{volume}"
VOLUME_WATCH = ("volume /volumes/{volume}", "volume /volumes/{volume}/metadata")
VOLUME_ACTIONS: list[dict[str, Any]] = [
    {"os-extend": {"new_size": 2}}, {"os-reset_status": {"status": "error"}},
    {"os-set_bootable": {"bootable": True}},
    {"os-update_readonly_flag": {"readonly": True}}, {"os-force_delete": None},
]
VOLUME: list[Call] = [
    c("volume", "GET", V),
    c("volume", "PUT", V, {"volume": {"name": "stolen"}}, watch=VOLUME_WATCH),
    c("volume", "DELETE", V, watch=VOLUME_WATCH),
    *[c("volume", "POST", f"{V}/action", action, watch=VOLUME_WATCH)
      for action in VOLUME_ACTIONS],
    c("volume", "GET", f"{V}/metadata"),
    c("volume", "GET", f"{V}/metadata/secret"),
    c("volume", "POST", f"{V}/metadata", {"metadata": {"x": "y"}}, watch=VOLUME_WATCH),
    c("volume", "PUT", f"{V}/metadata", {"metadata": {}}, watch=VOLUME_WATCH),
    c("volume", "PUT", f"{V}/metadata/secret", {"meta": {"secret": "x"}}, watch=VOLUME_WATCH),
    c("volume", "DELETE", f"{V}/metadata/secret", watch=VOLUME_WATCH),
    c("volume", "GET", "/volumes/{attached_volume}"),
    c("volume", "POST", "/volumes/{attached_volume}/action", {"os-force_delete": None},
      watch="/volumes/{attached_volume}"),
    *crud("volume", "snapshots", "snapshot", "snapshot", {"name": "stolen"}),
    c("volume", "GET", "/snapshots/{snapshot}/metadata"),
    c("volume", "POST", "/snapshots/{snapshot}/metadata", {"metadata": {"x": "y"}},
      watch="/snapshots/{snapshot}"),
    c("volume", "POST", "/snapshots", {"snapshot": {"volume_id": "{volume}"}},
      watch="/snapshots/detail"),
    c("volume", "POST", "/volumes", {"volume": {"size": 1, "source_volid": "{volume}"}},
      watch="/volumes/detail"),
    c("volume", "POST", "/volumes", {"volume": {"size": 1, "snapshot_id": "{snapshot}"}},
      watch="/volumes/detail"),
    c("volume", "GET", "/attachments/{attachment}"),
    c("volume", "PUT", "/attachments/{attachment}", {"attachment": {"connector": {
        "host": "h", "initiator": "i"}}}, watch="/attachments/{attachment}"),
    c("volume", "DELETE", "/attachments/{attachment}", watch="/attachments/{attachment}"),
    c("volume", "POST", "/attachments/{attachment}/action", {"os-complete": None},
      watch="/attachments/{attachment}"),
    c("volume", "POST", "/attachments", {"attachment": {
        "volume_uuid": "{volume}", "instance_uuid": "{server}"}}, watch=VOLUME_WATCH),
    c("volume", "GET", "/os-quota-sets/{owner}", foreign=FORBIDDEN),
    c("volume", "PUT", "/os-quota-sets/{owner}", {"quota_set": {"volumes": 99}},
      foreign=FORBIDDEN, watch="/os-quota-sets/{owner}"),
    c("volume", "DELETE", "/os-quota-sets/{owner}", foreign=FORBIDDEN,
      watch="/os-quota-sets/{owner}"),
]

VO = "volume@owner"
#: Cinder refuses a URL naming a project that is not the token's with a 400.
MALFORMED_URL = (400, 403, 404)
VOLUME_IN_OWNER_URL: list[Call] = [
    c(VO, "GET", "/volumes/{volume}", foreign=MALFORMED_URL),
    c(VO, "GET", "/volumes/detail", foreign=MALFORMED_URL),
    c(VO, "GET", "/snapshots/detail", foreign=MALFORMED_URL),
    c(VO, "GET", "/attachments/{attachment}", foreign=MALFORMED_URL),
    c(VO, "PUT", "/volumes/{volume}", {"volume": {"name": "stolen"}}, foreign=MALFORMED_URL,
      watch="volume /volumes/{volume}"),
    c(VO, "DELETE", "/volumes/{volume}", foreign=MALFORMED_URL, watch="volume /volumes/{volume}"),
    c(VO, "POST", "/volumes", {"volume": {"size": 1, "name": "planted"}}, foreign=MALFORMED_URL,
      watch="volume /volumes/detail"),
    c(VO, "POST", "/snapshots", {"snapshot": {"volume_id": "{volume}"}}, foreign=MALFORMED_URL,
      watch="volume /snapshots/detail"),
    c(VO, "GET", "/os-quota-sets/{owner}", foreign=MALFORMED_URL),
]

#: The caller's OWN resources made to reference the owner's: refused, and the owner's
#: resource is not touched.
REFUSED_REFERENCE = (400, 403, 404, 409)
CROSS_REFERENCES: list[Call] = [
    c("compute", "POST", "/servers", {"server": {
        "name": "x", "imageRef": "{image}", "flavorRef": "1", "networks": "none"}},
      foreign=REFUSED_REFERENCE, watch="/servers/detail?all_tenants=0"),
    c("compute", "POST", "/servers", {"server": {
        "name": "x", "imageRef": "{my_image}", "flavorRef": "1",
        "networks": [{"uuid": "{network}"}]}}, foreign=REFUSED_REFERENCE,
      watch="network /ports?network_id={network}"),
    c("compute", "POST", "/servers", {"server": {
        "name": "x", "imageRef": "{my_image}", "flavorRef": "1",
        "networks": [{"port": "{port}"}]}}, foreign=REFUSED_REFERENCE,
      watch="network /ports/{port}"),
    c("compute", "POST", "/servers", {"server": {
        "name": "x", "imageRef": "{my_image}", "flavorRef": "1", "networks": "none",
        "key_name": "{keypair}"}}, foreign=REFUSED_REFERENCE),
    c("compute", "POST", "/servers", {"server": {
        "name": "x", "flavorRef": "1", "networks": "none", "block_device_mapping_v2": [{
            "uuid": "{volume}", "boot_index": 0, "source_type": "volume",
            "destination_type": "volume"}]}}, foreign=REFUSED_REFERENCE,
      watch="volume /volumes/{volume}"),
    c("compute", "POST", "/servers", {
        "server": {"name": "x", "imageRef": "{my_image}", "flavorRef": "1",
                   "networks": "none"},
        "os:scheduler_hints": {"group": "{server_group}"}}, foreign=REFUSED_REFERENCE,
      watch="/os-server-groups/{server_group}"),
    c("compute", "POST", "/servers/{my_server}/os-volume_attachments",
      {"volumeAttachment": {"volumeId": "{volume}"}}, foreign=REFUSED_REFERENCE,
      watch="volume /volumes/{volume}"),
    c("compute", "POST", "/servers/{my_server}/os-interface",
      {"interfaceAttachment": {"net_id": "{network}"}}, foreign=REFUSED_REFERENCE,
      watch="network /ports?network_id={network}"),
    c("compute", "POST", "/servers/{my_server}/os-interface",
      {"interfaceAttachment": {"port_id": "{port}"}}, foreign=REFUSED_REFERENCE,
      watch="network /ports/{port}"),
    c("compute", "POST", "/servers/{my_server}/action",
      {"rebuild": {"imageRef": "{image}"}}, foreign=REFUSED_REFERENCE,
      watch="image /images/{image}"),
    c("network", "POST", "/ports", {"port": {"network_id": "{my_network}",
                                             "security_groups": ["{security_group}"]}},
      foreign=REFUSED_REFERENCE, watch="/security-groups/{security_group}"),
    c("network", "POST", "/ports", {"port": {"network_id": "{my_network}", "fixed_ips": [
        {"subnet_id": "{subnet}"}]}}, foreign=REFUSED_REFERENCE,
      watch="/ports?network_id={network}"),
    c("network", "POST", "/ports", {"port": {"network_id": "{network}",
                                             "project_id": "{me}"}},
      foreign=REFUSED_REFERENCE, watch="/ports?network_id={network}"),
    c("network", "POST", "/networks", {"network": {"name": "planted",
                                                   "project_id": "{owner}"}},
      foreign=REFUSED_REFERENCE, watch="/networks"),
    c("network", "POST", "/security-groups", {"security_group": {
        "name": "planted", "tenant_id": "{owner}"}}, foreign=REFUSED_REFERENCE,
      watch="/security-groups"),
    c("network", "POST", "/security-group-rules", {"security_group_rule": {
        "security_group_id": "{my_security_group}", "direction": "ingress",
        "remote_group_id": "{security_group}"}}, foreign=REFUSED_REFERENCE,
      watch="/security-groups/{security_group}"),
    c("network", "PUT", "/routers/{my_router}/add_router_interface",
      {"subnet_id": "{subnet}"}, foreign=REFUSED_REFERENCE,
      watch=("/subnets/{subnet}", "/ports?network_id={network}")),
    c("network", "PUT", "/routers/{my_router}/add_router_interface",
      {"port_id": "{port}"}, foreign=REFUSED_REFERENCE, watch="/ports/{port}"),
    c("network", "POST", "/floatingips", {"floatingip": {
        "floating_network_id": "{external_network}", "port_id": "{port}"}},
      foreign=REFUSED_REFERENCE, watch="/ports/{port}"),
    c("network", "PUT", "/floatingips/{my_floatingip}", {"floatingip": {"port_id": "{port}"}},
      foreign=REFUSED_REFERENCE, watch="/ports/{port}"),
    c("network", "PUT", "/ports/{my_port}", {"port": {"security_groups": [
        "{security_group}"]}}, foreign=REFUSED_REFERENCE,
      watch="/security-groups/{security_group}"),
    c("compute", "POST", "/servers", {"server": {
        "name": "x", "flavorRef": "1", "networks": "none", "block_device_mapping_v2": [{
            "uuid": "{snapshot}", "boot_index": 0, "source_type": "snapshot",
            "destination_type": "volume", "volume_size": 1}]}}, foreign=REFUSED_REFERENCE,
      watch="volume /snapshots/{snapshot}"),
    c("compute", "POST", "/servers", {"server": {
        "name": "x", "flavorRef": "1", "networks": "none", "block_device_mapping_v2": [{
            "uuid": "{image}", "boot_index": 0, "source_type": "image",
            "destination_type": "volume", "volume_size": 1}]}}, foreign=REFUSED_REFERENCE,
      watch="image /images/{image}"),
    c("compute", "POST", "/servers", {"server": {
        "name": "x", "imageRef": "{my_image}", "flavorRef": "1", "networks": "none",
        "block_device_mapping_v2": [
            {"uuid": "{my_image}", "boot_index": 0, "source_type": "image",
             "destination_type": "local"},
            {"uuid": "{volume}", "boot_index": 1, "source_type": "volume",
             "destination_type": "volume"}]}}, foreign=REFUSED_REFERENCE,
      watch="volume /volumes/{volume}"),
    c("compute", "POST", "/servers/{my_server}/action",
      {"rebuild": {"imageRef": "{my_image}", "key_name": "{keypair}"}},
      foreign=REFUSED_REFERENCE),
    c("compute", "POST", "/servers/{my_server}/action",
      {"addSecurityGroup": {"name": "{security_group}"}}, foreign=REFUSED_REFERENCE,
      watch="network /security-groups/{security_group}"),
    c("network", "PUT", "/routers/{my_router}", {"router": {
        "external_gateway_info": {"network_id": "{network}"}}}, foreign=REFUSED_REFERENCE,
      watch="/ports?network_id={network}"),
    # A port that claims to be the owner's router's interface (or its DHCP port) would put
    # the other project's network behind the owner's router.
    c("network", "POST", "/ports", {"port": {
        "network_id": "{my_network}", "device_owner": "network:router_interface",
        "device_id": "{router}"}}, foreign=REFUSED_REFERENCE,
      watch=("admin network /ports?device_id={router}", "/routers/{router}")),
    c("network", "POST", "/ports", {"port": {
        "network_id": "{my_network}", "device_owner": "network:router_gateway",
        "device_id": "{router}"}}, foreign=REFUSED_REFERENCE,
      watch=("admin network /ports?device_id={router}", "/routers/{router}")),
    c("network", "PUT", "/ports/{my_port}", {"port": {
        "device_owner": "network:router_interface", "device_id": "{router}"}},
      foreign=REFUSED_REFERENCE,
      watch=("admin network /ports?device_id={router}", "/routers/{router}")),
    c("image", "POST", "/images", {"id": "{image}", "name": "planted",
                                   "disk_format": "raw", "container_format": "bare"},
      foreign=REFUSED_REFERENCE, watch="/images/{image}"),
    c("volume", "POST", "/volumes", {"volume": {"size": 1, "imageRef": "{image}"}},
      foreign=REFUSED_REFERENCE, watch="image /images/{image}"),
    c("volume", "POST", "/attachments", {"attachment": {
        "volume_uuid": "{volume}", "instance_uuid": "{my_server}"}},
      foreign=REFUSED_REFERENCE, watch="/volumes/{volume}"),
    c("image", "POST", "/images/{image}/members", {"member": "{me}"},
      foreign=REFUSED_REFERENCE, watch="/images/{image}/members"),
    c("image", "PUT", "/images/{image}/members/{me}", {"status": "accepted"},
      foreign=REFUSED_REFERENCE, watch="/images/{image}/members"),
    c("network", "PUT", "/ports/{my_port}", {"port": {"fixed_ips": [
        {"subnet_id": "{subnet}"}]}}, foreign=REFUSED_REFERENCE,
      watch="admin network /ports?fixed_ips=subnet_id%3D{subnet}"),
    c("network", "PUT", "/ports/{my_port}", {"port": {"fixed_ips": [
        {"subnet_id": "{subnet}", "ip_address": "10.9.0.77"}]}}, foreign=REFUSED_REFERENCE,
      watch="admin network /ports?fixed_ips=subnet_id%3D{subnet}"),
]

#: A project the owner's image is shared with may read it, never change it (Glance: 403).
IMAGE_MEMBER_WRITES: list[Call] = [
    c("image", "PATCH", IMG, [{"op": "replace", "path": "/name", "value": "stolen"}],
      content_type=PATCH_TYPE, foreign=(403, 404), watch=IMAGE_WATCH),
    c("image", "DELETE", IMG, foreign=(403, 404), watch=IMAGE_WATCH),
    c("image", "PUT", f"{IMG}/file", b"stolen", content_type="application/octet-stream",
      foreign=(403, 404), watch=IMAGE_WATCH),
    c("image", "POST", f"{IMG}/actions/deactivate", foreign=(403, 404), watch=IMAGE_WATCH),
    c("image", "PUT", f"{IMG}/tags/new", foreign=(403, 404), watch=IMAGE_WATCH),
    c("image", "DELETE", f"{IMG}/tags/{MARKER}", foreign=(403, 404), watch=IMAGE_WATCH),
    c("image", "POST", f"{IMG}/members", {"member": "{intruder}"}, foreign=(403, 404),
      watch=IMAGE_WATCH),
    c("image", "DELETE", f"{IMG}/members/{{member_project}}", foreign=(403, 404),
      watch=IMAGE_WATCH),
    c("compute", "POST", "/servers/{server}/action", {"os-stop": None}, watch=SERVER_WATCH),
]

#: What only an admin may do, asked by a member (of its own project, on its own resources).
ADMIN_ONLY: list[Call] = [
    c("image", "POST", "/images", {"name": "pub", "visibility": "public",
                                   "disk_format": "raw", "container_format": "bare"},
      foreign=FORBIDDEN, watch="admin image /images?visibility=public"),
    c("image", "PATCH", "/images/{my_image}", [
        {"op": "replace", "path": "/visibility", "value": "public"}],
      content_type=PATCH_TYPE, foreign=FORBIDDEN, watch="admin image /images/{my_image}"),
    # A location naming another image's data would serve it as one's own.
    c("image", "PATCH", "/images/{my_image}", [
        {"op": "add", "path": "/locations/-", "value": {
            "url": "file:///var/lib/stratus/images/{image}", "metadata": {}}}],
      content_type=PATCH_TYPE, foreign=(400, 403), watch="admin image /images/{my_image}"),
    c("network", "POST", "/networks", {"network": {"name": "x", "shared": True}},
      foreign=FORBIDDEN, watch="admin network /networks"),
    c("network", "POST", "/networks", {"network": {"name": "x", "router:external": True}},
      foreign=FORBIDDEN, watch="admin network /networks"),
    c("network", "PUT", "/networks/{my_network}", {"network": {"shared": True}},
      foreign=FORBIDDEN, watch="admin network /networks/{my_network}"),
    c("network", "POST", "/subnets", {"subnet": {
        "network_id": "{external_network}", "cidr": "198.51.100.0/24", "ip_version": 4}},
      foreign=(403, 404), watch="admin network /subnets?network_id={external_network}"),
    c("network", "POST", "/ports", {"port": {"network_id": "{external_network}"}},
      foreign=(403, 404), watch="admin network /ports?network_id={external_network}"),
    c("network", "PUT", "/networks/{external_network}", {"network": {"name": "mine"}},
      foreign=(403, 404), watch="admin network /networks/{external_network}"),
    c("network", "PUT", "/quotas/{me}", {"quota": {"network": 1000}}, foreign=FORBIDDEN,
      watch="admin network /quotas/{intruder}"),
    c("network", "POST", "/ports", {"port": {"network_id": "{my_network}",
                                             "binding:host_id": "node1"}},
      foreign=FORBIDDEN, watch="admin network /ports?network_id={my_network}"),
    c("compute", "PUT", "/os-quota-sets/{me}", {"quota_set": {"instances": 1000}},
      foreign=FORBIDDEN, watch="admin compute /os-quota-sets/{intruder}"),
    c("compute", "POST", "/flavors", {"flavor": {"name": "big", "ram": 1, "vcpus": 1,
                                                 "disk": 1}},
      foreign=FORBIDDEN, watch="admin compute /flavors"),
    c("compute", "POST", "/servers/{my_server}/action", {"migrate": None},
      foreign=FORBIDDEN, watch="admin compute /servers/{my_server}"),
    c("compute", "GET", "/os-hypervisors", foreign=FORBIDDEN),
    c("compute", "GET", "/os-services", foreign=FORBIDDEN),
    c("compute", "GET", "/servers/{my_server}/diagnostics", foreign=(403, 404)),
    c("volume", "POST", "/volumes/{my_volume}/action", {"os-reset_status": {
        "status": "error"}}, foreign=FORBIDDEN, watch="admin volume@mine /volumes/{my_volume}"),
    c("volume", "POST", "/volumes/{my_volume}/action", {"os-force_delete": None},
      foreign=FORBIDDEN, watch="admin volume@mine /volumes/{my_volume}"),
    c("volume", "PUT", "/os-quota-sets/{me}", {"quota_set": {"volumes": 1000}},
      foreign=FORBIDDEN, watch="admin volume@mine /os-quota-sets/{intruder}"),
    c("volume", "GET", "/os-services", foreign=FORBIDDEN),
    c("compute", "POST", "/os-server-external-events", {"events": [{
        "name": "network-vif-plugged", "server_uuid": "{server}", "tag": "{server_port}"}]},
      foreign=FORBIDDEN, watch="compute /servers/{server}"),
    c("compute", "POST", "/os-server-external-events", {"events": [{
        "name": "volume-extended", "server_uuid": "{my_server}", "tag": "{my_volume}"}]},
      foreign=FORBIDDEN),
    c("network", "GET", "/agents", foreign=(403, 404)),
    c("identity", "POST", "/projects", {"project": {"name": "mine"}}, foreign=FORBIDDEN),
    c("identity", "POST", "/users", {"user": {"name": "mine"}}, foreign=FORBIDDEN),
    c("identity", "PUT", "/projects/{me}/users/{me_user}/roles/{admin_role}",
      foreign=FORBIDDEN),
    c("identity", "PATCH", "/users/{me_user}", {"user": {"name": "renamed"}},
      foreign=FORBIDDEN),
]

U = "/users/{owner_user}"
IDENTITY: list[Call] = [
    c("identity", "GET", "/projects/{owner}", foreign=KEYSTONE),
    c("identity", "PATCH", "/projects/{owner}", {"project": {"name": "stolen"}},
      foreign=KEYSTONE, watch="/projects/{owner}"),
    c("identity", "DELETE", "/projects/{owner}", foreign=KEYSTONE, watch="/projects/{owner}"),
    c("identity", "GET", U, foreign=KEYSTONE),
    c("identity", "PATCH", U, {"user": {"name": "stolen"}}, foreign=KEYSTONE, watch=U),
    c("identity", "DELETE", U, foreign=KEYSTONE, watch=U),
    c("identity", "GET", f"{U}/projects", foreign=KEYSTONE),
    c("identity", "GET", f"{U}/groups", foreign=KEYSTONE),
    c("identity", "GET", f"{U}/application_credentials", foreign=KEYSTONE),
    c("identity", "POST", f"{U}/application_credentials",
      {"application_credential": {"name": "stolen"}}, foreign=KEYSTONE,
      watch=f"{U}/application_credentials"),
    c("identity", "GET", f"{U}/application_credentials/{{app_credential}}", foreign=KEYSTONE),
    c("identity", "DELETE", f"{U}/application_credentials/{{app_credential}}",
      foreign=KEYSTONE, watch=f"{U}/application_credentials"),
    c("identity", "PUT", "/projects/{owner}/users/{me_user}/roles/{member_role}",
      foreign=KEYSTONE, watch="admin identity /role_assignments?scope.project.id={owner}"),
    c("identity", "GET", "/projects/{owner}/users/{owner_user}/roles", foreign=KEYSTONE,
      owner=FORBIDDEN),
    c("identity", "GET", "/projects/{owner}/users/{owner_user}/roles/{member_role}",
      foreign=KEYSTONE, owner=FORBIDDEN),
    c("identity", "DELETE", "/projects/{owner}/users/{owner_user}/roles/{member_role}",
      foreign=KEYSTONE, watch="admin identity /role_assignments?scope.project.id={owner}"),
    c("identity", "PUT", "/OS-INHERIT/projects/{owner}/users/{me_user}/roles/{member_role}"
      "/inherited_to_projects", foreign=KEYSTONE,
      watch="admin identity /role_assignments?scope.project.id={owner}"),
    c("identity", "GET", "/role_assignments?scope.project.id={owner}", foreign=KEYSTONE,
      owner=FORBIDDEN),
]

#: Calls that make something new in the caller's own project: a reader may not.
READER_CREATES: list[Call] = [
    c("compute", "POST", "/servers", {"server": {
        "name": "r", "imageRef": "{image}", "flavorRef": "1", "networks": "none"}},
      watch="/servers/detail"),
    c("compute", "POST", "/os-server-groups", {"server_group": {
        "name": "r", "policy": "affinity"}}, watch="/os-server-groups"),
    c("image", "POST", "/images", {"name": "r", "disk_format": "raw",
                                   "container_format": "bare"}, watch="/images"),
    c("network", "POST", "/networks", {"network": {"name": "r"}}, watch="/networks"),
    c("network", "POST", "/subnets", {"subnet": {
        "network_id": "{network}", "cidr": "10.78.0.0/24", "ip_version": 4}},
      watch="/subnets"),
    c("network", "POST", "/ports", {"port": {"network_id": "{network}"}}, watch="/ports"),
    c("network", "POST", "/routers", {"router": {"name": "r"}}, watch="/routers"),
    c("network", "POST", "/security-groups", {"security_group": {"name": "r"}},
      watch="/security-groups"),
    c("network", "POST", "/security-group-rules", {"security_group_rule": {
        "security_group_id": "{security_group}", "direction": "ingress"}},
      watch="/security-groups/{security_group}"),
    c("network", "POST", "/floatingips", {"floatingip": {
        "floating_network_id": "{external_network}"}}, watch="/floatingips"),
    c("volume", "POST", "/volumes", {"volume": {"size": 1}}, watch="/volumes/detail"),
    c("volume", "POST", "/snapshots", {"snapshot": {"volume_id": "{volume}"}},
      watch="/snapshots/detail"),
    c("volume", "POST", "/attachments", {"attachment": {
        "volume_uuid": "{volume}", "instance_uuid": "{server}"}}, watch="/attachments"),
]

#: Lists another project's member may make (200, or 403 for an admin-only filter): none
#: may hold the owner's resources.
LISTS: list[tuple[str, str]] = [
    ("compute", "/servers"), ("compute", "/servers/detail"),
    ("compute", "/servers/detail?all_tenants=1"),
    ("compute", "/servers/detail?all_tenants=1&project_id={owner}"),
    ("compute", "/servers/detail?project_id={owner}"),
    ("compute", "/servers/detail?tenant_id={owner}"),
    ("compute", "/servers/detail?name=" + MARKER),
    ("compute", "/servers/detail?deleted=True"), ("compute", "/servers/detail?ip=10.9"),
    ("compute", "/servers/detail?host=node1"), ("compute", "/servers/detail?all_tenants=True"),
    ("compute", "/servers/detail?changes-since=2000-01-01T00:00:00Z"),
    ("compute", "/servers/detail?tags=" + MARKER),

    ("compute", "/os-keypairs"), ("compute", "/os-keypairs?user_id={owner_user}"),
    ("compute", "/os-server-groups"), ("compute", "/os-server-groups?all_projects=True"),
    ("compute", "/os-migrations"), ("compute", "/os-simple-tenant-usage"),
    ("compute", "/os-simple-tenant-usage/{owner}"),
    ("compute", "/limits?tenant_id={owner}"),
    ("image", "/images"), ("image", "/images?owner={owner}"),
    ("image", "/images?visibility=private"), ("image", "/images?visibility=shared"),
    ("image", "/images?member_status=all"), ("image", "/images?visibility=all"),
    ("image", "/images?name=" + MARKER), ("image", "/images?tag=" + MARKER),
    ("image", "/images?visibility=shared&member_status=all"),
    *[("network", f"/{kind}{query}")
      for kind in ("networks", "subnets", "ports", "routers", "floatingips",
                   "security-groups", "security-group-rules")
      for query in ("", "?project_id={owner}", "?tenant_id={owner}", "?all_tenants=1")],
    ("network", "/ports?network_id={network}"), ("network", "/ports?device_id={server}"),
    ("network", "/subnets?network_id={network}"), ("network", "/quotas"),
    ("network", "/ports?device_owner=compute:nova"), ("network", "/ports?name=" + MARKER),
    ("network", "/ports?fixed_ips=ip_address%3D10.9.0.2"),
    ("network", "/ports?fixed_ips=subnet_id%3D{subnet}"),
    ("network", "/floatingips?port_id={server_port}"), ("network", "/routers?name=" + MARKER),
    ("network", "/security-group-rules?security_group_id={security_group}"),
    ("network", "/networks?tags=" + MARKER), ("network", "/networks?shared=False"),
    *[("volume", f"/{kind}{query}")
      for kind in ("volumes", "volumes/detail", "snapshots", "snapshots/detail", "attachments")
      for query in ("", "?all_tenants=1", "?all_tenants=1&project_id={owner}",
                    "?project_id={owner}")],
    ("volume", "/limits?project_id={owner}"),
    ("volume", "/volumes/detail?name=" + MARKER),
    ("volume", "/volumes/detail?all_tenants=1&name=" + MARKER),
    ("volume", "/snapshots/detail?volume_id={volume}"),
    ("volume", "/attachments?volume_id={attached_volume}"),
    ("identity", "/projects"), ("identity", "/users"), ("identity", "/role_assignments"),
    ("identity", "/role_assignments?user.id={owner_user}"),
    ("identity", "/auth/projects"),
]

#: A limit no other project has, set on the owner's project.
OWNER_LIMIT = 4093
OWNER_QUOTAS: list[tuple[str, str, dict[str, Any]]] = [
    ("compute", "/os-quota-sets/{owner}", {"quota_set": {"key_pairs": OWNER_LIMIT}}),
    ("network", "/quotas/{owner}", {"quota": {"security_group": OWNER_LIMIT}}),
    ("volume@owner", "/os-quota-sets/{owner}", {"quota_set": {"snapshots": OWNER_LIMIT}}),
]
#: Where another project might read the owner's quotas or usage.
QUOTA_READS: list[tuple[str, str]] = [
    ("compute", "/limits?tenant_id={owner}"), ("compute", "/limits?project_id={owner}"),
    ("compute", "/os-quota-sets/{owner}"), ("compute", "/os-quota-sets/{owner}/detail"),
    ("compute", "/os-quota-sets/{owner}?user_id={owner_user}"),
    ("network", "/quotas/{owner}"), ("network", "/quotas/{owner}/details"),
    ("network", "/quotas"), ("network", "/quotas?project_id={owner}"),
    ("volume", "/limits?project_id={owner}"), ("volume", "/limits?tenant_id={owner}"),
    ("volume", "/os-quota-sets/{owner}"), ("volume", "/os-quota-sets/{owner}?usage=True"),
    ("volume@owner", "/limits"),
]

#: One call an unauthenticated caller might make on each API, to be refused with 401.
BAD_TOKEN_CALLS: list[tuple[str, str, str]] = [
    ("identity", "GET", "/projects/{owner}"), ("identity", "GET", "/auth/projects"),
    ("identity", "GET", "/users/{owner_user}/application_credentials"),
    ("compute", "GET", "/servers/detail"), ("compute", "GET", "/servers/{server}"),
    ("compute", "DELETE", "/servers/{server}"), ("compute", "GET", "/os-keypairs"),
    ("image", "GET", "/images"), ("image", "GET", "/images/{image}/file"),
    ("image", "DELETE", "/images/{image}"),
    ("network", "GET", "/networks"), ("network", "DELETE", "/ports/{port}"),
    ("volume", "GET", "/volumes/detail"), ("volume", "DELETE", "/volumes/{volume}"),
]


# The cloud and the owner's resources ------------------------------------------------------


@dataclass
class World:
    cloud: TestCloud
    owner: Who
    intruder: Who
    reader: Who
    #: A member of the owner project through an application credential restricted to
    #: ``reader``: a reader as well.
    restricted: Who | None = None
    #: A member of the project the owner's image is shared with (pending).
    image_member: Who | None = None
    ids: dict[str, str] = field(default_factory=dict)

    def fill(self, text: str, who: Who) -> str:
        values = {**self.ids, "owner": self.owner.project_id, "owner_user": self.owner.user_id,
                  "me": who.project_id, "me_user": who.user_id,
                  "intruder": self.intruder.project_id}
        for key, value in values.items():
            text = text.replace("{" + key + "}", value)
        return text

    def fill_body(self, body: Any, who: Who) -> Any:
        if body is None or isinstance(body, bytes):
            return body
        return json.loads(self.fill(json.dumps(body), who))

    async def request(self, who: Who, api: str, method: str, path: str, body: Any = None,
                      content_type: str | None = None,
                      token: str | None = None) -> httpx.Response:
        headers = {"X-Auth-Token": token if token is not None else who.token}
        if api in API_VERSION:
            headers["OpenStack-API-Version"] = API_VERSION[api]
        url = self.fill(API_PREFIX[api] + path, who)
        body = self.fill_body(body, who)
        if isinstance(body, bytes):
            return await self.cloud.client.request(method, url, content=body, headers={
                **headers, "Content-Type": content_type or "application/octet-stream"})
        if content_type:
            return await self.cloud.client.request(method, url, content=json.dumps(body),
                                                   headers={**headers,
                                                            "Content-Type": content_type})
        return await self.cloud.client.request(method, url, json=body, headers=headers)

    async def ok(self, who: Who, api: str, method: str, path: str, body: Any = None,
                 **kwargs: Any) -> dict[str, Any]:
        response = await self.request(who, api, method, path, body, **kwargs)
        assert response.status_code < 300, (method, path, response.status_code, response.text)
        return response.json() if response.content else {}

    async def snapshot(self, watch: tuple[str, ...]) -> dict[str, Any]:
        seen = {}
        for entry in watch:
            who = self.owner
            if entry.startswith("admin "):  # what the admin sees: beyond the owner's view
                who, entry = self.cloud.admin, entry.removeprefix("admin ")
            api, path = entry.split(" ", 1)
            response = await self.request(who, api, "GET", path)
            seen[entry] = (response.status_code, response.json() if response.content else None)
        return seen

    async def wait(self, api: str, path: str, key: str, *statuses: str) -> dict[str, Any]:
        deadline = time.monotonic() + 60
        while True:
            item: dict[str, Any] = (await self.ok(self.owner, api, "GET", path))[key]
            if item["status"] in statuses:
                return item
            assert time.monotonic() < deadline, f"{path} stuck in {item['status']}"
            await asyncio.sleep(0.05)


async def make_resources(world: World, admin: Who) -> None:
    owner, ids = world.owner, world.ids
    name = MARKER

    async def make(api: str, path: str, body: Any, *keys: str) -> dict[str, Any]:
        answer: Any = await world.ok(owner, api, "POST", path, body)
        for key in keys:
            answer = answer[key]
        return answer

    # identity
    ids["app_credential"] = (await make(
        "identity", "/users/{owner_user}/application_credentials",
        {"application_credential": {"name": name}}, "application_credential"))["id"]
    ids["member_role"] = world.cloud.roles["member"]
    ids["admin_role"] = world.cloud.roles["admin"]

    # image: private, with data, a tag and a member (a third project)
    third = world.image_member = await world.cloud.project()
    image = await make("image", "/images", {"name": name, "disk_format": "raw",
                                            "container_format": "bare", "tags": [name]})
    ids["image"] = image["id"]
    await world.ok(owner, "image", "PUT", "/images/{image}/file", name.encode() * 64)
    ids["member_project"] = third.project_id
    await world.ok(owner, "image", "POST", "/images/{image}/members",
                   {"member": third.project_id})

    # network: an external network (the admin's), then the owner's
    external = await world.ok(admin, "network", "POST", "/networks", {"network": {
        "name": "public", "router:external": True}})
    ids["external_network"] = external["network"]["id"]
    await world.ok(admin, "network", "POST", "/subnets", {"subnet": {
        "network_id": ids["external_network"], "cidr": "203.0.113.0/24", "ip_version": 4}})
    ids["network"] = (await make("network", "/networks", {"network": {"name": name}},
                                 "network"))["id"]
    await world.ok(owner, "network", "PUT", f"/networks/{ids['network']}/tags/{name}")
    ids["subnet"] = (await make("network", "/subnets", {"subnet": {
        "name": name, "network_id": ids["network"], "cidr": "10.9.0.0/24",
        "ip_version": 4}}, "subnet"))["id"]
    ids["port"] = (await make("network", "/ports", {"port": {
        "name": name, "network_id": ids["network"]}}, "port"))["id"]
    ids["router"] = (await make("network", "/routers", {"router": {
        "name": name, "external_gateway_info": {"network_id": ids["external_network"]}}},
        "router"))["id"]
    await world.ok(owner, "network", "PUT", "/routers/{router}/add_router_interface",
                   {"subnet_id": ids["subnet"]})
    ids["floatingip"] = (await make("network", "/floatingips", {"floatingip": {
        "floating_network_id": ids["external_network"], "description": name}},
        "floatingip"))["id"]
    group = await make("network", "/security-groups", {"security_group": {"name": name}},
                       "security_group")
    ids["security_group"] = group["id"]
    ids["security_group_rule"] = (await make("network", "/security-group-rules", {
        "security_group_rule": {"security_group_id": group["id"], "direction": "ingress",
                                "protocol": "tcp", "port_range_min": 22,
                                "port_range_max": 22, "description": name}},
        "security_group_rule"))["id"]

    # compute: a key pair, a server group, a server on the network with metadata and a tag
    ids["keypair"] = name
    public_key = Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    await make("compute", "/os-keypairs", {"keypair": {"name": name,
                                                       "public_key": public_key}})
    ids["server_group"] = (await make("compute", "/os-server-groups", {"server_group": {
        "name": name, "policy": "anti-affinity"}}, "server_group"))["id"]
    server = await make("compute", "/servers", {"server": {
        "name": name, "imageRef": ids["image"], "flavorRef": "1",
        "networks": [{"uuid": ids["network"]}], "metadata": {"secret": name},
        "tags": [name]}}, "server")
    ids["server"] = server["id"]
    await world.wait("compute", "/servers/{server}", "server", "ACTIVE")
    interfaces = await world.ok(owner, "compute", "GET", "/servers/{server}/os-interface")
    ids["server_port"] = interfaces["interfaceAttachments"][0]["port_id"]
    actions = await world.ok(owner, "compute", "GET", "/servers/{server}/os-instance-actions")
    ids["server_request"] = actions["instanceActions"][0]["request_id"]

    # volume: one attached to the server (an attachment), one free with metadata and a
    # snapshot
    attached = await make("volume", "/volumes", {"volume": {"size": 1, "name": name + "-a"}},
                          "volume")
    ids["attached_volume"] = attached["id"]
    volume = await make("volume", "/volumes", {"volume": {
        "size": 1, "name": name, "metadata": {"secret": name}}}, "volume")
    ids["volume"] = volume["id"]
    for ref in ("attached_volume", "volume"):
        await world.wait("volume", f"/volumes/{{{ref}}}", "volume", "available")
    await world.ok(owner, "compute", "POST", "/servers/{server}/os-volume_attachments",
                   {"volumeAttachment": {"volumeId": ids["attached_volume"]}})
    in_use = await world.wait("volume", "/volumes/{attached_volume}", "volume", "in-use")
    ids["attachment"] = in_use["attachments"][0]["attachment_id"]
    snapshot = await make("volume", "/snapshots", {"snapshot": {
        "volume_id": ids["volume"], "name": name}}, "snapshot")
    ids["snapshot"] = snapshot["id"]
    await world.wait("volume", "/snapshots/{snapshot}", "snapshot", "available")

    # quotas only the owner's project has (the admin's doing): nobody else may see them
    for api, path, body in OWNER_QUOTAS:
        await world.ok(admin, api, "PUT", path, body)
        seen = await world.request(owner, api, "GET", path)
        assert str(OWNER_LIMIT) in seen.text, seen.text  # the control: its owner sees it


async def make_intruders_own(world: World) -> None:
    """What the other project references the owner's resources from."""
    me, ids = world.intruder, world.ids

    async def make(api: str, path: str, body: Any, key: str) -> str:
        answer = await world.ok(me, api, "POST", path, body)
        return str(answer[key]["id"] if key else answer["id"])

    ids["my_image"] = await make("image", "/images", {
        "name": "mine", "disk_format": "raw", "container_format": "bare"}, "")
    await world.ok(me, "image", "PUT", "/images/{my_image}/file", b"\0" * 512)
    ids["my_network"] = await make("network", "/networks", {"network": {"name": "mine"}},
                                   "network")
    await make("network", "/subnets", {"subnet": {
        "network_id": ids["my_network"], "cidr": "10.9.0.0/24", "ip_version": 4}}, "subnet")
    ids["my_port"] = await make("network", "/ports", {"port": {
        "network_id": ids["my_network"]}}, "port")
    ids["my_router"] = await make("network", "/routers", {"router": {"name": "mine"}},
                                  "router")
    ids["my_security_group"] = await make("network", "/security-groups", {
        "security_group": {"name": "mine"}}, "security_group")
    ids["my_floatingip"] = await make("network", "/floatingips", {"floatingip": {
        "floating_network_id": ids["external_network"]}}, "floatingip")
    ids["my_volume"] = await make("volume", "/volumes", {"volume": {"size": 1}}, "volume")
    ids["my_server"] = await make("compute", "/servers", {"server": {
        "name": "mine", "imageRef": ids["my_image"], "flavorRef": "1", "networks": "none"}},
        "server")
    deadline = time.monotonic() + 60
    while (await world.ok(me, "compute", "GET", "/servers/{my_server}"))["server"][
            "status"] != "ACTIVE":
        assert time.monotonic() < deadline, "the other project's server is not ACTIVE"
        await asyncio.sleep(0.05)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory,
                _schema_templates: Any) -> AsyncIterator[World]:
    tmp_path: Path = tmp_path_factory.mktemp("isolation")
    database = tmp_path / "cloud.db"
    shutil.copyfile(await _schema_templates.sqlite(), database)
    starter = CloudStarter(f"sqlite+aiosqlite:///{database}", tmp_path, ADMIN_PASSWORD)
    try:
        cloud = await starter.start(TestCloud, UNITS, f"memory://iso-{uuid.uuid4().hex[:8]}",
                                    network={"backend": "noop"},
                                    volume={"host": "storage-1"},
                                    compute={"fake_hosts": 1, "host": "node",
                                             "volume_attach_timeout": 30.0})
        owner = await cloud.project()
        reader_of_owner = await _user_on(cloud, owner.project_id, "reader")
        world = World(cloud, owner, await cloud.project(), reader_of_owner)
        await make_resources(world, cloud.admin)
        await make_intruders_own(world)
        world.restricted = await _reader_by_credential(cloud, owner.project_id)
        yield world
    finally:
        await starter.aclose()


async def _reader_by_credential(cloud: TestCloud, project_id: str) -> Who:
    """A member of ``project_id`` logged in with an application credential that keeps only
    its ``reader`` role."""
    member = await _user_on(cloud, project_id, "member")
    path = f"/identity/v3/users/{member.user_id}/application_credentials"
    credential = await cloud.client.post(path, headers=member.headers, json={
        "application_credential": {"name": "read-only", "roles": [{"name": "reader"}]}})
    assert credential.status_code == 201, credential.text
    body = credential.json()["application_credential"]
    issued = await cloud.client.post("/identity/v3/auth/tokens", json={"auth": {"identity": {
        "methods": ["application_credential"], "application_credential": {
            "id": body["id"], "secret": body["secret"]}}}})
    assert issued.status_code == 201, issued.text
    assert [r["name"] for r in issued.json()["token"]["roles"]] == ["reader"], issued.text
    return Who(issued.headers["X-Subject-Token"], project_id, member.user_id)


async def _user_on(cloud: TestCloud, project_id: str, role: str) -> Who:
    name = f"u-{uuid.uuid4().hex[:8]}"
    admin = cloud.admin.headers
    user = (await cloud.client.post("/identity/v3/users", headers=admin, json={
        "user": {"name": name, "password": f"{name}-pw"}})).json()["user"]
    grant = await cloud.client.put(f"/identity/v3/projects/{project_id}/users/{user['id']}"
                                   f"/roles/{cloud.roles[role]}", headers=admin)
    assert grant.status_code == 204, grant.text
    project = (await cloud.client.get(f"/identity/v3/projects/{project_id}",
                                      headers=admin)).json()["project"]
    return await cloud.token(name, f"{name}-pw", project["name"])


# The matrix -------------------------------------------------------------------------------

OWNED_CALLS = [*COMPUTE, *IMAGE, *NETWORK, *VOLUME, *IDENTITY]
FOREIGN_CALLS = [*OWNED_CALLS, *VOLUME_IN_OWNER_URL, *CROSS_REFERENCES]
READER_CALLS = [call for call in OWNED_CALLS if call.writes] + READER_CREATES


def echo_removed(response: httpx.Response, path: str) -> str:
    """The answer without what the caller itself named in the path: a key pair's or a tag's
    name quoted back in a "not found", a filter (``name=...``, whole) in a list's links. A
    name in a list's items (``"name": ...``) stays, to be found."""
    text = response.text
    for part in re.split(r"[/?&]", path):
        if MARKER in part:
            text = text.replace(part, "")
    return text


async def refused(world: World, who: Who, call: Call, expected: tuple[int, ...]) -> None:
    before = await world.snapshot(tuple(world.fill(w, who) for w in call.watch))
    response = await world.request(who, call.api, call.method, call.path, call.body,
                                   content_type=call.content_type)
    assert response.status_code in expected, (response.status_code, response.text[:400])
    assert MARKER not in echo_removed(response, world.fill(call.path, who)), response.text[:400]
    after = await world.snapshot(tuple(world.fill(w, who) for w in call.watch))
    assert after == before, "the owner's resource changed"


OWNER_READS = [call for call in OWNED_CALLS if not call.writes]


@pytest.mark.parametrize("call", OWNER_READS, ids=[call.id for call in OWNER_READS])
async def test_the_owner_reads_what_others_cannot(world: World, call: Call) -> None:
    """The control: each refused read names something that exists and its owner may see."""
    response = await world.request(world.owner, call.api, "GET", call.path)
    assert response.status_code in call.owner, (response.status_code, response.text[:400])


@pytest.mark.parametrize("call", FOREIGN_CALLS, ids=[call.id for call in FOREIGN_CALLS])
async def test_another_projects_member_is_refused(world: World, call: Call) -> None:
    await refused(world, world.intruder, call, call.foreign)


@pytest.mark.parametrize("call", ADMIN_ONLY, ids=[call.id for call in ADMIN_ONLY])
async def test_a_member_does_not_what_only_an_admin_does(world: World, call: Call) -> None:
    await refused(world, world.intruder, call, call.foreign)


@pytest.mark.parametrize("call", IMAGE_MEMBER_WRITES,
                         ids=[call.id for call in IMAGE_MEMBER_WRITES])
async def test_an_image_member_changes_nothing(world: World, call: Call) -> None:
    assert world.image_member is not None
    await refused(world, world.image_member, call, call.foreign)


@pytest.mark.parametrize("call", READER_CALLS, ids=[call.id for call in READER_CALLS])
@pytest.mark.parametrize("how", ["reader role", "application credential of reader"])
async def test_a_reader_writes_nothing(world: World, how: str, call: Call) -> None:
    who = world.reader if how == "reader role" else world.restricted
    assert who is not None
    await refused(world, who, call, call.reader)


@pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE"])
async def test_anothers_token_is_neither_read_nor_revoked(world: World, method: str) -> None:
    """Keystone: only an admin (or service) or the token's own subject may validate or
    revoke a token; another project's member is refused and the token still works."""
    response = await world.cloud.client.request(method, "/identity/v3/auth/tokens", headers={
        **world.intruder.headers, "X-Subject-Token": world.owner.token})
    assert response.status_code in (403, 404), (response.status_code, response.text[:400])
    assert MARKER not in response.text
    still = await world.request(world.owner, "compute", "GET", "/servers/{server}")
    assert still.status_code == 200, still.text


async def test_no_role_beyond_ones_own(world: World) -> None:
    """A member can neither scope a token to a project it has no role on nor make an
    application credential with a role it does not hold."""
    cloud, intruder = world.cloud, world.intruder
    user = (await cloud.client.get(f"/identity/v3/users/{intruder.user_id}",
                                   headers=cloud.admin.headers)).json()["user"]
    owner_project = (await cloud.client.get(f"/identity/v3/projects/{world.owner.project_id}",
                                            headers=cloud.admin.headers)).json()["project"]
    scoped = await cloud.client.post("/identity/v3/auth/tokens", json=auth_body(
        user["name"], f"{user['name']}-pw", owner_project["name"]))
    assert scoped.status_code == 401, scoped.text
    path = f"/identity/v3/users/{intruder.user_id}/application_credentials"
    for roles in ([{"name": "admin"}], [{"id": cloud.roles["admin"]}]):
        made = await cloud.client.post(path, headers=intruder.headers, json={
            "application_credential": {"name": "escalate", "roles": roles}})
        assert made.status_code in (400, 403, 404), made.text


@pytest.mark.parametrize("api,path", LISTS, ids=[f"{api} {path}" for api, path in LISTS])
async def test_lists_leave_out_another_projects_resources(world: World, api: str,
                                                          path: str) -> None:
    response = await world.request(world.intruder, api, "GET", path)
    assert response.status_code in (200, 400, 403), (response.status_code,
                                                     response.text[:400])
    assert MARKER not in echo_removed(response, world.fill(path, world.intruder)), \
        response.text[:400]


@pytest.mark.parametrize("api,path", QUOTA_READS, ids=[f"{a} {p}" for a, p in QUOTA_READS])
async def test_another_projects_quotas_are_not_read(world: World, api: str, path: str) -> None:
    response = await world.request(world.intruder, api, "GET", path)
    assert response.status_code in (200, 400, 403, 404), (response.status_code,
                                                          response.text[:400])
    assert str(OWNER_LIMIT) not in response.text, response.text[:400]


def expired_token(world: World, token: str) -> str:
    identity = world.cloud.stack.identity
    assert identity is not None
    formatter: TokenFormatter = identity.formatter
    payload = formatter.decode(token)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    payload.expires_at, payload.issued_at = past, past - dt.timedelta(hours=1)
    return formatter.encode(payload)


def forged_token(world: World, token: str) -> str:
    """The same payload sealed with a key that is not the cloud's."""
    identity = world.cloud.stack.identity
    assert identity is not None
    raw = token.encode() + b"=" * (-len(token) % 4)
    packed = identity.keys.fernet().decrypt(raw)
    return Fernet(Fernet.generate_key()).encrypt(packed).rstrip(b"=").decode()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bad_tokens(world: World) -> dict[str, str]:
    cloud = world.cloud
    victim = await _user_on(cloud, world.owner.project_id, "member")
    revoked = await cloud.client.delete("/identity/v3/auth/tokens", headers={
        **cloud.admin.headers, "X-Subject-Token": victim.token})
    assert revoked.status_code == 204, revoked.text
    fresh = await _user_on(cloud, world.owner.project_id, "admin")
    tokens = {"revoked": victim.token, "expired": expired_token(world, fresh.token),
              "forged": forged_token(world, fresh.token), "garbage": "gAAAAA" + MARKER}
    admin, identity = cloud.admin.headers, "/identity/v3"
    # Tokens that were good until what they stood on went away.
    owner_project = world.owner.project_id
    for kind, (method, path, body) in {
            "role removed": ("DELETE", "/projects/{p}/users/{u}/roles/" + cloud.roles["member"],
                             None),
            "user disabled": ("PATCH", "/users/{u}", {"user": {"enabled": False}}),
            "user deleted": ("DELETE", "/users/{u}", None),
            "password changed": ("PATCH", "/users/{u}", {"user": {"password": "Changed-1"}}),
    }.items():
        who = await _user_on(cloud, owner_project, "member")
        url = identity + path.format(p=owner_project, u=who.user_id)
        done = await cloud.client.request(method, url, headers=admin, json=body)
        assert done.status_code < 300, (kind, done.text)
        tokens[kind] = who.token
    elsewhere = await cloud.project()
    disabled = await cloud.client.patch(f"{identity}/projects/{elsewhere.project_id}",
                                        headers=admin, json={"project": {"enabled": False}})
    assert disabled.status_code == 200, disabled.text
    tokens["project disabled"] = elsewhere.token
    holder = await _user_on(cloud, owner_project, "member")
    credentials = f"{identity}/users/{holder.user_id}/application_credentials"
    credential = (await cloud.client.post(credentials, headers=holder.headers, json={
        "application_credential": {"name": "short-lived"}})).json()["application_credential"]
    issued = await cloud.client.post(f"{identity}/auth/tokens", json={"auth": {"identity": {
        "methods": ["application_credential"], "application_credential": {
            "id": credential["id"], "secret": credential["secret"]}}}})
    assert issued.status_code == 201, issued.text
    gone = await cloud.client.delete(f"{credentials}/{credential['id']}", headers=admin)
    assert gone.status_code == 204, gone.text
    tokens["application credential deleted"] = issued.headers["X-Subject-Token"]
    return tokens


BAD_TOKEN_KINDS = ("revoked", "expired", "forged", "garbage", "role removed", "user disabled",
                   "user deleted", "password changed", "project disabled",
                   "application credential deleted")
BAD_TOKEN_ROWS = [(kind, *call) for kind in BAD_TOKEN_KINDS for call in BAD_TOKEN_CALLS]


@pytest.mark.parametrize("kind,api,method,path", BAD_TOKEN_ROWS,
                         ids=[" ".join(row) for row in BAD_TOKEN_ROWS])
async def test_a_bad_token_gets_401(world: World, bad_tokens: dict[str, str], kind: str,
                                    api: str, method: str, path: str) -> None:
    watch = (f"{api} {path}",) if method != "GET" else ()
    before = await world.snapshot(tuple(world.fill(w, world.owner) for w in watch))
    response = await world.request(world.owner, api, method, path, token=bad_tokens[kind])
    assert response.status_code == 401, (response.status_code, response.text[:400])
    assert MARKER not in response.text
    assert await world.snapshot(tuple(world.fill(w, world.owner) for w in watch)) == before
