"""The kernel side of the agents: bridges, taps, veths, VXLAN devices and namespaces.

Links and addresses go through pyroute2 (netlink, and ioctls for taps); namespaces are made,
entered and removed with the system calls themselves (unshare, mount, setns, umount; see
below why not pyroute2's); nothing shells out. The functions are blocking (netlink round
trips of a millisecond or so): agents run them with ``asyncio.to_thread``. Each is
idempotent: creating what exists or removing what is gone is not an error, so a resync after
a crash can simply run them again.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Interface

from pyroute2 import Conntrack, IPRoute, NetlinkError

NETNS_DIR = "/run/netns"
_IFF_LOWER_UP = 0x10000
_CLONE_NEWNET = 0x40000000
_NETLINK_NETFILTER = 12  # the netlink family of conntrack (linux/netlink.h)
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


class NamespaceNotFound(LookupError):
    pass


# Links in the host namespace ----------------------------------------------------------------


@dataclass(frozen=True)
class Link:
    name: str
    index: int
    #: ``bridge``, ``tun``, ``veth``, ``vxlan``, ... ('' for a plain device).
    kind: str
    master: int | None
    mtu: int
    up: bool
    #: Lower layer up: for a tap, a process (a guest's QEMU) has it open.
    carrier: bool = False


def _link(ipr: IPRoute, name: str) -> Link | None:
    found = ipr.link_lookup(ifname=name)
    if not found:
        return None
    try:
        msg = ipr.link("get", index=found[0])[0]
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return None
        raise
    return Link(name=name, index=found[0],
                kind=msg.get(("IFLA_LINKINFO", "IFLA_INFO_KIND")) or "",
                master=msg.get("IFLA_MASTER"), mtu=msg.get("IFLA_MTU") or 0,
                up=bool(msg["flags"] & 1), carrier=bool(msg["flags"] & _IFF_LOWER_UP))


def get_link(name: str) -> Link | None:
    """The device ``name`` of the host namespace, or None."""
    with IPRoute() as ipr:
        return _link(ipr, name)


def _add(ipr: IPRoute, name: str, **spec: object) -> Link:
    try:
        ipr.link("add", ifname=name, **spec)
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:  # another agent made it meanwhile
            raise
    link = _link(ipr, name)
    if link is None:
        raise RuntimeError(f"{name} vanished right after it was created")
    return link


def ensure_bridge(name: str) -> bool:
    """The bridge ``name``, up; True when this call created it."""
    with IPRoute() as ipr:
        existing = _link(ipr, name)
        link = existing or _add(ipr, name, kind="bridge")
        if link.kind != "bridge":
            raise RuntimeError(f"{name} exists but is a {link.kind or 'plain'} device")
        if not link.up:
            ipr.link("set", index=link.index, state="up")
        return existing is None


def bridge_ports(name: str) -> list[Link]:
    """The devices enslaved to bridge ``name`` ([] when it does not exist)."""
    with IPRoute() as ipr:
        bridge = _link(ipr, name)
        if bridge is None:
            return []
        ports = []
        for msg in ipr.get_links():
            if msg.get("IFLA_MASTER") == bridge.index:
                link = _link(ipr, msg.get("IFLA_IFNAME"))
                if link is not None:
                    ports.append(link)
        return ports


def delete_link(name: str) -> bool:
    """Remove device ``name``; True when it existed."""
    with IPRoute() as ipr:
        link = _link(ipr, name)
        if link is None:
            return False
        try:
            ipr.link("del", index=link.index)
        except NetlinkError as exc:
            if exc.code != errno.ENODEV:
                raise
            return False
        return True


def ensure_tap(name: str, bridge: str, mtu: int) -> Link:
    """A persistent tap ``name`` (owned by root) in ``bridge``, with ``mtu``, up.

    A device of that name that is not a tap (the DHCP agent's veth end) is only enslaved and
    brought up. Guests attach later with ``<target dev=name managed='no'/>``.
    """
    with IPRoute() as ipr:
        master = _link(ipr, bridge)
        if master is None:
            raise RuntimeError(f"bridge {bridge} does not exist")
        link = _link(ipr, name) or _add(ipr, name, kind="tuntap", mode="tap", uid=0, gid=0)
        changes: dict[str, object] = {}
        if link.kind == "tun" and link.mtu != mtu:
            changes["mtu"] = mtu
        if link.master != master.index:
            changes["master"] = master.index
        if not link.up:
            changes["state"] = "up"
        if changes:
            ipr.link("set", index=link.index, **changes)
        return _link(ipr, name) or link


def ensure_vxlan(name: str, vni: int, local_ip: str, bridge: str, mtu: int,
                 learning: bool = False) -> Link:
    """VXLAN device ``name`` (VNI ``vni``, tunnels from ``local_ip``, UDP 4789) enslaved to
    ``bridge`` and up. Without ``learning`` only the FDB entries written to it (``fdb_*``)
    say where a MAC is; a device an earlier release made with learning on is switched."""
    with IPRoute() as ipr:
        master = _link(ipr, bridge)
        if master is None:
            raise RuntimeError(f"bridge {bridge} does not exist")
        existing = _link(ipr, name)
        link = existing or _add(ipr, name, kind="vxlan", vxlan_id=vni, vxlan_local=local_ip,
                                vxlan_port=4789, vxlan_learning=int(learning))
        if link.kind != "vxlan":
            raise RuntimeError(f"{name} exists but is a {link.kind or 'plain'} device")
        if existing is not None:
            msg = ipr.link("get", index=link.index)[0]
            data = msg.get(("IFLA_LINKINFO", "IFLA_INFO_DATA"))
            if data is not None and bool(data.get("IFLA_VXLAN_LEARNING")) != learning:
                ipr.link("set", index=link.index, kind="vxlan",
                         vxlan_learning=int(learning))
        ipr.link("set", index=link.index, master=master.index, mtu=mtu, state="up")
        return link


def fdb_remote(name: str) -> set[tuple[str, str]]:
    """The (MAC, tunnel IP) entries of VXLAN device ``name`` that point at a remote
    endpoint (empty when the device is gone)."""
    with IPRoute() as ipr:
        link = _link(ipr, name)
        if link is None:
            return set()
        found = set()
        for msg in ipr.fdb("dump", ifindex=link.index):
            dst = msg.get("NDA_DST")
            if msg["ifindex"] == link.index and dst:
                found.add((msg.get("NDA_LLADDR"), dst))
        return found


def fdb_change(name: str, add: set[tuple[str, str]], remove: set[tuple[str, str]]) -> bool:
    """Add and remove (MAC, tunnel IP) entries of VXLAN device ``name``; False when the
    device does not exist. Several entries of one MAC (the all-zero flood MAC: one per
    endpoint) are kept side by side; adding what exists or removing what is gone is no
    error."""
    with IPRoute() as ipr:
        link = _link(ipr, name)
        if link is None:
            return False
        for mac, dst in sorted(remove):
            try:
                ipr.fdb("del", ifindex=link.index, lladdr=mac, dst=dst)
            except NetlinkError as exc:
                if exc.code != errno.ENOENT:
                    raise
        for mac, dst in sorted(add):
            try:
                ipr.fdb("append", ifindex=link.index, lladdr=mac, dst=dst)
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:
                    raise
        return True


# Namespaces ---------------------------------------------------------------------------------
#
# Namespaces are made and entered by the calling (worker) thread itself, never through
# pyroute2's NetNS or netns.create: those fork the agent's process, and a forked copy that is
# sent SIGTERM while Python still runs in it writes that signal into the event loop's wakeup
# socket, which the copy shares with the agent -- the agent then believes it was told to stop.

_MS_REC = 0x4000
_MS_BIND = 0x1000
_MS_SHARED = 1 << 20
_MNT_DETACH = 2


def namespace_exists(name: str) -> bool:
    """Whether ``name`` is a namespace: its file under ``/run/netns`` exists *and* has the
    namespace mounted on it (a namespace being made is a plain empty file for a moment)."""
    try:
        return _is_namespace(os.stat(os.path.join(NETNS_DIR, name)))
    except FileNotFoundError:
        return False


def _is_namespace(stat: os.stat_result) -> bool:
    # Every namespace file is on the kernel's one nsfs, whatever namespace it names.
    return stat.st_dev == os.stat("/proc/thread-self/ns/net").st_dev


def _libc_check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def _share_netns_dir() -> None:
    """Make ``/run/netns`` a shared mount (as iproute2 does), so namespaces mounted there are
    seen from every mount namespace."""
    os.makedirs(NETNS_DIR, exist_ok=True)
    if _libc.mount(b"", NETNS_DIR.encode(), b"none", _MS_SHARED | _MS_REC, None) == 0:
        return
    _libc_check(_libc.mount(NETNS_DIR.encode(), NETNS_DIR.encode(), b"none",
                            _MS_BIND | _MS_REC, None), f"bind-mount {NETNS_DIR}")
    _libc_check(_libc.mount(b"", NETNS_DIR.encode(), b"none", _MS_SHARED | _MS_REC, None),
                f"share {NETNS_DIR}")


def _create_namespace(name: str) -> None:
    """A new namespace bind-mounted at ``/run/netns/<name>``; this thread stays where it was."""
    _share_netns_dir()
    path = os.path.join(NETNS_DIR, name)
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _libc_check(_libc.unshare(_CLONE_NEWNET), "unshare")
        try:
            _libc_check(_libc.mount(b"/proc/thread-self/ns/net", path.encode(), b"none",
                                    _MS_BIND, None), f"mount {path}")
        finally:
            _setns(home)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    finally:
        os.close(home)


@contextlib.contextmanager
def ipr_in(namespace: str) -> Iterator[IPRoute]:
    """An ``IPRoute`` whose netlink socket lives in ``namespace`` (for worker threads)."""
    with entered(namespace):
        ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


@contextlib.contextmanager
def conntrack_in(namespace: str) -> Iterator[Conntrack]:
    """A ``Conntrack`` whose netlink socket lives in ``namespace``: its requests read and
    delete that namespace's connection tracking table (for worker threads; use it in the
    thread that made it).

    Unlike ``IPRoute``, pyroute2's ``Conntrack`` opens its socket only at its first request,
    in whatever namespace the thread is in by then: one made inside ``entered`` would talk to
    the host's table. So the socket is opened here, inside the namespace, and handed over by
    its descriptor (which the ``Conntrack`` then owns and closes).
    """
    with entered(namespace):
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_NETFILTER)
    fd = sock.detach()
    try:
        tracker = Conntrack(fileno=fd)
    except BaseException:
        os.close(fd)
        raise
    try:
        yield tracker
    finally:
        tracker.close()


def ensure_namespace(name: str) -> bool:
    """The named namespace (``/run/netns/<name>``) with ``lo`` up; True when created."""
    created = False
    if not namespace_exists(name):
        try:
            _create_namespace(name)
            created = True
        except FileExistsError:
            pass
    with ipr_in(name) as ns:
        lo = ns.link_lookup(ifname="lo")
        if lo:
            ns.link("set", index=lo[0], state="up")
    return created


def delete_namespace(name: str) -> bool:
    """Remove the namespace (its devices go with it, and so do veth peers outside)."""
    path = os.path.join(NETNS_DIR, name)
    if not os.path.exists(path):
        return False
    _libc.umount2(path.encode(), _MNT_DETACH)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return True


def plug_veth(namespace: str, inside: str, outside: str, bridge: str, mac: str,
              mtu: int) -> None:
    """A veth pair: ``outside`` up in ``bridge``, ``inside`` (MAC ``mac``, ``mtu``) up in
    ``namespace``. Existing ends are reused (a resync), a half-made pair is replaced."""
    with IPRoute() as ipr:
        master = _link(ipr, bridge)
        if master is None:
            raise RuntimeError(f"bridge {bridge} does not exist")
        with ipr_in(namespace) as ns:
            has_inside = bool(ns.link_lookup(ifname=inside))
        out = _link(ipr, outside)
        if out is not None and (out.kind != "veth" or not has_inside):
            ipr.link("del", index=out.index)
            out = None
        if out is None:
            if has_inside:
                with ipr_in(namespace) as ns:
                    ns.link("del", index=ns.link_lookup(ifname=inside)[0])
            ipr.link("add", ifname=outside, kind="veth",
                     peer={"ifname": inside, "net_ns_fd": namespace})
            out = _link(ipr, outside)
            assert out is not None
        ipr.link("set", index=out.index, master=master.index, mtu=mtu, state="up")
    with ipr_in(namespace) as ns:
        index = ns.link_lookup(ifname=inside)[0]
        ns.link("set", index=index, address=mac, mtu=mtu, state="up")


def set_addresses(namespace: str, device: str, addresses: list[str]) -> None:
    """Make ``device``'s IPv4 addresses in ``namespace`` exactly ``addresses`` (CIDR
    notation, e.g. ``10.0.0.2/24``): adds what is missing, removes what is not wanted."""
    wanted = {IPv4Interface(a) for a in addresses}
    with ipr_in(namespace) as ns:
        index = ns.link_lookup(ifname=device)[0]
        present = {IPv4Interface(f"{m.get('IFA_ADDRESS')}/{m['prefixlen']}")
                   for m in ns.get_addr(index=index, family=2)}
        for iface in present - wanted:
            ns.addr("del", index=index, address=str(iface.ip),
                    prefixlen=iface.network.prefixlen)
        for iface in wanted - present:
            try:
                ns.addr("add", index=index, address=str(iface.ip),
                        prefixlen=iface.network.prefixlen)
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:
                    raise


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"setns: {os.strerror(code)}")


@contextlib.contextmanager
def entered(namespace: str) -> Iterator[None]:
    """Run the body with *this thread* in ``namespace`` (sockets made inside stay there).

    Only for worker threads (``asyncio.to_thread``): a namespace is per thread, and the
    thread is put back where it was before the body's exceptions propagate.
    """
    path = os.path.join(NETNS_DIR, namespace)
    try:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NamespaceNotFound(namespace) from None
    if not _is_namespace(os.fstat(target)):
        os.close(target)
        raise NamespaceNotFound(namespace)  # still being made: not a namespace yet
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


@contextlib.contextmanager
def preexec_in(namespace: str) -> Iterator[Callable[[], None]]:
    """A ``preexec_fn`` that moves a child process into ``namespace`` before it executes;
    valid inside the ``with`` block.

    The namespace is opened before the fork, so the child makes one system call only (no
    allocation between fork and exec).
    """
    path = os.path.join(NETNS_DIR, namespace)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NamespaceNotFound(namespace) from None
    setns = _libc.setns

    def enter() -> None:
        if setns(fd, _CLONE_NEWNET) != 0:
            os._exit(126)

    try:
        yield enter
    finally:
        os.close(fd)
