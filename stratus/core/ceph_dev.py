"""A real single-node Ceph for development and tests (``stratus ceph up|down|env`` in
``cli/ceph.py``, and the test suite's shared cluster in ``tests/ceph_cluster.py``).

Debian's daemons (``ceph-mon``, ``ceph-mgr``, ``ceph-osd``, ``radosgw``; installed by
``.ci/run`` or by hand, never by this module) run as one monitor ``a``, one manager ``x``, one
bluestore OSD ``0`` on a sparse file and one RADOS gateway ``rgw.a``, all on 127.0.0.1, with
everything they write under one directory (no ``/var/lib/ceph``, ``/run/ceph`` or systemd):

``DIR/ceph.conf``
    the cluster's configuration: monitors' addresses, pools of size 1, run dir, logs.
``DIR/ceph.client.admin.keyring``, ``DIR/ceph.client.stratus.keyring``
    the admin key, and ``client.stratus``: ``profile rbd`` on pools ``images``, ``volumes``,
    ``vms`` (what Stratus's services use).
``DIR/s3.json``
    the RADOS gateway's endpoint and the S3 user's access and secret keys (mode 0600).

``up`` makes the cluster on first use (15-30 s) and restarts it from its directory afterwards;
the monitor and gateway ports are free ports chosen at creation (several clusters can run on a
host). ``down`` stops the gateway first (it ignores SIGTERM while it waits on the OSD), then the
OSD, manager and monitor, and kills what does not stop. The daemons are found by their command
line, which names this directory's ``ceph.conf``: a run that crashed half-way is stopped as
completely as one that did not, and no process of another cluster is ever touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The pools Stratus uses, as in OpenStack's Ceph guides.
POOLS = ("images", "volumes", "vms")
#: The Debian packages the cluster runs on, and the program each installs.
PACKAGES = {"ceph-mon": "ceph-mon", "ceph-mgr": "ceph-mgr", "ceph-osd": "ceph-osd",
            "radosgw": "radosgw", "ceph-authtool": "ceph-common",
            "monmaptool": "ceph-base", "radosgw-admin": "ceph-common"}
#: Unix socket paths (the daemons' admin sockets under DIR/run) are limited to 107 bytes.
MAX_DIR_LENGTH = 60
#: Size of the OSD's sparse block file; only what is written takes disk space.
OSD_SIZE = 10 << 30
#: The daemons, in the order they start (``down`` stops them in reverse).
DAEMONS = ("mon.a", "mgr.x", "osd.0", "client.rgw.a")
S3_USER = "stratus"


class CephDevError(Exception):
    """The cluster could not be started or stopped; the message says why."""


@dataclass(frozen=True)
class S3Credentials:
    endpoint: str
    access_key: str
    secret_key: str


def missing_programs() -> list[str]:
    """The Debian packages whose programs are not on PATH (empty: the cluster can run)."""
    return sorted({package for program, package in PACKAGES.items()
                   if shutil.which(program) is None})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class DevCluster:
    """The single-node cluster under ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory.absolute()
        if len(str(self.dir)) > MAX_DIR_LENGTH:
            raise CephDevError(f"{self.dir} is too long for the daemons' admin sockets "
                               f"(at most {MAX_DIR_LENGTH} characters): choose a shorter "
                               "directory")

    # -- paths ------------------------------------------------------------------------------
    @property
    def conf(self) -> Path:
        return self.dir / "ceph.conf"

    @property
    def admin_keyring(self) -> Path:
        return self.dir / "ceph.client.admin.keyring"

    @property
    def stratus_keyring(self) -> Path:
        return self.dir / "ceph.client.stratus.keyring"

    @property
    def s3_file(self) -> Path:
        return self.dir / "s3.json"

    def exists(self) -> bool:
        """Whether the cluster has been made (its monitor's store is there)."""
        return (self.dir / "mon" / "ceph-a" / "store.db").is_dir() and self.conf.exists()

    def ports(self) -> dict[str, int]:
        """``mon`` (msgr2), ``mon_v1`` and ``rgw``, as written in the configuration."""
        return json.loads((self.dir / "ports.json").read_text())

    def s3(self) -> S3Credentials:
        data = json.loads(self.s3_file.read_text())
        return S3Credentials(data["endpoint"], data["access_key"], data["secret_key"])

    def env(self) -> dict[str, str]:
        """What a client of this cluster sets: Ceph's own variables and Stratus's settings."""
        values = {"CEPH_CONF": str(self.conf),
                  "STRATUS_CEPH__CONF": str(self.conf),
                  "STRATUS_CEPH__USER": "stratus",
                  "STRATUS_CEPH__KEYRING": str(self.stratus_keyring),
                  "STRATUS_CEPH_ADMIN_KEYRING": str(self.admin_keyring)}
        if self.s3_file.exists():
            s3 = self.s3()
            values.update({"STRATUS_CEPH_S3_ENDPOINT": s3.endpoint,
                           "STRATUS_CEPH_S3_ACCESS_KEY": s3.access_key,
                           "STRATUS_CEPH_S3_SECRET_KEY": s3.secret_key,
                           # the image store ``s3`` (chosen by STRATUS_IMAGE__STORE=s3)
                           "STRATUS_IMAGE__S3_STORE_HOST": s3.endpoint,
                           "STRATUS_IMAGE__S3_STORE_ACCESS_KEY": s3.access_key,
                           "STRATUS_IMAGE__S3_STORE_SECRET_KEY": s3.secret_key})
        return values

    # -- processes --------------------------------------------------------------------------
    def pids(self) -> dict[int, str]:
        """The running daemons of this cluster: pid → its name (``osd.0``...).

        A daemon is ours when its command line names our ``ceph.conf`` (every daemon is
        started with ``-c DIR/ceph.conf``).
        """
        conf = str(self.conf).encode()
        found: dict[int, str] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                args = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if conf not in args or not args[0]:
                continue
            program = Path(args[0].decode(errors="replace")).name
            name = self._daemon_name(program, args)
            if name is not None:
                found[int(entry.name)] = name
        return found

    @staticmethod
    def _daemon_name(program: str, args: list[bytes]) -> str | None:
        if program == "ceph-mon":
            return "mon.a"
        if program == "ceph-mgr":
            return "mgr.x"
        if program == "ceph-osd":
            return "osd.0"
        if program == "radosgw":
            return "client.rgw.a"
        del args
        return None

    def running(self) -> set[str]:
        return set(self.pids().values())

    # -- helpers ----------------------------------------------------------------------------
    def _run(self, *args: str, timeout: float = 120) -> str:
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                                  check=False, cwd=self.dir)
        except FileNotFoundError as exc:
            raise CephDevError(f"{args[0]} is not installed; apt-get install "
                               f"{PACKAGES.get(args[0], 'ceph-common')}") from exc
        except subprocess.TimeoutExpired as exc:
            raise CephDevError(f"{' '.join(args[:3])} took more than {timeout:.0f} s; see "
                               f"the logs in {self.dir / 'log'}") from exc
        if done.returncode != 0:
            raise CephDevError(f"{' '.join(args[:4])} failed ({done.returncode}): "
                               f"{(done.stderr or done.stdout).strip()[-800:]}")
        return done.stdout

    def _daemon(self, program: str, *args: str) -> None:
        """Start a daemon (it forks into the background once it has started)."""
        self._run(program, "-c", str(self.conf), *args, timeout=120)

    def _connect(self, timeout: float = 10) -> Any:
        try:
            import rados
        except ImportError as exc:
            raise CephDevError("the librados Python binding is missing: apt-get install "
                               "python3-rados, then make ceph-bindings") from exc
        cluster = rados.Rados(conffile=str(self.conf), rados_id="admin",
                              conf={"keyring": str(self.admin_keyring),
                                    "client_mount_timeout": str(int(timeout))})
        try:
            cluster.connect(timeout=int(timeout))
        except BaseException:
            cluster.shutdown()  # its threads would keep the process from exiting
            raise
        return cluster

    @staticmethod
    def _command(cluster: Any, **command: Any) -> Any:
        ret, out, err = cluster.mon_command(json.dumps({**command, "format": "json"}), b"",
                                            timeout=60)
        if ret != 0:
            raise CephDevError(f"ceph {command['prefix']} failed ({ret}): {err}")
        return json.loads(out) if out else None

    def _wait(self, what: str, check: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if check():
                    return
            except Exception:  # not ready yet: polled again
                pass
            if time.monotonic() > deadline:
                raise CephDevError(f"{what} within {timeout:.0f} s; see the logs in "
                                   f"{self.dir / 'log'}")
            time.sleep(0.25)

    # -- creation ---------------------------------------------------------------------------
    def _write_conf(self, fsid: str, ports: dict[str, int]) -> None:
        d = self.dir
        self.conf.write_text(f"""# Made by `stratus ceph up`: a single-node development cluster.
[global]
fsid = {fsid}
mon host = [v2:127.0.0.1:{ports['mon']},v1:127.0.0.1:{ports['mon_v1']}]
public addr = 127.0.0.1
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
keyring = {d}/$cluster.$name.keyring
run dir = {d}/run
admin socket = {d}/run/$cluster-$name.$pid.asok
pid file = {d}/run/$name.pid
log file = {d}/log/$name.log
mon cluster log file = {d}/log/cluster.log
crash dir = {d}/crash
# One OSD: pools of one copy, placement over OSDs rather than hosts, few PGs.
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon max pg per osd = 1000
# A development disk is often nearly full: warn at 2 %, stop at 1 %.
mon data avail warn = 2
mon data avail crit = 1
# Bootstrap in half the time.
paxos propose interval = 0.1
rbd default features = layering, exclusive-lock, object-map, fast-diff, deep-flatten

[mon]
mon data = {d}/mon/$cluster-$id
keyring = {d}/mon/$cluster-$id/keyring

[mgr]
mgr data = {d}/mgr/$cluster-$id

[osd]
osd data = {d}/osd/$cluster-$id
osd objectstore = bluestore
osd memory target = 1073741824

[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:{ports['rgw']}
rgw data = {d}/rgw
rgw dns name = 127.0.0.1
""")
        (d / "ports.json").write_text(json.dumps(ports))

    def create(self) -> None:
        """Make a new cluster in an empty (or absent) directory and leave it running."""
        if self.dir.exists() and any(self.dir.iterdir()):
            raise CephDevError(f"{self.dir} is not empty: `stratus ceph down --purge` first")
        missing = missing_programs()
        if missing:
            raise CephDevError(f"Ceph is not installed: apt-get install {' '.join(missing)}")
        d = self.dir
        for sub in ("run", "log", "crash", "mon", "mgr/ceph-x", "osd/ceph-0", "rgw"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        fsid = str(uuid.uuid4())
        ports = {"mon": free_port(), "mon_v1": free_port(), "rgw": free_port()}
        self._write_conf(fsid, ports)
        mon_keyring = d / "mon.keyring"
        self._run("ceph-authtool", "--create-keyring", str(mon_keyring), "--gen-key",
                  "-n", "mon.", "--cap", "mon", "allow *")
        self._run("ceph-authtool", "--create-keyring", str(self.admin_keyring), "--gen-key",
                  "-n", "client.admin", "--cap", "mon", "allow *", "--cap", "osd", "allow *",
                  "--cap", "mds", "allow *", "--cap", "mgr", "allow *")
        self._run("ceph-authtool", str(mon_keyring), "--import-keyring",
                  str(self.admin_keyring))
        monmap = d / "monmap"
        self._run("monmaptool", "--create", "--fsid", fsid, "--addv", "a",
                  f"[v2:127.0.0.1:{ports['mon']},v1:127.0.0.1:{ports['mon_v1']}]",
                  str(monmap))
        self._run("ceph-mon", "-c", str(self.conf), "--mkfs", "-i", "a", "--monmap",
                  str(monmap), "--keyring", str(mon_keyring))
        monmap.unlink()
        mon_keyring.unlink()
        self._daemon("ceph-mon", "-i", "a")
        cluster = self._connect(timeout=30)
        try:
            key = self._command(cluster, prefix="auth get-or-create", entity="mgr.x",
                                caps=["mon", "allow profile mgr", "osd", "allow *",
                                      "mds", "allow *"])
            self._write_keyring(d / "ceph.mgr.x.keyring", key)
            self._daemon("ceph-mgr", "-i", "x")
            osd_uuid = str(uuid.uuid4())
            self._command(cluster, prefix="osd new", uuid=osd_uuid, id=0)
            block = d / "osd.block"
            with block.open("wb") as f:
                f.truncate(OSD_SIZE)
            (d / "osd" / "ceph-0" / "block").symlink_to(block)
            self._run("ceph-osd", "-c", str(self.conf), "-i", "0", "--mkfs", "--mkkey",
                      "--osd-uuid", osd_uuid, "--no-mon-config",
                      "--keyring", str(d / "ceph.osd.0.keyring"))
            self._import_key(cluster, "osd.0", d / "ceph.osd.0.keyring",
                             ["mon", "allow profile osd", "mgr", "allow profile osd",
                              "osd", "allow *"])
            self._daemon("ceph-osd", "-i", "0")
            self._wait_osd(cluster)
            import rbd

            for pool in POOLS:
                self._command(cluster, prefix="osd pool create", pool=pool, pg_num=8,
                              pgp_num=8)
                self._command(cluster, prefix="osd pool application enable", pool=pool,
                              app="rbd")
            self._wait_pgs(cluster)
            for pool in POOLS:
                with cluster.open_ioctx(pool) as ioctx:
                    rbd.RBD().pool_init(ioctx, False)
            pool_caps = ", ".join(f"profile rbd pool={pool}" for pool in POOLS)
            key = self._command(cluster, prefix="auth get-or-create", entity="client.stratus",
                                caps=["mon", "profile rbd", "osd", pool_caps,
                                      "mgr", pool_caps])
            self._write_keyring(self.stratus_keyring, key)
            key = self._command(cluster, prefix="auth get-or-create", entity="client.rgw.a",
                                caps=["mon", "allow rw", "osd", "allow rwx"])
            self._write_keyring(d / "ceph.client.rgw.a.keyring", key)
        finally:
            cluster.shutdown()
        self._start_rgw(ports["rgw"])
        access, secret = secrets.token_hex(10).upper(), secrets.token_urlsafe(30)
        self._run("radosgw-admin", "-c", str(self.conf), "user", "create",
                  f"--uid={S3_USER}", "--display-name=Stratus", f"--access-key={access}",
                  f"--secret-key={secret}")
        self.s3_file.touch(mode=0o600)
        self.s3_file.write_text(json.dumps({"endpoint": f"http://127.0.0.1:{ports['rgw']}",
                                            "access_key": access, "secret_key": secret}))

    @staticmethod
    def _write_keyring(path: Path, answer: Any) -> None:
        entry = answer[0]
        lines = [f"[{entry['entity']}]", f"\tkey = {entry['key']}"]
        lines += [f'\tcaps {kind} = "{cap}"' for kind, cap in entry.get("caps", {}).items()]
        path.touch(mode=0o600)
        path.write_text("\n".join(lines) + "\n")

    def _import_key(self, cluster: Any, entity: str, keyring: Path, caps: list[str]) -> None:
        key = ""
        for line in keyring.read_text().splitlines():
            if line.strip().startswith("key"):
                key = line.split("=", 1)[1].strip()
        text = f"[{entity}]\n\tkey = {key}\n" + "".join(
            f'\tcaps {caps[i]} = "{caps[i + 1]}"\n' for i in range(0, len(caps), 2))
        ret, _, err = cluster.mon_command(json.dumps({"prefix": "auth import"}),
                                          text.encode(), timeout=60)
        if ret != 0:
            raise CephDevError(f"ceph auth import {entity} failed ({ret}): {err}")

    def _wait_osd(self, cluster: Any, timeout: float = 90) -> None:
        self._wait("the OSD did not come up",
                   lambda: self._command(cluster, prefix="osd stat")["num_up_osds"] >= 1,
                   timeout)

    def _wait_pgs(self, cluster: Any, timeout: float = 90) -> None:
        def clean() -> bool:
            pgmap = self._command(cluster, prefix="status")["pgmap"]
            states = {s["state_name"]: s["count"] for s in pgmap.get("pgs_by_state", [])}
            return pgmap["num_pgs"] > 0 and states.get("active+clean") == pgmap["num_pgs"]
        self._wait("the placement groups did not become active+clean", clean, timeout)

    def _start_rgw(self, port: int) -> None:
        self._daemon("radosgw", "-n", "client.rgw.a")
        self._wait("the RADOS gateway did not listen", lambda: port_open(port), 90)

    # -- up / down --------------------------------------------------------------------------
    def up(self) -> bool:
        """Start the cluster, making it first when needed; True when it was made now."""
        if not self.exists():
            if self.dir.exists():
                self.down(purge=True)  # a creation that did not finish: start over
            self.create()
            return True
        running = self.running()
        if not (self.dir / "osd" / "ceph-0" / "block").exists():
            raise CephDevError(f"{self.dir} holds no OSD: `stratus ceph down --purge` first")
        if "mon.a" not in running:
            self._daemon("ceph-mon", "-i", "a")
        cluster = self._connect(timeout=30)
        try:
            if "mgr.x" not in running:
                self._daemon("ceph-mgr", "-i", "x")
            if "osd.0" not in running:
                self._daemon("ceph-osd", "-i", "0")
            self._wait_osd(cluster)
        finally:
            cluster.shutdown()
        if "client.rgw.a" not in running:
            self._start_rgw(self.ports()["rgw"])
        return False

    def healthy(self, timeout: float = 10) -> bool:
        """Whether every daemon runs and the OSD is up (answers within ``timeout``)."""
        if not self.exists() or self.running() != set(DAEMONS):
            return False
        if not port_open(self.ports()["rgw"]):
            return False
        try:
            cluster = self._connect(timeout=timeout)
        except Exception:
            return False
        try:
            return bool(self._command(cluster, prefix="osd stat")["num_up_osds"] >= 1)
        except Exception:
            return False
        finally:
            cluster.shutdown()

    def down(self, *, purge: bool = False, timeout: float = 30) -> list[str]:
        """Stop every daemon of this cluster (gateway, OSD, manager, monitor, in this order),
        killing what does not stop within ``timeout`` s; with ``purge`` remove the directory.
        Returns what was stopped."""
        stopped = []
        # Without its OSD the gateway waits on RADOS and ignores SIGTERM for minutes: it
        # has nothing left to write, so it gets a short grace only.
        osd_running = "osd.0" in self.running()
        for name in reversed(DAEMONS):
            pids = [pid for pid, daemon in self.pids().items() if daemon == name]
            if pids:
                stopped.append(name)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            grace = timeout if osd_running or name != "client.rgw.a" else 2
            deadline = time.monotonic() + grace
            while pids and time.monotonic() < deadline:
                pids = [pid for pid in pids if _alive(pid)]
                time.sleep(0.1)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        # What remains (a daemon that was mid-start) is killed outright.
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        if purge and self.dir.exists():
            shutil.rmtree(self.dir)
        return stopped


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (made if needed), held for the block."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
