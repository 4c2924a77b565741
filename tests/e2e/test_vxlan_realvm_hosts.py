"""Real guests on two namespace hosts reach each other over VXLAN (issue 21).

The three hosts of ``test_vxlan_hosts`` (network namespaces on an underlay bridge, their
agents started inside, the control plane here in split mode on RabbitMQ and PostgreSQL),
with the second and third running the libvirt driver: each has a libvirtd of its own, in
its namespace (``tests.realvm.second_libvirtd``), as a real host has. That is the design,
not a shortcut: libvirt's ``<interface type='ethernet' managed='no'>`` opens the tap of that
name in the daemon's own network namespace, and the l2-agent of a host makes the port's tap
in the host's namespace, on the network's bridge there; the machine's ``qemu:///system``
(in the machine's namespace) would not find it. The compute agent reaches its host's
daemon through the daemon's socket, a file, so from any namespace.

The test guests (TCG here) are booted with the real CLI, one per host, on ports made first
so each guest's user-data knows the other's address. Each gets its address from the dnsmasq
on the first host (across the tunnel), its metadata through that host's metadata proxy,
then pings the other and reads a line from the other's TCP listener, with the security
group firewall on (the default group lets its members in), and says so on its console.
Deleting the servers leaves no domain on either daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from stratus.compute.virt.libvirt import host as libvirt_host
from tests.conftest import backend_unavailable
from tests.e2e.test_vxlan_hosts import (
    Api,
    Host,
    entries_everywhere,
    joined_hosts,
    network_ports,
    zones_and_network,
)
from tests.integration.network_agents.conftest import require_root_and_dnsmasq
from tests.realvm import (
    SecondLibvirtdError,
    guest_image,
    libvirt_ready,
    second_libvirtd,
    wait_console,
)

pytestmark = [pytest.mark.e2e, pytest.mark.rabbitmq, pytest.mark.realvm, pytest.mark.serial]

#: The guests' user-data: a TCP listener answering one line naming this guest, then (in the
#: background, the other guest may boot later) a ping of the peer and a read of its
#: listener until both answer, reported on the console.
USER_DATA = """#!/bin/sh
PEER={peer}
printf '#!/bin/sh\\necho "STRATUS-HELLO from %s"\\n' "$(hostname)" >/run/hello
chmod +x /run/hello
nc -ll -p 7000 -e /run/hello &
(
    tries=0
    while [ $tries -lt 600 ]; do
        if ping -c 1 -W 1 $PEER >/dev/null 2>&1; then
            answer=$(timeout 10 nc $PEER 7000 </dev/null)
            case "$answer" in
                STRATUS-HELLO*) echo "STRATUS-PEER $PEER ping=ok tcp=$answer" >/dev/console
                                exit 0;;
            esac
        fi
        tries=$((tries + 1))
        sleep 1
    done
    echo "STRATUS-PEER $PEER unreachable" >/dev/console
) &
echo "peer check of $PEER started"
"""


def domains(uri: str) -> list[str]:
    """The names of the domains the libvirtd at ``uri`` has, running or not."""
    libvirt = libvirt_host.libvirt_module()
    conn = libvirt.open(uri)
    try:
        return [d.name() for d in conn.listAllDomains(0)]
    finally:
        conn.close()


@pytest.mark.timeout(1200)  # two TCG boots on a shared machine, beside the control plane
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_real_guests_on_two_hosts_reach_each_other_over_vxlan(
        db_url: str, rabbit_url: str, tmp_path: Path) -> None:
    require_root_and_dnsmasq()
    libvirt_ready()
    image = guest_image()
    daemons: dict[str, str] = {}  # host name -> its libvirtd's URI

    @contextlib.contextmanager
    def libvirt_host_setup(host: Host) -> Iterator[dict[str, str]]:
        """The second and third hosts: a libvirtd in the host's namespace, the agent's
        driver libvirt on it; the first stays fake (it serves DHCP and metadata)."""
        if "dhcp-agent" in host.agents.units:
            yield {}
            return
        try:
            with second_libvirtd(host.namespace) as uri:
                daemons[host.name] = uri
                yield {"STRATUS_COMPUTE__VIRT_DRIVER": "libvirt",
                       "STRATUS_COMPUTE__LIBVIRT_URI": uri}
        except SecondLibvirtdError as exc:
            backend_unavailable(str(exc))

    async with joined_hosts(db_url, rabbit_url, tmp_path,
                            host_setup=libvirt_host_setup) as joined:
        api, hosts = joined.api, joined.hosts
        network = await zones_and_network(joined)
        await api.openstack("image", "create", "--file", str(image), "--disk-format", "qcow2",
                            "--container-format", "bare", "stratus-test-guest")
        guests = hosts[1:]
        # Ports first: each guest's user-data names the other's address.
        ports = []
        for host in guests:
            made = await api.openstack("port", "create", "--network", network.id,
                                       f"port-{host.name}")
            ports.append((await api.request("GET", f"/network/v2.0/ports/{made['id']}")
                          )["port"])
        addresses = [p["fixed_ips"][0]["ip_address"] for p in ports]
        names = [f"vm-{h.name}" for h in guests]

        servers = []
        for i, (host, port) in enumerate(zip(guests, ports, strict=True)):
            script = tmp_path / f"user-data-{i}.sh"
            script.write_text(USER_DATA.format(peer=addresses[1 - i]))
            server = await api.openstack(
                "server", "create", "--image", "stratus-test-guest", "--flavor", "m1.tiny",
                "--nic", f"port-id={port['id']}", "--availability-zone", f"zone-{host.name}",
                "--user-data", str(script), "--wait", names[i])
            assert (server["status"], server["OS-EXT-SRV-ATTR:host"]) == ("ACTIVE", host.name)
            bound = (await api.request("GET", f"/network/v2.0/ports/{port['id']}"))["port"]
            assert (bound["binding:host_id"], bound["status"], bound["device_id"]) == (
                host.name, "ACTIVE", server["id"])
            assert domains(daemons[host.name]) == [f"instance-{server['id']}"]
            servers.append(server)

        # DHCP and metadata are served on the first host only: the guests' leases and
        # metadata came across the tunnel; every host has the others' port MACs.
        dhcp = [p for p in await network_ports(api, network.id)
                if p["device_owner"] == "network:dhcp"]
        assert [p["binding:host_id"] for p in dhcp] == [hosts[0].name]
        await entries_everywhere(api, network, hosts)

        for i, server in enumerate(servers):
            text = await wait_console(console_reader(api, names[i]),
                                      r"^STRATUS-PEER ", within=600)
            assert f"STRATUS-NET iface=eth0 ip={addresses[i]}/" in text, text
            assert "STRATUS-METADATA ok" in text, text
            guest = re.search(r"^STRATUS-GUEST ip=(\S+) uuid=(\S+) hostname=(\S+)", text,
                              re.MULTILINE)
            assert guest is not None and guest.groups()[:2] == (addresses[i], server["id"])
            assert guest.group(3).split(".")[0] == names[i]
            peer = re.search(r"^STRATUS-PEER (\S+) ping=ok tcp=STRATUS-HELLO from (\S+)",
                             text, re.MULTILINE)
            assert peer is not None, text
            assert (peer.group(1), peer.group(2).split(".")[0]) == (addresses[1 - i],
                                                                    names[1 - i])

        await asyncio.to_thread(api.cloud.openstack, "server", "delete", "--wait", *names)
        for host in guests:
            assert domains(daemons[host.name]) == []


def console_reader(api: Api, name: str) -> Callable[[], Awaitable[str]]:
    """A reader of ``name``'s console log through the real CLI (the compute API asks the
    guest's host's agent, which reads its libvirt console file)."""

    async def read() -> str:
        done = await asyncio.to_thread(api.cloud.openstack, "console", "log", "show", name)
        return done.stdout

    return read
