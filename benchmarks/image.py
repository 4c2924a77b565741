"""Image data: upload and download MB/s of a 1 GiB file through ``stratus up``, beside a copy.

A source file of ``--size-mib`` MiB is written (random data, fsync-ed) in a scratch directory
that also holds the server's data dir, so every path reads and writes the same disk:

* *copy*: ``shutil.copyfile`` of the source (``sendfile`` in the kernel, as ``cp`` does),
  then ``fsync`` of the copy;
* *upload*: ``PUT /image/v2/images/{id}/file`` streaming the source file (``Content-Length``
  sent, as ``openstack image create --file`` does) until the ``204``: the server hashes (MD5
  and SHA-512) while it writes, ``fsync``-s and renames into place;
* *download*: ``GET .../file`` streamed into a file on the same disk, then ``fsync``-ed
  (``openstack image save``); checked against ``Content-MD5`` after the clock stops.

The HTTP client is ``curl`` when installed (``--client curl``; a C client, so the figures are
the server's), else httpx in this process (``--client httpx``: then the client's own CPU
counts too). Each figure is the median of ``--repeats`` rounds; the ratios are
``upload / copy`` and ``download / copy``. ``hash_floor_mb_per_s`` is MD5 and SHA-512 of the
same data computed at once on two threads, in memory: no upload that records both hashes can
beat it on this machine, so ``upload_over_hash_floor`` says how close the upload comes
(``download_over_hash_floor``: the download against the same floor). The
server's peak resident memory growth during each transfer (the kernel's ``VmHWM`` after a
reset through ``/proc/PID/clear_refs``) is reported too.

Wall-clock figures move with other work on the machine; the CPU figures hardly do:
``upload_server_cpu_s_per_gib`` (and ``download_...``) is the server process's user + system
CPU time (all its threads, ``/proc/PID/stat``) over the transfer, per GiB;
``upload_client_cpu_s_per_gib`` is curl's (NaN with httpx); ``hash_cpu_s_per_gib`` is what
the two threads of the hash floor spent (each thread's own clock). The hashes alone need
``hash_cpu_s_per_gib`` of CPU whatever the server does, so
``upload_server_cpu_over_hash_cpu`` (at best a little above 1) says how much the rest of the
upload path costs beside them; and since client and server share the machine's cores,
``upload_cpu_bound_mb_per_s`` is the upload rate the measured CPU of both would allow if
every core of the machine (``os.cpu_count()``) were kept busy with nothing else.

The bounds no server can beat on this machine with this client, and the goals against them:

* ``upload_bound_mb_per_s``: the slower of the hash floor and ``upload_cpu_bound_mb_per_s``.
  Where the client shares the cores, the hashes and the client's sending together need
  more CPU than the floor's two threads have: with 2 cores the CPU bound is the lower one,
  and ``upload_over_hash_floor`` cannot reach 0.9 whatever the server does.
  ``upload_over_bound`` >= 0.9 says the server keeps the machine's cores at the work, and
  ``upload_server_cpu_over_hash_cpu`` <= 1.2 that its CPU is the hashes' and a fifth more at most
  (else a wasteful server would raise its own bound);
* ``download_bound_mb_per_s``: the client's own CPU for the transfer (curl receives and
  writes on one thread: ``download_client_cpu_s_per_gib``) followed by its fsync
  (``download_fsync_s_per_gib``); ``download_over_bound`` >= 0.9 says the server keeps the
  client busy. The server's CPU is not in this bound (``download_server_cpu_s_per_gib``).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import math
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from benchmarks import Goal, Result
from benchmarks._cloud import StratusUp, database_info, issue_token, scratch_database

DESCRIPTION = ("image upload and download MB/s of a 1 GiB file through stratus up, against "
               "a plain file copy on the same disk")

MiB = 1024 * 1024
RATIO_GOAL = 0.5
BOUND_GOAL = 0.9
SERVER_CPU_OVER_HASHES_GOAL = 1.2
RSS_GROWTH_GOAL_MIB = 64.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size-mib", type=int, default=1024,
                        help="size of the image file in MiB (default 1024)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds of copy, upload and download; figures are medians "
                             "(default 3)")
    parser.add_argument("--bcrypt-rounds", type=int, default=12,
                        help="bcrypt cost for stored passwords (default 12, as Keystone)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="directory for the files and the server's data dir (default: "
                             "the system's temporary directory)")
    parser.add_argument("--client", choices=("curl", "httpx"),
                        default="curl" if shutil.which("curl") else "httpx",
                        help="HTTP client for the transfers (default: curl when installed)")
    parser.add_argument("--database-url", default=None,
                        help="PostgreSQL server URL: a fresh database there; default SQLite "
                             "in the data dir")


def _progress(message: str) -> None:
    print(f"[image] {message}", file=sys.stderr, flush=True)


def _write_source(path: Path, size: int) -> None:
    block = os.urandom(MiB)
    with path.open("wb") as handle:
        for _ in range(size // MiB):
            handle.write(block)
        handle.write(block[:size % MiB])
        handle.flush()
        os.fsync(handle.fileno())


def _copy(source: Path, target: Path) -> float:
    started = time.perf_counter()
    shutil.copyfile(source, target)
    with target.open("rb+") as handle:
        os.fsync(handle.fileno())
    return time.perf_counter() - started


def _md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb", buffering=0) as handle:
        while block := handle.read(4 * MiB):
            digest.update(block)
    return digest.hexdigest()


class _Peak:
    """The server's peak RSS growth over a transfer (kernel high-water mark, reset first)."""

    def __init__(self, pid: int) -> None:
        self.status = Path(f"/proc/{pid}/status")
        self.clear_refs = Path(f"/proc/{pid}/clear_refs")
        self.start = 0
        self.reset = False

    def _field(self, name: str) -> int:
        for line in self.status.read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
        return 0

    def __enter__(self) -> _Peak:
        try:
            self.clear_refs.write_text("5")
            self.reset = True
        except OSError:  # not ours to reset: the figure would be meaningless
            self.reset = False
        self.start = self._field("VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    @property
    def growth_mib(self) -> float:
        if not self.reset:
            return math.nan
        return (self._field("VmHWM") - self.start) / MiB


def _process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far, all its threads (``/proc/PID/stat``)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # after the command name, from field 3
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu_s() -> float:
    """User + system CPU seconds of this process's finished, reaped children (curl)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _CurlTransfer:
    """Transfers with the curl command (headers from a file: no token on a command line)."""

    def __init__(self, work: Path, headers: dict[str, str]) -> None:
        self.header_file = work / "curl-headers"
        self.header_file.write_text("".join(f"{k}: {v}\n" for k, v in headers.items()))
        self.header_file.chmod(0o600)

    async def _curl(self, *args: str) -> str:
        process = await asyncio.create_subprocess_exec(
            "curl", "-sS", "-H", f"@{self.header_file}", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"curl failed: {err.decode(errors='replace')}")
        return out.decode()

    async def upload(self, url: str, source: Path, size: int) -> None:
        status = await self._curl("-X", "PUT", "-T", str(source), "-H", "Expect:",
                                  "-H", "Content-Type: application/octet-stream",
                                  "-o", os.devnull, "-w", "%{http_code}", url)
        if status != "204":
            raise RuntimeError(f"upload answered {status}")

    async def download(self, url: str, target: Path) -> str | None:
        dump = self.header_file.with_name("curl-response-headers")
        status = await self._curl("-o", str(target), "-D", str(dump), "-w", "%{http_code}",
                                  url)
        if status != "200":
            raise RuntimeError(f"download answered {status}")
        for line in dump.read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-md5":
                return value.strip()
        return None


class _HttpxTransfer:
    def __init__(self, client: httpx.AsyncClient, headers: dict[str, str]) -> None:
        self.client = client
        self.headers = headers

    async def upload(self, url: str, source: Path, size: int) -> None:
        response = await self.client.put(
            url, content=_file_chunks(source),
            headers={**self.headers, "Content-Type": "application/octet-stream",
                     "Content-Length": str(size)})
        if response.status_code != 204:
            raise RuntimeError(f"upload answered {response.status_code}: "
                               f"{response.text[:300]}")

    async def download(self, url: str, target: Path) -> str | None:
        handle = await asyncio.to_thread(target.open, "wb", buffering=0)
        try:
            async with self.client.stream("GET", url, headers=self.headers) as download:
                download.raise_for_status()
                async for chunk in download.aiter_raw(4 * MiB):
                    await asyncio.to_thread(handle.write, chunk)
                return download.headers.get("content-md5")
        finally:
            handle.close()


def _hash_floor(source: Path, size: int) -> tuple[float, float]:
    """MB/s of MD5 and SHA-512 over ``size`` bytes at once on two threads (data in memory),
    and the CPU seconds per GiB the two threads spent."""
    import threading

    with source.open("rb") as handle:
        block = handle.read(4 * MiB)
    count = size // len(block)
    cpu: list[float] = []

    def run(name: str) -> None:
        started = time.thread_time()
        digest = hashlib.new(name)
        for _ in range(count):
            digest.update(block)
        cpu.append(time.thread_time() - started)

    threads = [threading.Thread(target=run, args=(n,)) for n in ("md5", "sha512")]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    gib = count * len(block) / (1024 * MiB)
    return count * len(block) / 1e6 / elapsed, sum(cpu) / gib


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    handle = await asyncio.to_thread(path.open, "rb", buffering=0)
    try:
        while chunk := await asyncio.to_thread(handle.read, 4 * MiB):
            yield chunk
    finally:
        handle.close()


def bounds(mb: float, hash_floor: float, upload_cpu_s: float, download_client_cpu_s: float,
           download_fsync_s: float, cores: int) -> dict[str, float]:
    """The fastest transfers of ``mb`` MB this machine allows (MB/s): the upload can beat
    neither the hash floor nor its measured CPU (server and client, ``upload_cpu_s``) spread
    on every core; the download can beat neither its client's CPU (one thread) nor that
    followed by the client's fsync."""
    cpu_bound = mb / (upload_cpu_s / cores)
    return {"upload_cpu_bound_mb_per_s": cpu_bound,
            "upload_bound_mb_per_s": min(hash_floor, cpu_bound),
            "download_bound_mb_per_s": mb / (download_client_cpu_s + download_fsync_s)}


async def _round(cloud: StratusUp, client: httpx.AsyncClient, headers: dict[str, str],
                 source: Path, work: Path, size: int, client_kind: str) -> dict[str, float]:
    images = f"{cloud.base_url}/image/v2/images"
    created = await client.post(images, headers=headers, json={
        "name": "bench", "disk_format": "raw", "container_format": "bare"})
    created.raise_for_status()
    image_id = created.json()["id"]
    copy_s = await asyncio.to_thread(_copy, source, work / "copy.bin")
    (work / "copy.bin").unlink()

    url = f"{images}/{image_id}/file"
    target = work / "download.bin"
    transfer = _CurlTransfer(work, headers) if client_kind == "curl" else \
        _HttpxTransfer(client, headers)
    with _Peak(cloud.pid) as upload_peak:
        server_cpu, client_cpu = _process_cpu_s(cloud.pid), _children_cpu_s()
        started = time.perf_counter()
        await transfer.upload(url, source, size)
        upload_s = time.perf_counter() - started
        upload_server_cpu = _process_cpu_s(cloud.pid) - server_cpu
        upload_client_cpu = _children_cpu_s() - client_cpu
    with _Peak(cloud.pid) as download_peak:
        server_cpu, client_cpu = _process_cpu_s(cloud.pid), _children_cpu_s()
        started = time.perf_counter()
        content_md5 = await transfer.download(url, target)
        received_at = time.perf_counter()
        await asyncio.to_thread(_fsync_path, target)
        download_s = time.perf_counter() - started
        download_fsync_s = time.perf_counter() - received_at
        download_server_cpu = _process_cpu_s(cloud.pid) - server_cpu
        download_client_cpu = _children_cpu_s() - client_cpu
    received = target.stat().st_size
    if received != size or await asyncio.to_thread(_md5_of, target) != content_md5:
        raise RuntimeError(f"download is wrong: {received} bytes, Content-MD5 {content_md5}")
    target.unlink()
    (await client.delete(f"{images}/{image_id}", headers=headers)).raise_for_status()
    mb, gib = size / 1e6, size / (1024 * MiB)
    hash_floor, hash_cpu = await asyncio.to_thread(_hash_floor, source, size)
    figures = {
        "copy_mb_per_s": mb / copy_s,
        "upload_mb_per_s": mb / upload_s,
        "download_mb_per_s": mb / download_s,
        "upload_peak_rss_growth_mib": upload_peak.growth_mib,
        "download_peak_rss_growth_mib": download_peak.growth_mib,
        "hash_floor_mb_per_s": hash_floor,
        "hash_cpu_s_per_gib": hash_cpu,
        "upload_server_cpu_s_per_gib": upload_server_cpu / gib,
        "upload_client_cpu_s_per_gib": (upload_client_cpu / gib if client_kind == "curl"
                                        else math.nan),
        "download_server_cpu_s_per_gib": download_server_cpu / gib,
        "download_client_cpu_s_per_gib": (download_client_cpu / gib if client_kind == "curl"
                                          else math.nan),
        "download_fsync_s_per_gib": download_fsync_s / gib,
    }
    figures["upload_server_cpu_over_hash_cpu"] = upload_server_cpu / gib / hash_cpu
    curl = client_kind == "curl"
    figures.update(bounds(
        mb, hash_floor, upload_server_cpu + (upload_client_cpu if curl else 0.0),
        download_client_cpu if curl else math.nan, download_fsync_s, os.cpu_count() or 1))
    figures["upload_over_bound"] = mb / upload_s / figures["upload_bound_mb_per_s"]
    figures["download_over_bound"] = mb / download_s / figures["download_bound_mb_per_s"]
    figures["upload_over_copy"] = copy_s / upload_s
    figures["download_over_copy"] = copy_s / download_s
    figures["upload_over_hash_floor"] = figures["upload_mb_per_s"] / figures[
        "hash_floor_mb_per_s"]
    figures["download_over_hash_floor"] = figures["download_mb_per_s"] / figures[
        "hash_floor_mb_per_s"]
    return figures


async def run(args: argparse.Namespace) -> Result:
    size = args.size_mib * MiB
    rounds: list[dict[str, float]] = []
    backends: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="stratus-bench-image-", dir=args.work_dir) as tmp:
        work = Path(tmp)
        source = work / "source.bin"
        _progress(f"writing a {args.size_mib} MiB source file in {work}")
        await asyncio.to_thread(_write_source, source, size)
        async with scratch_database(args.database_url) as database_url:
            cloud = StratusUp(work / "data", bcrypt_rounds=args.bcrypt_rounds,
                              database_url=database_url)
            async with cloud, httpx.AsyncClient(timeout=600) as client:
                password = cloud.admin_password()
                assert password is not None
                token = await issue_token(client, cloud.identity_url, password)
                headers = {"X-Auth-Token": token}
                for i in range(args.repeats):
                    figures = await _round(cloud, client, headers, source, work, size,
                                           args.client)
                    _progress(f"round {i + 1}/{args.repeats}: copy "
                              f"{figures['copy_mb_per_s']:.0f} MB/s, upload "
                              f"{figures['upload_mb_per_s']:.0f} MB/s, download "
                              f"{figures['download_mb_per_s']:.0f} MB/s; server CPU "
                              f"{figures['upload_server_cpu_s_per_gib']:.2f} s/GiB up, "
                              f"{figures['download_server_cpu_s_per_gib']:.2f} down; hashes "
                              f"{figures['hash_cpu_s_per_gib']:.2f}")
                    rounds.append(figures)
            backends = await database_info(database_url, work / "data" / "image.db")
        backends["filesystem"] = _filesystem(work)
    metrics: dict[str, float] = {}
    for name in ("copy_mb_per_s", "upload_mb_per_s", "download_mb_per_s",
                 "hash_floor_mb_per_s", "hash_cpu_s_per_gib", "upload_server_cpu_s_per_gib",
                 "upload_client_cpu_s_per_gib", "download_server_cpu_s_per_gib",
                 "download_client_cpu_s_per_gib", "download_fsync_s_per_gib",
                 "upload_server_cpu_over_hash_cpu", "upload_cpu_bound_mb_per_s",
                 "upload_bound_mb_per_s", "download_bound_mb_per_s"):
        metrics[name] = statistics.median(r[name] for r in rounds)
    for name in ("upload_over_copy", "download_over_copy", "upload_over_hash_floor",
                 "download_over_hash_floor", "upload_over_bound", "download_over_bound"):
        metrics[name] = statistics.median(r[name] for r in rounds)
    for name in ("upload_peak_rss_growth_mib", "download_peak_rss_growth_mib"):
        metrics[name] = max(r[name] for r in rounds)
    backends.update({"image_store": "file", "bcrypt_rounds": args.bcrypt_rounds,
                     "client": _client_version(args.client),
                     "http_server": "uvicorn, one process (stratus up)"})
    return Result(
        metrics=metrics,
        goals=[
            Goal("upload_over_copy", RATIO_GOAL, ">=",
                 "upload (hashing MD5 + SHA-512, fsync) vs copyfile + fsync, same disk"),
            Goal("download_over_copy", RATIO_GOAL, ">=",
                 "download into a file + fsync vs copyfile + fsync, same disk"),
            Goal("upload_over_bound", BOUND_GOAL, ">=",
                 "upload against the lower of the hash floor and the rate the measured CPU "
                 "of server and client allows on this machine's cores"),
            Goal("upload_server_cpu_over_hash_cpu", SERVER_CPU_OVER_HASHES_GOAL, "<=",
                 "the server's CPU for an upload beside the two hashes it must compute"),
            Goal("download_over_bound", BOUND_GOAL, ">=",
                 "download against the client's own CPU (one thread) and its fsync"),
            Goal("upload_peak_rss_growth_mib", RSS_GROWTH_GOAL_MIB, "<=",
                 "server process, largest over the rounds"),
            Goal("download_peak_rss_growth_mib", RSS_GROWTH_GOAL_MIB, "<=",
                 "server process, largest over the rounds"),
        ],
        backends=backends,
    )


def _client_version(kind: str) -> str:
    if kind == "httpx":
        return f"httpx {httpx.__version__} (in the benchmark process)"
    import subprocess

    first = subprocess.run(["curl", "--version"], capture_output=True, text=True).stdout
    return first.splitlines()[0] if first else "curl"


def _filesystem(path: Path) -> dict[str, Any]:
    """The file system the run wrote to (type and device), from /proc/mounts."""
    best: tuple[str, str, str] | None = None
    resolved = str(path.resolve())
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            device, mount, kind = line.split()[:3]
            inside = resolved == mount or resolved.startswith(mount.rstrip("/") + "/")
            if inside and (best is None or len(mount) > len(best[1])):
                best = (device, mount, kind)
    except OSError:
        return {}
    return {"device": best[0], "mount": best[1], "type": best[2]} if best else {}
