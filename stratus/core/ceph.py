"""The process's connection to Ceph: librados and librbd, off the event loop.

One ``rados.Rados`` connection per process and cluster (``acquire``/``release`` count its
users: the image store and the volume backend of one process share it), made the first time a
user starts. Every librados/librbd call blocks (the bindings release the GIL while librados
works), so each runs through ``Ceph.run`` on a thread pool of ``ceph.threads`` threads: at most
that many calls at once, the event loop never waits on the cluster.

The bindings are Debian's ``python3-rados`` and ``python3-rbd`` (there are none on PyPI);
``make`` links them into the project's venv. ``rados``/``rbd`` are imported only here, and
their absence is reported as ``CephUnavailable`` naming the packages, at start-up.

A cluster that cannot be reached or refuses our key is ``CephUnavailable`` (503, naming Ceph
and the monitors' configuration, never the key).
"""

from __future__ import annotations

import asyncio
import base64
import errno
import functools
import json
import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from stratus.core.config import CephSettings
from stratus.core.exceptions import ServiceUnavailable

LOG = logging.getLogger(__name__)
T = TypeVar("T")

BINDINGS_MISSING = ("the Ceph Python bindings are missing: apt-get install python3-rados "
                    "python3-rbd, then `make ceph-bindings` (links them into the venv)")


class CephUnavailable(ServiceUnavailable):
    """Ceph cannot be used now: not installed, not reachable, or our key is refused."""


def bindings() -> tuple[ModuleType, ModuleType]:
    """``(rados, rbd)``; raises ``CephUnavailable`` saying how to install them."""
    try:
        import rados
        import rbd
    except ImportError as exc:
        raise CephUnavailable(f"Ceph: {BINDINGS_MISSING}") from exc
    return rados, rbd


@dataclass(frozen=True)
class Monitor:
    host: str
    port: int


@dataclass(frozen=True)
class RbdLocation:
    """Where an image's data lies in RBD: Glance's ``rbd://<fsid>/<pool>/<image>/<snap>``."""

    fsid: str
    pool: str
    image: str
    snapshot: str

    def __str__(self) -> str:
        return f"rbd://{self.fsid}/{self.pool}/{self.image}/{self.snapshot}"


def rbd_location(location: str | None) -> RbdLocation | None:
    """The parts of an ``rbd://`` location; None for any other (``file://``, ``s3://``)."""
    if not location or not location.startswith("rbd://"):
        return None
    parts = location[len("rbd://"):].split("/")
    if len(parts) != 4 or not all(parts):
        return None
    return RbdLocation(*parts)


def qemu_target(settings: CephSettings, pool: str, name: str) -> str:
    """QEMU's name (``qemu-img``) of RBD image ``pool/name`` as ``settings``' user: the
    paths of the configuration and keyring, never the key."""
    target = f"rbd:{pool}/{name}:id={settings.user}:conf={settings.conf}"
    if settings.keyring is not None:
        target += f":keyring={settings.keyring}"
    return target


#: Where the libvirt secrets of Ceph users get their uuids (``secret_uuid``).
_SECRET_NAMESPACE = uuid.UUID("7d1c1f64-3a5e-4f0e-9a57-5b0c7e1b8c21")


def secret_uuid(fsid: str, user: str) -> str:
    """The uuid of the libvirt secret holding ``client.<user>``'s key of cluster ``fsid``
    on compute hosts, when none is configured: the same on every host and in the volume
    service's connection info, and never another cluster's."""
    return str(uuid.uuid5(_SECRET_NAMESPACE, f"{fsid}/client.{user}"))


