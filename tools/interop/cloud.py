"""A throw-away ``stratus up`` for Tempest, and the resources ``tempest.conf`` names.

``Cloud`` starts ``stratus up`` (fake virt driver, noop network backend) in a data directory
of its own on a free port of 127.0.0.1 and stops it (its whole process group) on exit.
``prepare`` reads the catalog with the admin credentials of the cloud's ``clouds.yaml`` and
makes what Tempest expects an operator to have made: two images (bytes this tool writes;
nothing is downloaded), a network shared with every project, an external network when the
cloud has none; flavors are the ones ``stratus up`` bootstraps.

One operator setting differs from Stratus's default: the image service runs with
``[image] require_format_match = false``, Glance's ``[image_format]
require_image_format_match = false``. Tempest's image listing tests (in the guideline) upload
random bytes as every disk format and skip where the cloud refuses data that is not its
format; an operator of Glance or of Stratus may switch the match off, and ``tempest.conf``
then says so (``image_format_enforcement = false``). The safety checks stay on.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import yaml

#: How long ``stratus up`` may take to answer (first start makes databases and keys).
START_TIMEOUT = 180.0
#: The shared network Tempest's servers boot on (``create_isolated_networks = false``).
SHARED_NETWORK = "interop-shared"
SHARED_CIDR = "10.199.0.0/24"
EXTERNAL_NETWORK = "interop-public"
EXTERNAL_CIDR = "172.31.199.0/24"
#: The test images: raw disks of this many zero bytes, which the fake driver boots.
IMAGE_BYTES = 1024 * 1024


class CloudError(Exception):
    """The throw-away cloud did not start or could not be prepared."""


def free_port() -> int:
    """A TCP port of 127.0.0.1 nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Admin:
    """The cloud's admin credentials, from its ``clouds.yaml``."""

    auth_url: str
    username: str
    password: str
    project_name: str
    domain_name: str
    region: str


@dataclass
class Prepared:
    """What ``tempest.conf`` is written from."""

    admin: Admin
    endpoints: dict[str, str]
    compute_versions: tuple[str, str]
    volume_versions: tuple[str, str]
    network_extensions: list[str]
    volume_extensions: list[str] | None
    image_ref: str
    image_ref_alt: str
    flavor_ref: str
    flavor_ref_alt: str
    shared_network: str
    external_network_id: str
    #: Whether the image service refuses data that is not its disk_format.
    image_format_enforcement: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


