"""The machine side of the libvirt driver: the daemons, the connection, the virt type.

This machine (and CI) has no systemd, so ``ensure_daemons`` starts ``virtlogd`` and
``libvirtd`` itself when they do not answer: daemonised, in the host's
network namespace (through ``nsenter`` on PID 1's when we run inside another one, so guests'
taps and libvirt's own sockets live where the l2-agent made them), pid files and logs under
``DAEMON_DIR``. It then waits for libvirt to answer (the first start probes QEMU, ~10-15 s) and
makes sure libvirt's ``default`` NAT network is neither active nor autostarted: guests only
ever get the taps the network service made for them. Without udev, /dev/kvm is also given the
group and mode udev would give it (``ensure_kvm_device_access``: libvirt misbehaves otherwise).

Everything here blocks; the driver calls it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import logging
import os
import pwd
import shutil
import socket
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

from stratus.core import hosttools

LOG = logging.getLogger(__name__)

DEFAULT_URI = "qemu:///system"
VIRTLOGD_SOCKET = "/run/libvirt/virtlogd-sock"
#: Where the daemons we start keep their pid files and logs: as long-lived as they are.
DAEMON_DIR = Path("/run/stratus/libvirt")
#: ioctl numbers of /dev/kvm (linux/kvm.h): _IO(0xAE, 0x00) and _IO(0xAE, 0x01).
_KVM_GET_API_VERSION = 0xAE00
_KVM_CREATE_VM = 0xAE01
KVM_DEVICE = Path("/dev/kvm")
#: Who the system libvirtd runs QEMU as in Debian's build (``user``/``group`` in qemu.conf).
QEMU_USER = "libvirt-qemu"
#: The group and mode udev gives /dev/kvm (systemd's and Debian's rules).
KVM_GROUP = "kvm"
KVM_MODE = 0o660


class DaemonError(Exception):
    """libvirtd (or virtlogd) could not be reached or started."""


def libvirt_module() -> Any:
    """The ``libvirt`` binding, with its stderr error printer silenced (we raise instead)."""
    import libvirt

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    return libvirt


def usable() -> str | None:
    """Why the libvirt driver cannot run here, or None when it can (nothing is started)."""
    try:
        libvirt_module()
    except ImportError:
        return ("libvirt-python is not installed; apt-get install libvirt-dev pkg-config, "
                "then pip install libvirt-python (make deps does both)")
    if shutil.which("qemu-system-x86_64") is None:
        return hosttools.missing("qemu-system-x86_64")
    if shutil.which("qemu-img") is None:  # guests' disks are qcow2 overlays qemu-img makes
        return hosttools.missing("qemu-img")
    if shutil.which("libvirtd") is None and not Path("/run/libvirt/libvirt-sock").exists():
        return hosttools.missing("libvirtd")
    return None


def kvm_usable() -> bool:
    """True when hardware virtualisation really works: CPU flag AND a VM can be created."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    if " vmx" not in flags and " svm" not in flags:
        return False
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if fcntl.ioctl(fd, _KVM_GET_API_VERSION, 0) != 12:
            return False
        vm = fcntl.ioctl(fd, _KVM_CREATE_VM, 0)
        os.close(vm)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def virt_type() -> str:
    return "kvm" if kvm_usable() else "qemu"


#: One nice-0 task's weight in the ``cpu`` controller: ``cpu.shares`` in cgroup v1,
#: ``cpu.weight`` in v2 (libvirt writes a domain's ``<shares>`` to whichever the host has),
#: and the largest value each takes.
CPU_TASK_WEIGHT = {1: 1024, 2: 100}
CPU_WEIGHT_MAX = {1: 262144, 2: 10000}


#: Where libvirt puts guests on a machine without systemd: its default resource partition,
#: a cgroup at the top of the ``cpu`` hierarchy (under systemd it is ``machine.slice``,
#: which systemd weighs and the operator configures: left alone).
CGROUP_ROOT = Path("/sys/fs/cgroup")
GUEST_PARTITION = "machine"


def cpu_weight_file(version: int) -> str:
    """The name of a cgroup's CPU weight file in the ``cpu`` controller of ``version``."""
    return "cpu.shares" if version == 1 else "cpu.weight"


def guest_partition(version: int, root: Path = CGROUP_ROOT) -> Path:
    """libvirt's guest partition cgroup in the ``cpu`` controller of ``version``."""
    return (root / "cpu" if version == 1 else root) / GUEST_PARTITION


