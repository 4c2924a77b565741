"""A throw-away ``stratus up`` for Tempest, and the resources ``tempest.conf`` names.

``Cloud`` starts ``stratus up`` (fake virt driver, noop network backend) in a data directory
of its own on a free port of 127.0.0.1 and stops it (its whole process group) on exit.
``prepare`` reads the catalog with the admin credentials of the cloud's ``clouds.yaml`` and
makes what Tempest expects an operator to have made: two images (bytes this tool writes;
nothing is downloaded), a network shared with every project, an external network when the
cloud has none; flavors are the ones ``stratus up`` bootstraps.

``Cloud(..., real_guests=True)`` is the cloud of the validation pass (Tempest logging into
its servers by SSH): the libvirt driver and the linuxbridge backend, its ``public`` network
on a bridge of its own whose gateway address the host holds (so this host, where Tempest
runs, reaches floating IPs; nothing masqueraded to the machine's uplink), its own firewall
tables; the guests it leaves are destroyed when it stops. ``prepare_validation`` adds the
project's test guest (``stratus.guest_image``, built or taken from the tests' cache), a
flavor it fits and a router from the shared network to ``public``.

One operator setting differs from Stratus's default: the image service runs with
``[image] require_format_match = false``, Glance's ``[image_format]
require_image_format_match = false``. Tempest's image listing tests (in the guideline) upload
random bytes as every disk format and skip where the cloud refuses data that is not its
format; an operator of Glance or of Stratus may switch the match off, and ``tempest.conf``
then says so (``image_format_enforcement = false``). The safety checks stay on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import time
import uuid
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
#: The validation pass: the flavor its test guest boots with (the guest runs from a few MiB
#: of initramfs), and the router joining the shared network to the external one.
GUEST_FLAVOR = {"name": "interop-guest", "vcpus": 1, "ram": 256, "disk": 1}
ROUTER = "interop-router"


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
    #: Real guests Tempest logs into by SSH (``prepare_validation``).
    validation: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class Cloud:
    """``with Cloud(stratus, data_dir) as cloud:`` — a running ``stratus up``."""

    def __init__(self, stratus: Path, data_dir: Path, port: int | None = None, *,
                 require_format_match: bool = False, real_guests: bool = False) -> None:
        self.stratus = stratus
        self.require_format_match = require_format_match
        self.real_guests = real_guests
        self.data_dir = data_dir
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir / "stratus.log"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Cloud:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        out = (self.data_dir / "up.out").open("wb")
        env = {**os.environ, "STRATUS_IMAGE__REQUIRE_FORMAT_MATCH":
               str(self.require_format_match).lower()}
        backends = ["--virt-driver", "fake", "--network-backend", "noop"]
        if self.real_guests:
            backends = ["--virt-driver", "libvirt", "--network-backend", "linuxbridge"]
            env.update(real_guest_env())
        self._process = subprocess.Popen(
            [str(self.stratus), "up", "--data-dir", str(self.data_dir), "--host", "127.0.0.1",
             "--port", str(self.port), *backends],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
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
        """Stop ``stratus up`` (SIGTERM, then SIGKILL) and everything it started; a real-guest
        cloud's agents take their namespaces, bridges and tables down as they stop, and the
        guests left (they outlive their agent by design) are destroyed."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=60 if self.real_guests else 30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self.real_guests and (self.data_dir / "instances").exists():
            asyncio.run(_destroy_guests(self.data_dir / "instances"))

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


def real_guest_env() -> dict[str, str]:
    """Settings of a real-guest cloud that must not collide with another cloud's on this
    machine: its ``public`` network on a bridge of its own, a random /24 of 198.18.0.0/15
    (the benchmarking range) that never leaves the machine, its own firewall tables."""
    suffix = uuid.uuid4().hex[:8]
    return {"STRATUS_NETWORK__PHYSICAL_BRIDGES": f"public:bxi{suffix}",
            "STRATUS_NETWORK__EXTERNAL_SUBNET_CIDR":
                f"198.{random.randint(18, 19)}.{random.randint(0, 255)}.0/24",
            "STRATUS_NETWORK__EXTERNAL_MASQUERADE": "false",
            "STRATUS_NETWORK__FIREWALL_TABLE": f"sg-interop-{suffix}"}


async def _destroy_guests(instances: Path) -> None:
    """Destroy the libvirt guests whose files are under ``instances`` (a failed run's)."""
    from stratus.compute.virt.libvirt import LibvirtDriver

    driver = LibvirtDriver(instances, start_daemons=False)
    await driver.init_host("interop-cleanup")
    try:
        for guest in await driver.list_guests():
            await driver.destroy(guest)
    finally:
        await driver.cleanup_host()


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


def _admin_client(admin: Admin) -> tuple[httpx.Client, dict[str, str]]:
    """An HTTP client holding an admin token, and the catalog's public endpoints."""
    client = httpx.Client(timeout=60.0)
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
    return client, endpoints


def prepare(cloud: Cloud) -> Prepared:
    """Read the catalog and make the images and networks Tempest's configuration names."""
    admin = cloud.admin()
    client, endpoints = _admin_client(admin)
    with contextlib.closing(client):
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


def guest_cache() -> Path:
    """Where the test guest is cached: the tests' cache (``$STRATUS_TEST_CACHE`` or
    ``~/.cache/stratus-tests``), so CI's real-guest tests and this pass build it once."""
    base = os.environ.get("STRATUS_TEST_CACHE") or str(Path.home() / ".cache" / "stratus-tests")
    return Path(base) / "guest-image"


def prepare_validation(cloud: Cloud, prepared: Prepared) -> Prepared:
    """What Tempest's validation tests need on top of ``prepare``'s: the test guest (an SSH
    server that takes the key pair from the metadata) as ``image_ref``, a flavor it fits, and
    a router from the shared network to the external one (floating IPs on its servers)."""
    from stratus.guest_image import GuestImageError, ensure_image
    from stratus.guest_image.upload import publish

    admin = prepared.admin
    try:
        path = ensure_image(guest_cache())
        guest = asyncio.run(publish(admin.auth_url, admin.username, admin.password, path,
                                    project=admin.project_name))
    except GuestImageError as exc:
        raise CloudError(f"the test guest: {exc}") from exc
    client, endpoints = _admin_client(admin)
    with contextlib.closing(client):
        compute, network = endpoints["compute"], endpoints["network"].rstrip("/")
        flavor = _check(client.post(f"{compute}/flavors", json={"flavor": GUEST_FLAVOR}),
                        "the guest's flavor").json()["flavor"]
        shared = _check(client.get(f"{network}/v2.0/networks", params={"name": SHARED_NETWORK}),
                        "the shared network").json()["networks"][0]
        router = _check(client.post(f"{network}/v2.0/routers", json={"router": {
            "name": ROUTER, "external_gateway_info": {
                "network_id": prepared.external_network_id}}}), "router").json()["router"]
        _check(client.put(f"{network}/v2.0/routers/{router['id']}/add_router_interface",
                          json={"subnet_id": shared["subnets"][0]}), "router interface")
    prepared.image_ref = prepared.image_ref_alt = guest
    prepared.flavor_ref = str(flavor["id"])
    prepared.validation = True
    return prepared


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
