"""Configuration: one TOML file plus ``STRATUS_*`` environment variables.

Precedence, highest first: keyword arguments, environment (``STRATUS_PORT``,
``STRATUS_IDENTITY__BCRYPT_ROUNDS`` for nested keys), the TOML file named by
``STRATUS_CONFIG_FILE`` (default ``/etc/stratus/stratus.toml`` when it exists), defaults.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_CONFIG_FILE = Path("/etc/stratus/stratus.toml")


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "stratus"


class IdentitySettings(BaseModel):
    #: bcrypt cost factor for stored passwords; Keystone's default is 12.
    bcrypt_rounds: int = Field(12, ge=4, le=31)
    #: Token lifetime in seconds.
    token_expiration: int = Field(3600, ge=60)
    #: How long past expiry a token may still be used together with a valid service token.
    allow_expired_window: int = Field(172800, ge=0)
    #: Fernet key repository; default ``<data_dir>/fernet-keys``.
    key_repository: Path | None = None
    #: Keys kept by rotation: one staged, one primary, the rest secondary.
    max_active_keys: int = Field(3, ge=2)
    database_url: str | None = None


class AuthSettings(BaseModel):
    """How non-identity APIs validate tokens."""

    #: Identity endpoint (``http://h:p/identity/v3``); unset means in-process validation.
    identity_url: str | None = None
    #: Credentials this service uses to validate tokens over REST.
    service_username: str = "admin"
    service_password: SecretStr | None = None
    service_project: str = "admin"
    service_domain: str = "Default"
    #: Seconds a validated token stays cached (never past its expiry).
    cache_ttl: int = Field(300, ge=0)
    cache_size: int = Field(10000, ge=0)


class TracingSettings(BaseModel):
    enabled: bool = True
    #: OTLP/HTTP traces endpoint (Jaeger, any OpenTelemetry collector); unset: none.
    otlp_endpoint: str | None = None
    #: Keep spans in the embedded span store, ``<data_dir>/traces.db`` (``stratus trace``).
    store: bool = True
    #: Seconds a stored span is kept.
    store_max_age: float = Field(86400.0, gt=0)
    #: Spans kept at most (the oldest go first).
    store_max_spans: int = Field(200_000, ge=1000)


class MetricsSettings(BaseModel):
    """``/metrics`` (Prometheus' text format). A process serving an API has it on the API's
    port; a process serving only the bus (scheduler, conductor, compute-agent, the network
    agents) listens for it on ``host`` at ``port``."""

    #: The port of a bus-only process's ``/metrics``; 0 takes a free one, said at start.
    port: int = Field(0, ge=0, le=65535)


class TLSSettings(BaseModel):
    """HTTPS for the APIs (``stratus up --tls`` makes and sets all three in ``DIR/tls``).
    With ``cert_file`` and ``key_file`` every API of the process serves HTTPS and the cloud's
    URLs are ``https://``; ``ca_file`` is what this process's calls to other services (and
    ``clouds.yaml``'s ``cacert``) verify servers with, besides the system's authorities."""

    cert_file: Path | None = None
    key_file: Path | None = None
    ca_file: Path | None = None

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None and self.key_file is not None


class CephSettings(BaseModel):
    """The Ceph cluster the ``rbd`` image store and volume backend use (librados)."""

    #: The cluster's configuration (monitors' addresses); ``stratus ceph env`` prints it.
    conf: Path = Path("/etc/ceph/ceph.conf")
    #: The cephx user (without ``client.``) and its keyring; unset: the conf's ``keyring``.
    user: str = "stratus"
    keyring: Path | None = None
    #: Seconds to reach the monitors, and for one librados/librbd call's answer from them.
    connect_timeout: int = Field(10, ge=1)
    #: Seconds an OSD operation may take before it fails (a stopped OSD: an error, no hang).
    op_timeout: int = Field(60, ge=1)
    #: Threads running librados/librbd calls (they block): at most this many at once.
    threads: int = Field(8, ge=1)


class ImageSettings(BaseModel):
    """The image service (Glance v2 compatible). Sizes are in bytes; ``None`` is unlimited."""

    database_url: str | None = None
    #: Where image data lives: ``file`` (under ``filesystem_store_datadir``), ``rbd`` (an
    #: RBD image per image in ``rbd_store_pool`` of the ``ceph`` cluster) or ``s3`` (an
    #: object per image in ``s3_store_bucket`` of the S3 endpoint ``s3_store_host``, e.g.
    #: Ceph's RADOS gateway). ``stratus up --storage ceph`` picks ``rbd`` unless ``s3`` is
    #: set here: only RBD images can be cloned by volumes and guests' disks.
    store: str = Field("file", pattern="^(file|rbd|s3)$")
    rbd_store_pool: str = "images"
    #: RBD object size of image data (Glance's ``rbd_store_chunk_size``, 8 MiB).
    rbd_store_chunk_size: int = Field(8 << 20, ge=4096)
    #: ``s3``: the endpoint URL (``http://127.0.0.1:7480``; no credentials in it), the keys
    #: (signed with AWS Signature V4; never in a location, log line or error) and region.
    #: ``--storage ceph`` takes all three from ``stratus ceph up``'s cluster when unset.
    s3_store_host: str | None = None
    s3_store_access_key: SecretStr | None = None
    s3_store_secret_key: SecretStr | None = None
    s3_store_region: str = "us-east-1"
    #: The bucket, created at start when missing.
    s3_store_bucket: str = Field("images", pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    #: Multipart part size (S3's minimum: 5 MiB); images below it are one PUT. An upload
    #: holds ``s3_store_upload_concurrency`` parts in flight and one filling in memory.
    s3_store_part_size: int = Field(8 << 20, ge=5 << 20, le=5 << 30)
    s3_store_upload_concurrency: int = Field(2, ge=1, le=16)
    #: Sign request bodies (SigV4's sha256 of each part, computed here and checked by the
    #: gateway) or send them as ``UNSIGNED-PAYLOAD`` (headers still signed). Unset: sign
    #: over plain HTTP to another host; not over HTTPS (TLS protects the body, as AWS's
    #: clients assume) nor to a loopback address.
    s3_store_sign_payload: bool | None = None
    #: Directory of the ``file`` store; default ``<data_dir>/images``.
    filesystem_store_datadir: Path | None = None
    disk_formats: list[str] = Field(default_factory=lambda: [
        "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop"])
    container_formats: list[str] = Field(default_factory=lambda: [
        "ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed"])
    #: Largest image one upload may store (Glance's ``image_size_cap``, 1 TiB).
    image_size_cap: int = Field(1 << 40, ge=0)
    #: Per project: how many images it may own, and their total stored size.
    quota_image_count: int | None = Field(None, ge=0)
    quota_image_size_total: int | None = Field(None, ge=0)
    quota_image_properties: int = Field(128, ge=0)
    quota_image_tags: int = Field(128, ge=0)
    quota_image_members: int = Field(128, ge=0)
    #: Default and largest page of ``GET /v2/images``.
    limit_default: int = Field(25, ge=1)
    limit_max: int = Field(1000, ge=1)
    #: ``qemu-img`` reads ``virtual_size`` and checks that the data is in its ``disk_format``.
    qemu_img: str = "qemu-img"
    require_format_match: bool = True
    #: Staged upload data older than this at start-up is left over from a crash; removed.
    stale_upload_seconds: int = Field(3600, ge=0)


class ComputeSettings(BaseModel):
    """The compute service's units: scheduler, conductor and compute agents."""

    database_url: str | None = None
    #: Hypervisor driver of this process's compute agents: ``fake``, ``libvirt``, or unset:
    #: ``stratus up``/``serve`` then pick libvirt where it is usable (libvirt-python, QEMU, a
    #: libvirtd that answers or starts), else fake, and say so; a stack embedded in a
    #: program runs fake.
    virt_driver: str | None = Field(None, pattern="^(fake|libvirt)$")
    #: libvirt: the connection, and ``kvm``/``qemu`` (unset: kvm only where it really works).
    libvirt_uri: str = "qemu:///system"
    virt_type: str | None = Field(None, pattern="^(kvm|qemu)$")
    #: libvirt: guests' disks and console logs; default ``<data_dir>/instances``.
    instances_path: Path | None = None
    #: libvirt: guests' root disks as ``qcow2`` overlays in ``instances_path``, or ``rbd``:
    #: RBD images ``<uuid>_disk`` in ``images_rbd_pool`` of the ``ceph`` cluster (clones of
    #: the image's snapshot when it is in the same cluster's ``rbd`` store), reached by
    #: QEMU's librbd with ``ceph.user``'s key in a libvirt secret (Nova's ``images_type``).
    images_type: str = Field("qcow2", pattern="^(qcow2|rbd)$")
    images_rbd_pool: str = "vms"
    #: The uuid of that libvirt secret; unset: derived from the cluster's fsid and the user.
    rbd_secret_uuid: str | None = None
    #: Base images fetched from the image service; default ``<data_dir>/image-cache``.
    image_cache_path: Path | None = None
    #: Seconds a guest gets to power off on ACPI before it is destroyed (stop, soft reboot).
    shutdown_timeout: float = Field(60.0, ge=0)
    #: Compute agents the all-in-one runs, each a fake host (``<host>-<n>`` beyond the first).
    fake_hosts: int = Field(1, ge=0)
    #: This host's name; default the machine's.
    host: str | None = None
    #: Fake driver capacity per host.
    fake_vcpus: int = Field(64, ge=1)
    fake_memory_mb: int = Field(262144, ge=1)
    fake_local_gb: int = Field(4000, ge=1)
    #: Seconds each operation of the fake driver takes (a build, a stop ...): 0, at once;
    #: more lets a person (or a browser test) see servers in BUILD.
    fake_latency: float = Field(0.0, ge=0)
    #: Seconds between a compute agent's heartbeats, and after which a silent one is down.
    report_interval: float = Field(10.0, gt=0)
    service_down_time: float = Field(60.0, gt=0)
    #: Seconds between a compute agent's comparisons of database and hypervisor power states.
    sync_power_state_interval: float = Field(600.0, gt=0)
    cpu_allocation_ratio: float = Field(16.0, gt=0)
    ram_allocation_ratio: float = Field(1.5, gt=0)
    disk_allocation_ratio: float = Field(1.0, gt=0)
    reserved_host_memory_mb: int = Field(512, ge=0)
    #: Pick among this many best hosts at random (spreads parallel schedulers).
    host_subset_size: int = Field(1, ge=1)
    #: Seconds compute-api waits for a host to attach or detach a volume; past it the
    #: volume's reservation is given back (a dead host never leaves it ``attaching``).
    volume_attach_timeout: float = Field(60.0, gt=0)
    #: A delete's release of the guest's ports and volumes: tries in all, and the seconds
    #: before the second (doubling, at most 30) while the network or block storage service
    #: fails transiently (no answer, a timeout, a 5xx); then the delete ends in ERROR.
    release_tries: int = Field(8, ge=1)
    release_retry_delay: float = Field(1.0, ge=0)
    #: Resize (and cold migration) may pick the server's own host: on a one-host cloud the
    #: only one (Nova's ``allow_resize_to_same_host``, whose default is false there).
    allow_resize_to_same_host: bool = True
    #: Seconds after which a resize or cold migration left unconfirmed is confirmed by the
    #: conductor (Nova's ``resize_confirm_window``); 0 never does.
    resize_confirm_window: int = Field(0, ge=0)
    #: libvirt: how other hosts' libvirtd reach this host's for a live migration (default
    #: ``libvirt_uri``; two agents on one machine need two libvirtd, see
    #: ``stratus.compute.virt.libvirt.moves``).
    live_migration_uri: str | None = None
    #: Seconds a shelved server keeps its host before it is offloaded (Nova's
    #: ``shelved_offload_time``): 0 offloads at once, -1 never.
    shelved_offload_time: int = Field(0, ge=-1)
    #: Whether create, rebuild, rescue and (before 2.14) evacuate answer the server's
    #: administrator password (``adminPass``), as Nova's ``[api] enable_instance_password``.
    enable_instance_password: bool = True
    #: Every new server gets a config drive (Nova's ``force_config_drive``), as if its boot
    #: request had asked for one (``config_drive: true``; the server shows ``"True"``).
    force_config_drive: bool = False


class NetworkSettings(BaseModel):
    """The network service (Network v2.0) and its agents."""

    database_url: str | None = None
    #: ``linuxbridge`` (dnsmasq DHCP agent, Linux-bridge L2 agent, metadata proxy) or ``noop``
    #: (IPAM and API only, no kernel work); unset picks linuxbridge when this process runs as
    #: root with dnsmasq available, else noop (said on start-up).
    backend: str | None = None
    #: MTU of new networks.
    default_mtu: int = Field(1500, ge=68)
    #: VXLAN network identifiers handed to networks when several hosts join them.
    vxlan_vni_min: int = Field(1, ge=1)
    vxlan_vni_max: int = Field(1000, ge=1)
    #: The address this host's VXLAN tunnels use; unset means flat networks on one host.
    tunnel_ip: str | None = None
    #: ``stratus up`` creates this network (and a subnet) for the admin project on first start.
    default_network_name: str = "private"
    default_subnet_cidr: str = "10.0.0.0/24"
    #: DNS domain dnsmasq gives guests, and the lease time it hands out (seconds).
    dns_domain: str = "openstacklocal"
    dhcp_lease_duration: int = Field(86400, ge=120)
    #: Where agents keep dnsmasq's files; default ``<data_dir>/dhcp``.
    dhcp_state_dir: Path | None = None
    dnsmasq: str = "dnsmasq"
    #: Seconds between agent heartbeats, and after which a silent agent is shown down.
    agent_report_interval: float = Field(10.0, gt=0)
    agent_down_time: float = Field(75.0, gt=0)
    #: The l2-agent's security group firewall: the name of its nftables tables (``inet`` and
    #: ``bridge``); empty turns filtering off (said on start-up).
    firewall_table: str = "stratus-sg"
    #: Seconds a compute host waits for ``network-vif-plugged`` before failing the build.
    vif_plugging_timeout: float = Field(300.0, gt=0)
    #: Default per-project quotas (Neutron's defaults; -1 is unlimited).
    quota_network: int = -1
    quota_subnet: int = -1
    quota_port: int = -1
    quota_security_group: int = 10
    quota_security_group_rule: int = 100
    quota_router: int = 10
    quota_floatingip: int = 50

    # External networks and the l3-agent ----------------------------------------------------
    #: Physical network → host bridge: a ``flat`` network on a mapped physical network is
    #: plugged into that bridge (not its own ``brq<id>``) by every agent. Given as a mapping
    #: or as ``"public:br-ex,other:br-other"``.
    physical_bridges: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=lambda: {"public": "br-ex"})
    #: ``stratus up`` (linuxbridge backend) makes this external network (``router:external``,
    #: flat on ``external_physical_network``) with a DHCP-less subnet on first start; the
    #: physical network's bridge gets the subnet's gateway address on the host side.
    external_network_name: str = "public"
    external_physical_network: str = "public"
    external_subnet_cidr: str = "172.24.4.0/24"
    #: Masquerade the external subnet to the host's uplink (the default route's device), so
    #: guests reach what the host reaches. Tests turn it off.
    external_masquerade: bool = True
    #: Where the l3-agent records the routers it made; default ``<data_dir>/l3``.
    l3_state_dir: Path | None = None
    #: Seconds between the l3-agent's full resyncs with the server.
    l3_resync_interval: float = Field(60.0, gt=0)

    @field_validator("physical_bridges", mode="before")
    @classmethod
    def _parse_physical_bridges(cls, value: object) -> object:
        if isinstance(value, str) and value.lstrip().startswith("{"):
            return json.loads(value)
        if isinstance(value, str):
            pairs = [p.strip() for p in value.split(",") if p.strip()]
            parsed = {}
            for pair in pairs:
                physical, sep, bridge = pair.partition(":")
                if not sep or not physical.strip() or not bridge.strip():
                    raise ValueError(f"physical_bridges: {pair!r} is not physnet:bridge")
                if len(bridge.strip()) > 15:
                    raise ValueError(f"physical_bridges: bridge name {bridge.strip()!r} is "
                                     "longer than 15 characters")
                parsed[physical.strip()] = bridge.strip()
            return parsed
        return value