def weigh_guest_partition(version: int, root: Path = CGROUP_ROOT) -> int | None:
    """Give libvirt's guest partition the CPU weight of the guests in it; the weight set, or
    None where there is no such partition.

    A cgroup weighs as one task against its siblings whatever it holds, so with the default
    weight every guest on the host together would get the CPU of a single busy host
    process. The partition is made to weigh what its guests' cgroups weigh (each its
    ``<cputune><shares>``: a task per vCPU and one for the emulator), never less than the
    default. Called as guests start, and from the periodic resource report, which catches
    up with guests that stopped or migrated in."""
    partition = guest_partition(version, root)
    name = cpu_weight_file(version)
    own = partition / name
    if not own.exists():
        return None
    guests = 0
    for child in partition.iterdir():
        with contextlib.suppress(OSError, ValueError):  # a guest's cgroup going away
            if child.is_dir():
                guests += int((child / name).read_text())
    weight = min(max(guests, CPU_TASK_WEIGHT[version]), CPU_WEIGHT_MAX[version])
    if int(own.read_text()) != weight:
        own.write_text(str(weight))
    return weight


def cgroup_cpu_version(mounts: str | None = None) -> int:
    """1 when the ``cpu`` controller is mounted as a cgroup v1 hierarchy (``mounts``: the
    text of ``/proc/self/mounts``), else 2 (the unified hierarchy holds it)."""
    if mounts is None:
        try:
            mounts = Path("/proc/self/mounts").read_text()
        except OSError:
            return 2
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] == "cgroup" and "cpu" in fields[3].split(","):
            return 1
    return 2


def may_open_read_write(mode: int, owner: int, group: int, uid: int, gids: set[int]) -> bool:
    """True when a process of ``uid`` with groups ``gids`` may open a file of ``mode``,
    ``owner`` and ``group`` for reading and writing (the permission bits; no ACLs)."""
    if uid == 0:
        return True
    if uid == owner:
        bits = stat.S_IRUSR | stat.S_IWUSR
    elif group in gids:
        bits = stat.S_IRGRP | stat.S_IWGRP
    else:
        bits = stat.S_IROTH | stat.S_IWOTH
    return mode & bits == bits


def kvm_device_problem(device: Path = KVM_DEVICE, user: str = QEMU_USER) -> str | None:
    """Why libvirt would probe QEMU again at nearly every call, or None.

    libvirt (9.0 here) keeps what QEMU can do in a cache and trusts it only while the cache's
    record of KVM agrees with whether the QEMU user may open /dev/kvm. On a machine without
    udev the device stays root's alone (``crw------- root root``) and the two never agree:
    every define, start or even ``getVersion`` then waits for a fresh probe of QEMU, and a
    real guest's build took 76 s instead of ~1 s. udev gives the device to group ``kvm``,
    which the QEMU user is in; this says when that was not done.
    """
    try:
        info = device.stat()
        account = pwd.getpwnam(user)
    except (OSError, KeyError):
        return None  # no device (TCG only, libvirt agrees) or no such user to run QEMU
    gids = {g.gr_gid for g in grp.getgrall() if user in g.gr_mem} | {account.pw_gid}
    if may_open_read_write(info.st_mode, info.st_uid, info.st_gid, account.pw_uid, gids):
        return None
    return (f"{device} is not open to {user} (mode {stat.filemode(info.st_mode)}, owner "
            f"{info.st_uid}, group {info.st_gid}): libvirt then probes QEMU again at nearly "
            f"every call (a build takes minutes); udev's rule makes it group {KVM_GROUP}, mode "
            f"{KVM_MODE:o}")


def ensure_kvm_device_access(device: Path = KVM_DEVICE, user: str = QEMU_USER) -> None:
    """Give ``device`` the group and mode udev would when libvirt would otherwise keep
    probing QEMU (see ``kvm_device_problem``); only as root, and said in the log."""
    problem = kvm_device_problem(device, user)
    if problem is None:
        return
    if os.geteuid() != 0:
        LOG.warning("%s; not root, so left as it is", problem)
        return
    try:
        os.chown(device, -1, grp.getgrnam(KVM_GROUP).gr_gid)
        os.chmod(device, KVM_MODE)
    except (OSError, KeyError) as error:
        LOG.warning("%s; could not change it: %s", problem, error)
        return
    LOG.info("%s: set to group %s, mode %o as udev would", device, KVM_GROUP, KVM_MODE)


def _answers(uri: str) -> bool:
    libvirt = libvirt_module()
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError:
        return False
    try:
        conn.getVersion()
        return True
    except libvirt.libvirtError:
        return False
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()


def in_host_netns() -> bool:
    """True when this process is in PID 1's network namespace, where libvirtd (started
    here or by the machine) sees the taps."""
    try:
        return os.readlink("/proc/self/ns/net") == os.readlink("/proc/1/ns/net")
    except OSError:
        return True  # cannot tell (no access to PID 1): assume we are


def _start(argv: list[str], log_file: Path, env_log_var: str) -> None:
    env = dict(os.environ)
    # libvirt's own logging: warnings and errors into our file, not the console.
    env[env_log_var] = f"3:file:{log_file}"
    if not in_host_netns():
        argv = ["nsenter", "-t", "1", "-n", "--", *argv]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False,
                          timeout=60)
    if done.returncode != 0:
        raise DaemonError(f"{argv[0]} failed ({done.returncode}): {done.stderr.strip()[-300:]}")


