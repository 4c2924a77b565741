"""The programs and powers Stratus's optional parts need on a host, and how to add them.

Every part that runs a host program (qemu-img, dnsmasq, QEMU, libvirt, nft, ceph ...) names
it here with its Debian package, so the message a user sees when it is missing is the same
everywhere, and always says the one command that adds it: ``stratus doctor``, the start-up
banner, the API errors of a backend that cannot do a request without the program.

Programs are found on ``PATH`` only, as the parts that run them find them.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

#: Bit of CAP_NET_ADMIN in the capability masks of /proc/self/status (linux/capability.h).
CAP_NET_ADMIN = 12


@dataclass(frozen=True)
class HostTool:
    """A program some part of Stratus runs."""

    command: str
    #: The Debian package that installs it.
    package: str
    #: What it is for, in a few words.
    purpose: str


TOOLS: dict[str, HostTool] = {tool.command: tool for tool in (
    HostTool("qemu-img", "qemu-utils",
             "disk image conversion: volumes from qcow2/vmdk/... images, image checks"),
    HostTool("qemu-system-x86_64", "qemu-system-x86", "real guests (KVM, or TCG without it)"),
    HostTool("libvirtd", "libvirt-daemon-system", "the libvirt virt driver"),
    HostTool("virsh", "libvirt-clients", "inspecting libvirt's guests"),
    HostTool("dnsmasq", "dnsmasq-base", "DHCP for guests (the dhcp-agent)"),
    HostTool("nft", "nftables", "security groups and NAT (nftables)"),
    HostTool("ceph", "ceph-common", "the Ceph cluster's command line"),
    HostTool("memcached", "memcached", "the dashboard's session cache"),
    HostTool("pkg-config", "pkg-config", "building libvirt-python"),
    HostTool("extlinux", "extlinux", "the test guest's boot loader"),
    HostTool("mke2fs", "e2fsprogs", "the test guest's file system"),
    HostTool("genisoimage", "genisoimage", "config drives (ISO 9660) for libvirt guests"),
)}


def install_command(*packages: str) -> str:
    """The one command that installs ``packages`` on Debian."""
    return f"apt-get install {' '.join(packages)}"


def find(command: str) -> str | None:
    """Where ``command`` is on ``PATH`` (an absolute path is checked as given)."""
    return shutil.which(command)


def tool_for(command: str) -> HostTool:
    """The known tool behind ``command`` (a configured path like ``/opt/bin/qemu-img`` too)."""
    name = Path(command).name
    return TOOLS.get(name) or HostTool(name, name, name)


def missing(command: str, host: str | None = None) -> str:
    """``qemu-img is not installed [on host X]; apt-get install qemu-utils``."""
    tool = tool_for(command)
    where = f" on host {host}" if host else ""
    return f"{tool.command} is not installed{where}; {install_command(tool.package)}"


def has_net_admin() -> bool:
    """Whether this process may make bridges, veths and namespaces: root, or CAP_NET_ADMIN in
    its effective set."""
    if os.geteuid() == 0:
        return True
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False