class Cloud:
    """``with Cloud(stratus, data_dir) as cloud:`` — a running ``stratus up``."""

    def __init__(self, stratus: Path, data_dir: Path, port: int | None = None, *,
                 require_format_match: bool = False) -> None:
        self.stratus = stratus
        self.require_format_match = require_format_match
        self.data_dir = data_dir
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir / "stratus.log"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Cloud:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        out = (self.data_dir / "up.out").open("wb")
        self._process = subprocess.Popen(
            [str(self.stratus), "up", "--data-dir", str(self.data_dir), "--host", "127.0.0.1",
             "--port", str(self.port), "--virt-driver", "fake", "--network-backend", "noop"],
            env={**os.environ, "STRATUS_IMAGE__REQUIRE_FORMAT_MATCH":
                 str(self.require_format_match).lower()},
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        try:
            self._wait_up()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _wait_up(self) -> None:
        assert self._process is not None
        clouds = self.data_dir / "clouds.yaml"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                output = (self.data_dir / "up.out").read_text(errors="replace")
                raise CloudError(f"stratus up exited ({self._process.returncode}):\n{output}")
            if clouds.exists() and "export OS_CLIENT_CONFIG_FILE" in (
                    self.data_dir / "up.out").read_text(errors="replace"):
                return
            time.sleep(0.5)
        raise CloudError(f"stratus up did not come up in {START_TIMEOUT:.0f} s")

    def stop(self) -> None:
        """Stop ``stratus up`` (SIGTERM, then SIGKILL) and everything it started."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def admin(self) -> Admin:
        """The admin credentials ``stratus up`` wrote."""
        data = yaml.safe_load((self.data_dir / "clouds.yaml").read_text())
        cloud = data["clouds"]["stratus"]
        auth = cloud["auth"]
        return Admin(auth_url=auth["auth_url"], username=auth["username"],
                     password=auth["password"], project_name=auth["project_name"],
                     domain_name=auth.get("user_domain_name", "Default"),
                     region=cloud.get("region_name", "RegionOne"))

    def server_errors(self) -> list[str]:
        """The log lines of requests the cloud answered with a 5xx."""
        if not self.log.exists():
            return []
        return [line for line in self.log.read_text(errors="replace").splitlines()
                if " status: 5" in line]


def _check(response: httpx.Response, what: str) -> httpx.Response:
    if response.is_error:
        raise CloudError(f"{what}: {response.status_code} {response.text[:500]}")
    return response


def _root(url: str, levels: int) -> str:
    """``url`` without its last ``levels`` path segments (the API's version document)."""
    return url.rstrip("/").rsplit("/", levels)[0] + "/"


def _version_range(client: httpx.Client, root: str) -> tuple[str, str]:
    body = client.get(root).json()
    versions = body.get("versions", [])
    if isinstance(versions, dict):
        versions = versions.get("values", [])
    current = [v for v in versions if v.get("version")]
    if not current:
        raise CloudError(f"{root}: no microversion range in the version document")
    newest = max(current, key=lambda v: tuple(int(p) for p in v["version"].split(".")))
    return str(newest["min_version"]), str(newest["version"])


def prepare(cloud: Cloud) -> Prepared:
    """Read the catalog and make the images and networks Tempest's configuration names."""
    admin = cloud.admin()
    with httpx.Client(timeout=60.0) as client:
        auth = _check(client.post(f"{admin.auth_url}/auth/tokens", json={"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": admin.username, "domain": {"name": admin.domain_name},
                "password": admin.password}}},
            "scope": {"project": {"name": admin.project_name,
                                  "domain": {"name": admin.domain_name}}}}}), "token")
        client.headers["X-Auth-Token"] = auth.headers["X-Subject-Token"]
        endpoints: dict[str, str] = {}
        for service in auth.json()["token"]["catalog"]:
            for endpoint in service["endpoints"]:
                if endpoint["interface"] == "public":
                    endpoints[service["type"]] = endpoint["url"]
        for needed in ("compute", "image", "network", "volumev3", "identity"):
            if needed not in endpoints:
                raise CloudError(f"the catalog has no {needed} endpoint")
        compute, image = endpoints["compute"], endpoints["image"].rstrip("/")
        network, volume = endpoints["network"].rstrip("/"), endpoints["volumev3"]

        compute_versions = _version_range(client, _root(compute, 1))
        volume_versions = _version_range(client, _root(volume, 2))
        network_extensions = sorted(
            e["alias"] for e in _check(client.get(f"{network}/v2.0/extensions"),
                                       "network extensions").json()["extensions"])
        found = client.get(f"{volume.rstrip('/')}/extensions")
        volume_extensions = (sorted(e["alias"] for e in found.json()["extensions"])
                             if found.status_code == 200 else None)

        images = [_image(client, image, name) for name in ("interop-image",
                                                           "interop-image-alt")]
        flavors = sorted(_check(client.get(f"{compute}/flavors/detail"), "flavors")
                         .json()["flavors"], key=lambda f: (f["ram"], f["disk"]))
        if len(flavors) < 2:
            raise CloudError("the cloud has fewer than two flavors")
        _network(client, network, SHARED_NETWORK, SHARED_CIDR,
                 {"shared": True})
        external = _network(client, network, EXTERNAL_NETWORK, EXTERNAL_CIDR,
                            {"router:external": True}, existing_external=True)
    return Prepared(admin=admin, endpoints=endpoints, compute_versions=compute_versions,
                    volume_versions=volume_versions, network_extensions=network_extensions,
                    volume_extensions=volume_extensions, image_ref=images[0],
                    image_ref_alt=images[1], flavor_ref=str(flavors[0]["id"]),
                    flavor_ref_alt=str(flavors[1]["id"]), shared_network=SHARED_NETWORK,
                    external_network_id=external,
                    image_format_enforcement=cloud.require_format_match)


def _image(client: httpx.Client, image: str, name: str) -> str:
    """A public raw image of zeros, uploaded; its id."""
    created = _check(client.post(f"{image}/v2/images", json={
        "name": name, "disk_format": "raw", "container_format": "bare",
        "visibility": "public"}), f"image {name}").json()
    _check(client.put(f"{image}/v2/images/{created['id']}/file", content=bytes(IMAGE_BYTES),
                      headers={"Content-Type": "application/octet-stream"}),
           f"image {name} data")
    return str(created["id"])


def _network(client: httpx.Client, network: str, name: str, cidr: str,
             attrs: dict[str, Any], existing_external: bool = False) -> str:
    """A network with one IPv4 subnet (or the cloud's external network, if it has one)."""
    if existing_external:
        found = _check(client.get(f"{network}/v2.0/networks",
                                  params={"router:external": "true"}),
                       "external networks").json()["networks"]
        if found:
            return str(found[0]["id"])
    net = _check(client.post(f"{network}/v2.0/networks",
                             json={"network": {"name": name, **attrs}}),
                 f"network {name}").json()["network"]
    _check(client.post(f"{network}/v2.0/subnets", json={"subnet": {
        "name": f"{name}-subnet", "network_id": net["id"], "ip_version": 4,
        "cidr": cidr}}), f"subnet of {name}")
    return str(net["id"])