class Ceph:
    """One connected cluster. Use ``acquire``, not the constructor."""

    def __init__(self, settings: CephSettings) -> None:
        self.settings = settings
        self.rados, self.rbd = bindings()
        self._pool = ThreadPoolExecutor(max_workers=settings.threads,
                                        thread_name_prefix="ceph")
        self._cluster: Any = None
        self._ioctxs: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.fsid = ""
        self.users = 0

    def _connect(self) -> None:
        # connect(timeout=...) alone does not bound the wait for unreachable monitors here:
        # client_mount_timeout does.
        conf: dict[str, str] = {"client_mount_timeout": str(self.settings.connect_timeout),
                                "rados_mon_op_timeout": str(self.settings.connect_timeout),
                                "rados_osd_op_timeout": str(self.settings.op_timeout)}
        if self.settings.keyring is not None:
            conf["keyring"] = str(self.settings.keyring)
        if not self.settings.conf.exists():
            raise CephUnavailable(f"Ceph: no configuration at {self.settings.conf} "
                                  "(settings ceph.conf; `stratus ceph env` prints a "
                                  "development cluster's)")
        cluster = None
        try:
            cluster = self.rados.Rados(conffile=str(self.settings.conf),
                                       rados_id=self.settings.user, conf=conf)
            cluster.connect(timeout=self.settings.connect_timeout)
        except self.rados.Error as exc:
            if cluster is not None:
                # Its threads would otherwise keep the process from exiting.
                cluster.shutdown()
            raise CephUnavailable(
                f"Ceph: cannot connect as client.{self.settings.user} with "
                f"{self.settings.conf}: {type(exc).__name__} {_errno_text(exc)}") from exc
        self._cluster = cluster
        self.fsid = cluster.get_fsid()

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on the pool; librados's lost-connection errors become
        ``CephUnavailable``."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))
        except (self.rados.Error, self.rbd.Error) as exc:
            if not _unreachable(exc):
                raise
            raise CephUnavailable(f"Ceph did not answer in time (monitors or OSDs down?): "
                                  f"{type(exc).__name__} {_errno_text(exc)}") from exc

    def ioctx(self, pool: str) -> Any:
        """The I/O context of ``pool`` (blocking: call it inside ``run``)."""
        with self._lock:
            ioctx = self._ioctxs.get(pool)
            if ioctx is None:
                try:
                    ioctx = self._cluster.open_ioctx(pool)
                except self.rados.ObjectNotFound as exc:
                    raise CephUnavailable(f"Ceph: there is no pool {pool!r}") from exc
                self._ioctxs[pool] = ioctx
            return ioctx

    def mon_command(self, prefix: str, **args: Any) -> Any:
        """A monitor command's JSON answer (blocking)."""
        ret, out, err = self._cluster.mon_command(
            json.dumps({"prefix": prefix, "format": "json", **args}), b"",
            timeout=self.settings.connect_timeout)
        if ret != 0:
            if abs(ret) in _UNREACHABLE:
                raise CephUnavailable(f"Ceph did not answer in time (monitors down?): "
                                      f"{prefix}: {err}")
            raise CephUnavailable(f"Ceph: {prefix} failed ({ret}): {err}")
        return json.loads(out)

    def features(self) -> int:
        """The RBD features of the images we make: layering (clones) and what keeps them
        fast (exclusive lock, object map, fast diff, deep flatten)."""
        rbd = self.rbd
        return int(rbd.RBD_FEATURE_LAYERING | rbd.RBD_FEATURE_EXCLUSIVE_LOCK
                   | rbd.RBD_FEATURE_OBJECT_MAP | rbd.RBD_FEATURE_FAST_DIFF
                   | rbd.RBD_FEATURE_DEEP_FLATTEN)

    def client_key(self) -> bytes:
        """Our user's cephx key (the raw bytes libvirt's ``ceph`` secrets hold), read from
        its keyring (blocking). A secret: never logged, never in an error."""
        user = f"client.{self.settings.user}"
        paths = ([str(self.settings.keyring)] if self.settings.keyring is not None else
                 [p.strip() for p in str(self._cluster.conf_get("keyring")).split(",")])
        for path in paths:
            try:
                text = Path(path).read_text()
            except OSError:
                continue
            section = ""
            for line in text.splitlines():
                line = line.strip()
                if line.startswith("[") and line.endswith("]"):
                    section = line[1:-1].strip()
                elif section == user and line.partition("=")[0].strip() == "key":
                    return base64.b64decode(line.partition("=")[2].strip())
        raise CephUnavailable(f"Ceph: no key of {user} in its keyring "
                              f"({', '.join(paths) or 'none configured'})")

    async def monitors(self) -> list[Monitor]:
        """The monitors' addresses from the cluster map (``mon dump``): what libvirt and
        Cinder's connection info name. The msgr v1 address when a monitor has one (QEMU's
        librbd reaches v1 and v2 there), else its v2 one."""
        dump = await self.run(self.mon_command, "mon dump")
        found = []
        for mon in dump["mons"]:
            addrs = mon.get("public_addrs", {}).get("addrvec", [])
            chosen = next((a for a in addrs if a["type"] == "v1"), addrs[0] if addrs else None)
            if chosen is None:
                host, _, port = mon["addr"].split("/")[0].rpartition(":")
            else:
                host, _, port = chosen["addr"].rpartition(":")
            found.append(Monitor(host.strip("[]"), int(port)))
        return found

    def close(self) -> None:
        # Calls under way finish first (bounded by the op timeout): librados must not be
        # shut down under a thread that uses it.
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            for ioctx in self._ioctxs.values():
                ioctx.close()
            self._ioctxs.clear()
            if self._cluster is not None:
                self._cluster.shutdown()
                self._cluster = None


#: What librados/librbd report when the cluster cannot be reached (op timeouts, shutdown).
_UNREACHABLE = {errno.ETIMEDOUT, errno.ESHUTDOWN, errno.ENOTCONN, errno.ECONNREFUSED,
                errno.EINTR}


def _unreachable(exc: Exception) -> bool:
    code = getattr(exc, "errno", None)
    if code is not None and abs(int(code)) in _UNREACHABLE:
        return True
    return type(exc).__name__ in ("TimedOut", "Timeout", "ConnectionShutdown",
                                  "InterruptedOrTimeoutError")


def _errno_text(exc: Exception) -> str:
    code = getattr(exc, "errno", None)
    return f"(errno {code})" if code is not None else ""


_connections: dict[tuple[str, str, str], Ceph] = {}
_registry_lock = threading.Lock()


def _key(settings: CephSettings) -> tuple[str, str, str]:
    return str(settings.conf), settings.user, str(settings.keyring or "")


async def acquire(settings: CephSettings) -> Ceph:
    """The process's connection to the cluster ``settings`` name, connected now if it is the
    first user's; raises ``CephUnavailable``. Pair with ``release``."""
    key = _key(settings)
    with _registry_lock:
        ceph = _connections.get(key)
        if ceph is None:
            ceph = _connections[key] = Ceph(settings)
        ceph.users += 1
    try:
        with ceph._lock:
            connected = ceph._cluster is not None
        if not connected:
            await ceph.run(_connect_once, ceph)
    except BaseException:
        await release(ceph)
        raise
    return ceph


def _connect_once(ceph: Ceph) -> None:
    with ceph._lock:
        if ceph._cluster is None:
            ceph._connect()


async def release(ceph: Ceph) -> None:
    """One user is done; the last one closes the connection."""
    with _registry_lock:
        ceph.users -= 1
        if ceph.users > 0:
            return
        _connections.pop(_key(ceph.settings), None)
    await asyncio.to_thread(ceph.close)
