"""``stratus doctor``: which optional parts of Stratus this machine can run, and how to add
the rest.

Each check looks at the machine as the part itself would (programs on ``PATH``, the libvirt
binding, a real bridge and namespace made and removed, a real connection to the configured
database and broker) and gives a ``Check``: works, missing (with the one command that adds
it and the Debian packages that command installs, which ``make deps`` installs), not
configured, or failing (configured but not answering). Nothing here changes the machine
beyond the probe bridge and namespace, which are removed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import importlib.util
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from stratus.core import hosttools
from stratus.core.config import Settings

#: Where a Ceph client finds its cluster; present means Ceph is configured on this host.
CEPH_CONF = Path("/etc/ceph/ceph.conf")
MEMCACHED_PORT = 11211
PROBE_TIMEOUT = 5.0
LIBVIRT_PYTHON_FIX = ("apt-get install libvirt-dev pkg-config && "
                      ".venv/bin/pip install libvirt-python   (make deps does both)")


class Status(enum.StrEnum):
    OK = "works"
    MISSING = "missing"
    FAILING = "failing"
    NOT_CONFIGURED = "not configured"


@dataclass(frozen=True)
class Check:
    """One optional part of Stratus on this machine."""

    #: What is checked: a program, a capability or a service (``qemu-img``, ``PostgreSQL``).
    name: str
    #: What it gives a Stratus cloud.
    feature: str
    status: Status
    #: What was found, or why not.
    detail: str
    #: The one command that adds it (None when it works or there is nothing to install).
    fix: str | None = None
    #: The Debian packages ``fix`` installs (``make deps`` installs them).
    packages: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status is Status.OK


def _tool(command: str, feature: str | None = None) -> Check:
    tool = hosttools.tool_for(command)
    found = hosttools.find(command)
    if found is not None:
        return Check(tool.command, feature or tool.purpose, Status.OK, found)
    return Check(tool.command, feature or tool.purpose, Status.MISSING,
                 f"{tool.command} is not on PATH", hosttools.install_command(tool.package),
                 (tool.package,))


def check_qemu() -> Check:
    """QEMU for real guests, with KVM when it really works, else TCG (slower)."""
    found = _tool("qemu-system-x86_64", "real guests (the libvirt driver runs QEMU)")
    if not found.ok:
        return found
    from stratus.compute.virt.libvirt.host import KVM_DEVICE, kvm_device_problem, kvm_usable

    mode = ("KVM (hardware virtualisation)" if kvm_usable()
            else "TCG only: no usable /dev/kvm, guests run emulated (slower)")
    problem = kvm_device_problem()
    if problem is not None:  # the libvirt driver mends it when it starts as root
        return Check(found.name, found.feature, Status.FAILING, f"{found.detail}; {problem}",
                     f"chgrp kvm {KVM_DEVICE} && chmod 660 {KVM_DEVICE}")
    return Check(found.name, found.feature, Status.OK, f"{found.detail}; {mode}")


def check_nftables() -> Check:
    """``nft`` (the l3-agent's NAT, the external network's masquerade) and libnftables'
    Python binding, with which the l2-agent's firewall applies in-process."""
    found = _tool("nft", "security groups and NAT (nftables)")
    if not found.ok:
        return found
    if importlib.util.find_spec("nftables") is None:
        return Check(found.name, found.feature, Status.MISSING,
                     f"{found.detail}; no python3-nftables: the firewall runs nft for every "
                     "change (then make nft-bindings)",
                     hosttools.install_command("python3-nftables"), ("python3-nftables",))
    return Check(found.name, found.feature, Status.OK,
                 f"{found.detail}; the firewall applies in-process (libnftables)")


def check_libvirt() -> list[Check]:
    feature = "the libvirt virt driver (real guests)"
    checks = [_tool("libvirtd", feature)]
    if not checks[0].ok and Path("/run/libvirt/libvirt-sock").exists():
        checks[0] = Check("libvirtd", feature, Status.OK, "answers at /run/libvirt/libvirt-sock")
    try:
        from stratus.compute.virt.libvirt.host import libvirt_module

        version = libvirt_module().getVersion()  # major * 1_000_000 + minor * 1000 + micro
        checks.append(Check("libvirt-python", feature, Status.OK,
                            f"libvirt {version // 1_000_000}.{version // 1000 % 1000}."
                            f"{version % 1000}"))
    except ImportError:
        checks.append(Check("libvirt-python", feature, Status.MISSING,
                            "the libvirt binding does not import", LIBVIRT_PYTHON_FIX,
                            ("libvirt-dev", "pkg-config")))
    return checks


def check_bridges_and_namespaces() -> Check:
    """Make a bridge and a network namespace, then remove them: what the network agents do."""
    name = "bridges and namespaces"
    feature = "the network agents (linuxbridge backend: DHCP, L2, metadata)"
    if os.geteuid() != 0:
        return Check(name, feature, Status.MISSING,
                     "not root: the network agents need root (CAP_NET_ADMIN)",
                     "run stratus up as root (sudo)")
    suffix = f"{os.getpid() % 100000}"
    bridge, namespace = f"stdoc{suffix}", f"stratus-doctor-{suffix}"
    try:
        from pyroute2 import IPRoute, netns

        with IPRoute() as ipr:
            ipr.link("add", ifname=bridge, kind="bridge")
            ipr.link("del", index=ipr.link_lookup(ifname=bridge)[0])
        netns.create(namespace)
        netns.remove(namespace)
    except Exception as exc:  # any refusal means the agents would be refused too
        return Check(name, feature, Status.FAILING,
                     f"root, but making a bridge or namespace failed: {exc}",
                     "run stratus up as root with CAP_NET_ADMIN (not in a locked container)")
    return Check(name, feature, Status.OK, "root: a bridge and a namespace were made and removed")