def _virtlogd_answers() -> bool:
    """True if something accepts connections on virtlogd's socket.

    The socket file alone proves nothing: a virtlogd that died leaves it behind, and libvirtd
    then fails every domain start with "Connection refused".
    """
    return _virtlogd_refusal() is None


def _virtlogd_refusal() -> OSError | None:
    """Why a connection to virtlogd's socket fails (None: it does not)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2.0)
        try:
            probe.connect(VIRTLOGD_SOCKET)
        except BlockingIOError:
            # A listener whose backlog is full (a busy virtlogd): alive, it answers in turn;
            # a dead one refuses, or has no socket file.
            return None
        except OSError as exc:
            return exc
    return None


def _process_runs(name: str) -> bool:
    """True when a process of this command name runs on the machine."""
    for comm in Path("/proc").glob("[0-9]*/comm"):
        with contextlib.suppress(OSError):
            if comm.read_text().strip() == name:
                return True
    return False


def _start_unless_starting(daemon: str, log_file: Path, env_log_var: str) -> None:
    """Start ``daemon`` (virtlogd or libvirtd) with its pid file in ``DAEMON_DIR``.

    Two callers may find it not answering at once (two test workers, two services starting
    on one machine): the second start fails on the pid file the first one holds. That is
    no failure while a daemon of that name runs: the caller then waits for it to answer."""
    try:
        _start([daemon, "-d", "-p", str(DAEMON_DIR / f"{daemon}.pid")], log_file,
               env_log_var)
    except DaemonError:
        if not _process_runs(daemon):
            raise
        LOG.info("%s is already starting: waiting for it to answer", daemon)


def _ensure_virtlogd() -> bool:
    if _virtlogd_answers():
        return False
    if shutil.which("virtlogd") is None:
        raise DaemonError("virtlogd is not installed (Debian: libvirt-daemon-system)")
    DAEMON_DIR.mkdir(parents=True, exist_ok=True)
    LOG.info("virtlogd does not answer at %s: starting it", VIRTLOGD_SOCKET)
    _start_unless_starting("virtlogd", DAEMON_DIR / "virtlogd.log", "VIRTLOGD_LOG_OUTPUTS")
    deadline = time.monotonic() + 10.0
    while (refusal := _virtlogd_refusal()) is not None:
        if time.monotonic() > deadline:
            raise DaemonError(f"virtlogd started but {VIRTLOGD_SOCKET} did not answer "
                              f"({refusal.strerror}); see {DAEMON_DIR / 'virtlogd.log'}")
        time.sleep(0.05)
    return True


def ensure_daemons(uri: str = DEFAULT_URI, timeout: float = 90.0) -> bool:
    """Make ``uri`` answer, starting virtlogd and libvirtd if needed; True if we started one.

    The daemons serve the whole machine and outlive the cloud or test that started them, so
    their pid files and logs are in ``DAEMON_DIR``, never in a caller's data directory (one
    removed under a running libvirtd made every later QEMU start fail on its log file).

    virtlogd is checked on its own: libvirtd may answer while virtlogd is gone, and every
    guest's serial console goes through it.
    """
    ensure_kvm_device_access()  # the device is the machine's: every libvirtd on it sees it
    if _answers(uri):
        started = uri == DEFAULT_URI and _ensure_virtlogd()
        disable_default_network(uri)
        return started
    if uri != DEFAULT_URI:
        raise DaemonError(f"libvirt at {uri} does not answer (only {DEFAULT_URI} is started "
                          "on demand)")
    for daemon in ("virtlogd", "libvirtd"):
        if shutil.which(daemon) is None:
            raise DaemonError(f"{daemon} is not installed (Debian: libvirt-daemon-system)")
    DAEMON_DIR.mkdir(parents=True, exist_ok=True)
    LOG.info("libvirt does not answer at %s: starting libvirtd", uri)
    _ensure_virtlogd()
    _start_unless_starting("libvirtd", DAEMON_DIR / "libvirtd.log", "LIBVIRT_LOG_OUTPUTS")
    deadline = time.monotonic() + timeout
    while not _answers(uri):
        if time.monotonic() > deadline:
            raise DaemonError(f"libvirtd started but {uri} did not answer within {timeout:.0f} "
                              f"s; see {DAEMON_DIR / 'libvirtd.log'}")
        time.sleep(0.25)
    LOG.info("libvirtd answers at %s", uri)
    disable_default_network(uri)
    return True


def disable_default_network(uri: str = DEFAULT_URI) -> None:
    """libvirt's ``default`` NAT network must not run: guests use our taps only."""
    libvirt = libvirt_module()
    conn = libvirt.open(uri)
    try:
        try:
            net = conn.networkLookupByName("default")
        except libvirt.libvirtError:
            return
        if net.autostart():
            net.setAutostart(0)
        if net.isActive():
            LOG.warning("stopping libvirt's default network: Stratus guests do not use it")
            net.destroy()
    finally:
        conn.close()