class VolumeSettings(BaseModel):
    """The block storage service (Block Storage v3): volume-api and volume-managers."""

    database_url: str | None = None
    #: Where volumes live: ``file`` (raw files made with ``qemu-img``) or ``rbd`` (RBD
    #: images ``volume-<id>`` in ``rbd_pool`` of the ``ceph`` cluster).
    backend: str = Field("file", pattern="^(file|rbd)$")
    rbd_pool: str = "volumes"
    #: Clones of clones deeper than this are flattened (Cinder's ``rbd_max_clone_depth``).
    rbd_max_clone_depth: int = Field(5, ge=0)
    #: The libvirt secret holding ``ceph.user``'s key on compute hosts (connection info);
    #: unset: the one compute hosts derive from the cluster's fsid and the user.
    rbd_secret_uuid: str | None = None
    #: The file backend's directory; default ``<data_dir>/volumes``.
    volumes_dir: Path | None = None
    #: This volume-manager's host name; default the machine's.
    host: str | None = None
    qemu_img: str = "qemu-img"
    #: Volume type new volumes get when none is asked for (made on first start).
    default_volume_type: str = "__DEFAULT__"
    availability_zone: str = "nova"
    #: Seconds between a volume-manager's heartbeats, and after which a silent one is down.
    report_interval: float = Field(10.0, gt=0)
    service_down_time: float = Field(60.0, gt=0)
    #: Default per-project quotas (-1 is unlimited).
    quota_volumes: int = Field(10, ge=-1)
    quota_snapshots: int = Field(10, ge=-1)
    quota_gigabytes: int = Field(1000, ge=-1)
    quota_per_volume_gigabytes: int = Field(-1, ge=-1)
    #: Default and largest page of volume and snapshot lists.
    limit_max: int = Field(1000, ge=1)