async def check_postgresql(settings: Settings) -> Check:
    name, feature = "PostgreSQL", "a shared database (split mode, several hosts)"
    urls = {settings.database_url_for(service, override) for service, override in (
        ("identity", settings.identity.database_url), ("image", settings.image.database_url),
        ("compute", settings.compute.database_url), ("network", settings.network.database_url),
        ("volume", settings.volume.database_url))}
    postgres = sorted(url for url in urls if url.startswith("postgresql"))
    if not postgres:
        return Check(name, feature, Status.NOT_CONFIGURED,
                     f"SQLite files in {settings.data_dir} (set database_url to use it)")
    from sqlalchemy import make_url, text
    from sqlalchemy.ext.asyncio import create_async_engine

    for url in postgres:
        shown = make_url(url).render_as_string(hide_password=True)
        engine = create_async_engine(url)
        try:
            async with asyncio.timeout(PROBE_TIMEOUT), engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:
            return Check(name, feature, Status.FAILING,
                         f"{shown} does not answer: {type(exc).__name__}",
                         "start PostgreSQL there, or install it: apt-get install postgresql",
                         ())
        finally:
            await engine.dispose()
    return Check(name, feature, Status.OK, f"answers at {len(postgres)} URL(s)")


async def check_rabbitmq(settings: Settings) -> Check:
    name, feature = "RabbitMQ", "a shared message bus (split mode, several hosts)"
    from stratus.core.bus.url import TransportURL

    try:
        url = TransportURL.parse(settings.bus_url)
    except Exception as exc:
        return Check(name, feature, Status.FAILING, f"bus_url is not valid: {exc}",
                     "fix bus_url (rabbit://user:pass@host:5672/vhost)")
    if url.transport != "rabbit":
        return Check(name, feature, Status.NOT_CONFIGURED,
                     "bus_url is memory:// (in-process; set bus_url to use it)")
    from stratus.core.bus import get_transport

    transport = get_transport(settings.bus_url)
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            await transport.start()
    except Exception as exc:
        return Check(name, feature, Status.FAILING,
                     f"{', '.join(map(str, url.hosts))} does not answer: {type(exc).__name__}",
                     "start RabbitMQ there, or install it: apt-get install rabbitmq-server")
    finally:
        with contextlib.suppress(Exception):
            await transport.close()
    return Check(name, feature, Status.OK, f"answers at {', '.join(map(str, url.hosts))}")


def check_ceph(conf: Path = CEPH_CONF) -> Check:
    """The Ceph client side: the configuration (settings ``ceph.conf``), the ``ceph`` CLI
    and the librados/librbd Python bindings the rbd store and backend load."""
    name, feature = "Ceph", "Ceph RBD volumes and images (--storage ceph)"
    lacking = [package for command, package in (("ceph", "ceph-common"),)
               if hosttools.find(command) is None]
    for module, package in (("rados", "python3-rados"), ("rbd", "python3-rbd")):
        if importlib.util.find_spec(module) is None:
            lacking.append(package)
    if not conf.exists():
        return Check(name, feature, Status.NOT_CONFIGURED,
                     f"no {conf} (settings ceph.conf; `stratus ceph up` runs a development "
                     f"cluster{'; apt-get install ' + ' '.join(lacking) if lacking else ''})")
    if lacking:
        return Check(name, feature, Status.MISSING,
                     f"{conf} exists; missing {', '.join(lacking)} (then make ceph-bindings)",
                     hosttools.install_command(*lacking), tuple(lacking))
    return Check(name, feature, Status.OK, f"ceph CLI, Python bindings and {conf}")


def check_memcached() -> Check:
    name, feature = "memcached", "the dashboard's session cache"
    with contextlib.suppress(OSError), socket.create_connection(
            ("127.0.0.1", MEMCACHED_PORT), timeout=1):
        return Check(name, feature, Status.OK, f"answers at 127.0.0.1:{MEMCACHED_PORT}")
    found = _tool("memcached", feature)
    if found.ok:
        return Check(name, feature, Status.OK, f"{found.detail} (not running)")
    return found


async def run_checks(settings: Settings) -> list[Check]:
    """Every check, in the order ``stratus doctor`` prints them."""
    blocking = await asyncio.to_thread(lambda: [
        check_qemu(),
        _tool("qemu-img", "volumes from qcow2/vmdk/... images; image format checks; "
                          "guests' disks"),
        *check_libvirt(),
        _tool("genisoimage", "config drives of libvirt guests (config_drive: true)"),
        _tool("dnsmasq", "DHCP for guests (the dhcp-agent)"),
        check_nftables(),
        check_bridges_and_namespaces(),
        check_ceph(settings.ceph.conf),
        check_memcached(),
    ])
    return [*blocking, await check_postgresql(settings), await check_rabbitmq(settings)]


def missing_packages(checks: Iterable[Check]) -> list[str]:
    """The Debian packages that add every missing part, once each, in order."""
    return list(dict.fromkeys(p for c in checks if c.status is Status.MISSING
                              for p in c.packages))


def report_lines(checks: list[Check]) -> list[str]:
    """``stratus doctor``'s report: one line per check, then the command for the rest."""
    width = max(len(c.name) for c in checks)
    lines = []
    for check in checks:
        line = f"{check.status.value:<14} {check.name:<{width}}  {check.feature}: {check.detail}"
        if check.fix:
            line += f"\n{'':<14} {'':<{width}}  to add it: {check.fix}"
        lines.append(line)
    packages = missing_packages(checks)
    if packages:
        lines.append(f"Everything missing, at once (as root): "
                     f"{hosttools.install_command(*packages)}   (or: make deps)")
    else:
        lines.append("Nothing to install.")
    return lines