class MetadataSettings(BaseModel):
    """The metadata path: proxies in each network's DHCP namespace, and metadata-api."""

    #: Key of the ``X-Instance-ID-Signature`` HMAC shared by proxy and metadata-api; unset
    #: means one generated on first start and kept (0600) in ``<data_dir>/metadata-secret``.
    shared_secret: SecretStr | None = None
    #: Where proxies forward to; default ``<public url>/metadata``.
    url: str | None = None
    #: Domain appended to instance hostnames in the metadata (``vm1.novalocal``); empty
    #: for none.
    dhcp_domain: str = "novalocal"


class DashboardSettings(BaseModel):
    """The dashboard unit: a browser client of the public APIs at ``/dashboard``."""

    #: Where sessions live: ``memory`` (one process; the default) or ``memcached`` (shared
    #: by every dashboard process naming the same ``memcached``).
    session_store: str = Field("memory", pattern="^(memory|memcached)$")
    #: The memcached of ``session_store = memcached``: ``host:port``.
    memcached: str = "127.0.0.1:11211"
    #: Seconds a project's flavor list and image names are kept in the session store and
    #: shared by its users' pages (0: asked every time). Server status is never cached.
    list_cache_ttl: float = Field(5.0, ge=0)
    #: Seconds a session lives without use; never past its token's expiry.
    session_idle_timeout: int = Field(3600, ge=60)
    #: Seconds one API call of a page may take before the page renders without it.
    api_timeout: float = Field(10.0, gt=0)
    #: Seconds an image upload passed on to the image API may wait for one step (a chunk
    #: taken, the answer once all is stored): uploads are long, their steps are not.
    upload_timeout: float = Field(300.0, gt=0)
    #: Servers on one page of the instances table.
    page_size: int = Field(100, ge=1, le=1000)
    #: Seconds before the first status poll of rows in transition, and the longest wait the
    #: poll backs off to while nothing changes.
    poll_interval: float = Field(2.0, gt=0)
    poll_max_interval: float = Field(30.0, gt=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="STRATUS_",
        env_nested_delimiter="__",
        extra="ignore",
    )

    data_dir: Path = Field(default_factory=default_data_dir)
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    #: URL clients reach this cloud at; default ``http://<host>:<port>``.
    public_url: str | None = None
    region: str = "RegionOne"
    #: Database for every service that has no URL of its own; default SQLite files.
    database_url: str | None = None
    #: PostgreSQL connections each service's engine keeps open in a process, and how many
    #: more it opens in a burst. A process's engines (one per service it serves) together
    #: hold up to (size + overflow) x services; all processes on one server (``serve
    #: --workers N`` counts N) must stay under its ``max_connections``, or the last are
    #: refused (503).
    database_pool_size: int = Field(10, ge=1)
    database_max_overflow: int = Field(20, ge=0)
    #: Message bus between units: ``memory://`` (in-process, one event loop; the default) or
    #: ``rabbit://user:pass@host:5672[,host2:5672]/vhost`` (see ``stratus.core.bus.url``).
    bus_url: str = "memory://"
    log_level: str = "INFO"
    #: ``text`` (one line per record, the request id in brackets) or ``json`` (one JSON
    #: object per line, with the request id, trace id and instance uuid where known).
    log_format: Literal["text", "json"] = "text"
    #: Largest request body a JSON API accepts, in bytes.
    max_request_body_size: int = 1024 * 1024
    #: Seconds an idle client connection stays open. Longer than clients keep theirs idle
    #: (httpx 5 s; keystoneauth's requests until the server closes): a server that closes
    #: first races a client reusing the connection, and that request is lost to a reset
    #: (uvicorn's own default is 5 s).
    keep_alive_timeout: int = 75
    #: Serve each API's OpenAPI document at ``<prefix>/openapi.json`` (``/compute/openapi.json``
    #: ...), a Stratus extension. Off by default: OpenStack's APIs have no such route, and a
    #: client probing the API sees only theirs. The same documents are in ``docs/api/``.
    serve_openapi: bool = False
    #: YAML file of policy rules overriding the in-code defaults.
    policy_file: Path | None = None
    admin_password: SecretStr | None = None

    identity: IdentitySettings = IdentitySettings()
    auth: AuthSettings = AuthSettings()
    tracing: TracingSettings = TracingSettings()
    metrics: MetricsSettings = MetricsSettings()
    tls: TLSSettings = TLSSettings()
    image: ImageSettings = ImageSettings()
    ceph: CephSettings = CephSettings()
    compute: ComputeSettings = ComputeSettings()
    network: NetworkSettings = NetworkSettings()
    metadata: MetadataSettings = MetadataSettings()
    volume: VolumeSettings = VolumeSettings()
    dashboard: DashboardSettings = DashboardSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = Path(os.environ.get("STRATUS_CONFIG_FILE", DEFAULT_CONFIG_FILE))
        if config_file.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    # Derived values -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        if ":" in host:
            host = f"[{host}]"
        scheme = "https" if self.tls.enabled else "http"
        return f"{scheme}://{host}:{self.port}"

    def database_url_for(self, service: str, override: str | None = None) -> str:
        """The SQLAlchemy URL of a service's database."""
        if override:
            return override
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / (service + '.db')}"

    @property
    def bus_shared(self) -> bool:
        """Whether the bus reaches other processes: anything but the in-process ``memory://``
        (a check here, not in ``stratus.core.bus``: a process that serves before it starts
        its other units asks it before anything else needs the bus's modules)."""
        return not self.bus_url.startswith("memory:")

    @property
    def metadata_url(self) -> str:
        return (self.metadata.url or f"{self.base_url}/metadata").rstrip("/")

    @property
    def dhcp_state_dir(self) -> Path:
        return self.network.dhcp_state_dir or self.data_dir / "dhcp"

    @property
    def volumes_dir(self) -> Path:
        return self.volume.volumes_dir or self.data_dir / "volumes"

    @property
    def key_repository(self) -> Path:
        return self.identity.key_repository or self.data_dir / "fernet-keys"


def load_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)
