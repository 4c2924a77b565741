"""Ceph: image upload/download MB/s through ``stratus up --storage ceph`` against ``rbd
import``/``rbd export`` of the same file, and a volume from a 1 GiB image (a clone).

A single-node cluster is made by ``stratus ceph up`` in a scratch directory (or
``--ceph-dir`` names a running one, e.g. ``$(stratus data dir)/ceph``) and stopped at the end.
Per round:

* *rbd import* / *rbd export*: Ceph's own command line writes the source file into pool
  ``images`` as an RBD image and reads it back into a file (fsync-ed), as client.stratus;
* *upload* / *download*: ``PUT`` / ``GET /image/v2/images/{id}/file`` with curl (image store
  ``rbd``: the same pool, through librbd in the server);
* *ceiling*: ``rbd import`` while two threads hash the file with hashlib's MD5 and SHA-512
  (what no upload can skip, each with the best tool, at once), and the hashes alone:
  ``rbd_upload_ceiling_over_import`` is the best ``upload_over_rbd_import`` can be here,
  ``upload_over_rbd_ceiling`` the upload against it; ``*_cpu`` variants of both from CPU
  seconds (rbd, the OSD, the hash threads; the server and the OSD during the upload);
* *CPU*: user + system seconds per GiB, which other load on the machine hardly changes
  (the MB/s ratios move with it): the server's processes during the upload
  (``upload_server_cpu_s_per_gib``) against ``rbd import``'s plus ``md5sum``'s and
  ``sha512sum``'s of the file (``rbd_import_hashed_cpu_s_per_gib``: the hash floor's work);
  ``upload_cpu_over_hashed_rbd_import`` is their ratio (no goal; the OSD's CPU is in
  neither);
* *volume from image*: ``POST /volume/v3/{project}/volumes`` with the image, until the volume
  is ``available`` (a copy-on-write clone of the image's snapshot: the goal holds for any
  size).

* *s3 put* / *s3 get*: the file straight to the cluster's RADOS gateway and back with the
  ``s3`` store's own client (httpx, SigV4): a multipart upload read from disk in the store's
  parts (8 MiB, two at once: how any S3 client puts a large object) and one streamed ``GET``
  into a file (fsync-ed). That put computes SigV4's sha256 of each part (so does the s3
  store) but neither of Glance's hashes, which every upload must: *s3 put hashed* is the same
  put while ``md5sum`` and ``sha512sum`` read the file (``s3_upload_over_hashed_put``, the
  fair comparison, as ``upload_over_hashed_rbd_import`` is for RBD). CPU seconds per GiB:
  the put's (this process: read from the page cache, sha256, send; ``s3_put_cpu_s_per_gib``)
  plus md5sum's and sha512sum's (``s3_put_hashed_cpu_s_per_gib``) against the server's
  during the upload (``s3_upload_server_cpu_s_per_gib``: receiving from curl as well);
  ``s3_upload_cpu_over_hashed_put`` is their ratio (no goal; RGW's and the OSD's CPU are in
  neither: ``s3_put_cluster_cpu_s_per_gib`` and ``s3_upload_cluster_cpu_s_per_gib`` are
  theirs, ``s3_put_over_upload_total_cpu`` the ratio of the whole). The plain put is pinned
  (signed 8 MiB parts, two at once, as boto3 or the AWS CLI send over plain HTTP);
  *s3 put unsigned* is the same with ``UNSIGNED-PAYLOAD``, as the s3 store sends to a
  loopback gateway (no goal);
* *s3 upload* / *s3 download*: the same ``PUT``/``GET .../file`` with curl, to a second
  cloud whose image store is ``s3`` on that gateway.

* *boot from RBD* (``--boot-rounds``, 0 to leave out; needs libvirt): the test guest
  (``stratus.guest_image``, converted to raw) uploaded to a cloud on this cluster with
  ``compute.images_type = rbd`` (what ``stratus up --storage ceph`` sets: the root disk is a
  clone of the image's snapshot in pool ``vms``, checked with ``rbd info`` each boot), against
  the same guest (qcow2, as ``stratus.guest_image`` publishes it) on a second cloud with the
  default ``qcow2`` path (the host's image cache and an overlay). Both clouds run the libvirt
  driver and the linuxbridge network, one after the other; each makes one boot first (for
  the qcow2 path the one that fills the image cache: ``*_first_active_s``), then the rounds.
  POST ``/servers`` to ACTIVE is from the client's clock before the POST to the
  ``finish_time`` of the successful build event (as ``realboot``); each boot also waits for
  the guest's ``STRATUS-INIT`` line on its console (it ran from that disk).

Goals: upload and download at least 0.8x of ``rbd import``/``rbd export`` and of the plain
S3 put/get; the volume in at most 2 s; a boot from RBD no slower to ACTIVE than one on the
warm qcow2 path (ratio of the medians at most 1.0). ``boot_rbd_behind_qcow2_active_s`` is
that difference in seconds. ``boot_rbd_over_qcow2_first_active`` (each cloud's first boot:
the qcow2 path downloads the image into its cache, the RBD path never does) has no goal: one
sample each, and the test guest is too small (17 MiB) for the download to show.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import resource
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from benchmarks import Goal, Result
from benchmarks._cloud import StratusUp, issue_token
from benchmarks.image import _CurlTransfer, _fsync_path, _md5_of, _write_source

DESCRIPTION = ("Ceph: image upload/download through the rbd store against rbd import/export, "
               "and a volume from a 1 GiB image (a clone)")

MiB = 1024 * 1024
RATIO_GOAL = 0.8
VOLUME_GOAL_S = 2.0
BOOT_RATIO_GOAL = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size-mib", type=int, default=1024,
                        help="size of the image file in MiB (default 1024)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds; figures are medians (default 3)")
    parser.add_argument("--bcrypt-rounds", type=int, default=4,
                        help="bcrypt cost for stored passwords (default 4: not measured here)")
    parser.add_argument("--ceph-dir", type=Path, default=None,
                        help="a cluster `stratus ceph up` made and runs (default: a new one "
                             "in a scratch directory, stopped at the end)")
    parser.add_argument("--skip-rbd", action="store_true",
                        help="leave out the rbd store (upload, download, volume)")
    parser.add_argument("--skip-s3", action="store_true",
                        help="leave out the s3 store on the RADOS gateway")
    parser.add_argument("--boot-rounds", type=int, default=3,
                        help="boots of the test guest from RBD and on the qcow2 path, after "
                             "one boot each not counted; 0 leaves them out (they need "
                             "libvirt) (default 3)")
    parser.add_argument("--boot-timeout", type=float, default=300,
                        help="seconds a boot may take to print STRATUS-INIT (default 300)")


def _children_cpu() -> float:
    """CPU seconds (user + system) of this process's ended (waited-for) children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) so far of process ``pid`` and its live descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += stats.get(current, (0, 0.0))[1]
        todo.extend(child for child, (parent, _) in stats.items() if parent == current)
    return total


def _cluster_cpu(cluster: Any) -> float:
    """CPU seconds so far of the ``cluster``'s RADOS gateway and OSD (0 without one)."""
    if cluster is None:
        return 0.0
    return sum(_tree_cpu(pid) for pid, name in cluster.pids().items()
               if name.startswith(("osd.", "client.rgw.")))


def _progress(message: str) -> None:
    print(f"[ceph] {message}", file=sys.stderr, flush=True)


async def _run(*command: str, env: dict[str, str]) -> None:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env)
    _, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} failed: {err.decode(errors='replace')}")


def _hash_with(name: str, source: Path) -> float:
    """Hash ``source`` with ``name``: the CPU seconds this thread spent."""
    started = time.thread_time()
    digest = hashlib.new(name)
    buffer = bytearray(4 * MiB)
    view = memoryview(buffer)
    with source.open("rb", buffering=0) as handle:
        while count := handle.readinto(buffer):
            digest.update(view[:count])
    return time.thread_time() - started


async def _hash_file(source: Path) -> tuple[float, float]:
    """Seconds to hash ``source`` with MD5 and SHA-512 (Glance's two), each read by a
    thread of its own (the page cache's copy, one buffer reused): as the server's two hash
    threads do; and the two threads' CPU seconds."""
    started = time.perf_counter()
    cpu = await asyncio.gather(asyncio.to_thread(_hash_with, "md5", source),
                               asyncio.to_thread(_hash_with, "sha512", source))
    return time.perf_counter() - started, sum(cpu)


async def _rbd_round(cluster: Any, source: Path, work: Path, size: int) -> dict[str, float]:
    env = {**os.environ, "CEPH_CONF": str(cluster.conf)}
    auth = ["--id", "stratus", "--keyring", str(cluster.stratus_keyring)]
    name = f"bench-{uuid.uuid4().hex[:8]}"
    osd_cpu = await asyncio.to_thread(_cluster_cpu, cluster)
    started, cpu = time.perf_counter(), _children_cpu()
    await _run("rbd", *auth, "import", "--no-progress", str(source), f"images/{name}", env=env)
    import_s = time.perf_counter() - started
    import_cpu = _children_cpu() - cpu
    osd_cpu = await asyncio.to_thread(_cluster_cpu, cluster) - osd_cpu
    target = work / "export.bin"
    started = time.perf_counter()
    await _run("rbd", *auth, "export", "--no-progress", f"images/{name}", str(target), env=env)
    await asyncio.to_thread(_fsync_path, target)
    export_s = time.perf_counter() - started
    target.unlink()
    await _run("rbd", *auth, "rm", "--no-progress", f"images/{name}", env=env)
    # What an upload must also do: Glance's two hashes of the data (md5 ``checksum`` and
    # sha512 ``os_hash_value``), here by coreutils beside ``rbd import`` reading a pipe.
    hashed = f"{name}-hashed"
    started = time.perf_counter()
    await _run("bash", "-c", 'tee >(md5sum >/dev/null) >(sha512sum >/dev/null) < "$0" '
               '| rbd "${@:2}" import --no-progress - "$1"', str(source), f"images/{hashed}",
               *auth, env=env)
    hashed_s = time.perf_counter() - started
    await _run("rbd", *auth, "rm", "--no-progress", f"images/{hashed}", env=env)
    # The physical ceiling of an upload here: the work no upload can skip, each part with
    # the best tool for it, all at once on the machine's cores: ``rbd import`` of the file
    # while two threads of this process hash it with OpenSSL's MD5 and SHA-512 (hashlib,
    # as the server does), and the two hashes alone. An upload must also receive the data
    # over HTTP, which neither includes.
    started = time.perf_counter()
    hashing = asyncio.create_task(_hash_file(source))
    await _run("rbd", *auth, "import", "--no-progress", str(source),
               f"images/{hashed}-ceiling", env=env)
    await hashing
    ceiling_s = time.perf_counter() - started
    await _run("rbd", *auth, "rm", "--no-progress", f"images/{hashed}-ceiling", env=env)
    hashes_s, hashes_cpu = await _hash_file(source)
    # The same work's CPU, which the machine's load does not change: rbd import's, then
    # md5sum's and sha512sum's of the file (each run alone, so each is waited for).
    cpu = _children_cpu()
    await _run("md5sum", str(source), env=env)
    await _run("sha512sum", str(source), env=env)
    floor_cpu = import_cpu + _children_cpu() - cpu
    gib = size / (1 << 30)
    return {"rbd_import_mb_per_s": size / 1e6 / import_s,
            "rbd_import_hashed_mb_per_s": size / 1e6 / hashed_s,
            "rbd_import_with_hashes_mb_per_s": size / 1e6 / ceiling_s,
            "hashes_only_mb_per_s": size / 1e6 / hashes_s,
            "rbd_export_mb_per_s": size / 1e6 / export_s,
            "rbd_import_cpu_s_per_gib": import_cpu / gib,
            "rbd_import_osd_cpu_s_per_gib": osd_cpu / gib,
            "hashes_only_cpu_s_per_gib": hashes_cpu / gib,
            "rbd_import_hashed_cpu_s_per_gib": floor_cpu / gib}


async def _image_round_trip(client: httpx.AsyncClient, images: str, headers: dict[str, str],
                            source: Path, work: Path, size: int, name: str, pid: int,
                            cluster: Any = None) -> tuple[str, float, float, float, float]:
    """A new image ``name`` uploaded from ``source`` and downloaded again (fsync-ed, its MD5
    checked) with curl: its id, the upload and download seconds, and the CPU seconds the
    server (process ``pid`` and its children) and the ``cluster``'s gateway and OSD spent
    during the upload."""
    created = await client.post(images, headers=headers, json={
        "name": name, "disk_format": "raw", "container_format": "bare"})
    created.raise_for_status()
    image_id = str(created.json()["id"])
    transfer = _CurlTransfer(work, headers)
    url = f"{images}/{image_id}/file"
    cluster_cpu = await asyncio.to_thread(_cluster_cpu, cluster)
    started, cpu = time.perf_counter(), await asyncio.to_thread(_tree_cpu, pid)
    await transfer.upload(url, source, size)
    upload_s = time.perf_counter() - started
    upload_cpu = await asyncio.to_thread(_tree_cpu, pid) - cpu
    cluster_cpu = await asyncio.to_thread(_cluster_cpu, cluster) - cluster_cpu
    target = work / f"download-{name}.bin"
    started = time.perf_counter()
    content_md5 = await transfer.download(url, target)
    await asyncio.to_thread(_fsync_path, target)
    download_s = time.perf_counter() - started
    if await asyncio.to_thread(_md5_of, target) != content_md5:
        raise RuntimeError(f"the download of {name} is wrong")
    target.unlink()
    return image_id, upload_s, download_s, upload_cpu, cluster_cpu


async def _stratus_round(cloud: StratusUp, client: httpx.AsyncClient, headers: dict[str, str],
                         project: str, source: Path, work: Path, size: int,
                         cluster: Any) -> dict[str, float]:
    images = f"{cloud.base_url}/image/v2/images"
    image_id, upload_s, download_s, upload_cpu, osd_cpu = await _image_round_trip(
        client, images, headers, source, work, size, "bench", cloud.pid, cluster)

    volumes = f"{cloud.base_url}/volume/v3/{project}/volumes"
    gib = max(1, -(-size // (1 << 30)))
    started = time.perf_counter()
    made = await client.post(volumes, headers=headers, json={"volume": {
        "size": gib, "imageRef": image_id, "name": "bench"}})
    made.raise_for_status()
    volume_id = made.json()["volume"]["id"]
    while True:
        shown = (await client.get(f"{volumes}/{volume_id}", headers=headers)).json()["volume"]
        if shown["status"] == "available":
            break
        if shown["status"] == "error" or time.perf_counter() - started > 600:
            raise RuntimeError(f"volume {volume_id}: {shown['status']}")
        await asyncio.sleep(0.05)
    volume_s = time.perf_counter() - started
    (await client.delete(f"{volumes}/{volume_id}", headers=headers)).raise_for_status()
    while (await client.get(f"{volumes}/{volume_id}",  # noqa: ASYNC110 - polling the API
                            headers=headers)).status_code != 404:
        await asyncio.sleep(0.1)
    (await client.delete(f"{images}/{image_id}", headers=headers)).raise_for_status()
    return {"upload_mb_per_s": size / 1e6 / upload_s,
            "download_mb_per_s": size / 1e6 / download_s,
            "upload_server_cpu_s_per_gib": upload_cpu / (size / (1 << 30)),
            "upload_osd_cpu_s_per_gib": osd_cpu / (size / (1 << 30)),
            "volume_from_image_s": volume_s}


async def _s3_put(store: Any, source: Path) -> str:
    """``source`` into a new object with the store's client (multipart, its parts read from
    disk): its location."""
    writer = await store.writer(f"bench-{uuid.uuid4().hex[:8]}")
    with source.open("rb", buffering=0) as handle:
        while block := await asyncio.to_thread(handle.read, store.part_size):
            await writer.write(block)
    return str(await writer.commit())


async def _s3_plain_round(store: Any, unsigned: Any, source: Path, work: Path,
                          size: int, cluster: Any) -> dict[str, float]:
    gib = size / (1 << 30)
    cluster_cpu = await asyncio.to_thread(_cluster_cpu, cluster)
    started, cpu = time.perf_counter(), time.process_time()
    location = await _s3_put(store, source)
    put_s = time.perf_counter() - started
    put_cpu = time.process_time() - cpu
    cluster_cpu = await asyncio.to_thread(_cluster_cpu, cluster) - cluster_cpu
    target = work / "s3-get.bin"
    started = time.perf_counter()
    reader = await store.open(location)
    with target.open("wb") as handle:
        async for chunk in reader.chunks():
            await asyncio.to_thread(handle.write, chunk)
        await asyncio.to_thread(os.fsync, handle.fileno())
    get_s = time.perf_counter() - started
    if target.stat().st_size != size:
        raise RuntimeError("s3 get is short")
    target.unlink()
    await store.delete(location)
    # What an upload must also do: Glance's two hashes (md5 ``checksum``, sha512
    # ``os_hash_value``), here md5sum and sha512sum reading the file beside the put (the
    # plain put computes only SigV4's sha256 of each part, as the upload does too).
    env = dict(os.environ)
    started = time.perf_counter()
    hashers = [asyncio.create_task(_run(tool, str(source), env=env))
               for tool in ("md5sum", "sha512sum")]
    location = await _s3_put(store, source)
    await asyncio.gather(*hashers)
    hashed_s = time.perf_counter() - started
    await store.delete(location)
    # The same client sending ``UNSIGNED-PAYLOAD`` (what the s3 store does to a loopback
    # gateway): no sha256 of the parts here nor in the gateway; no goal, for comparison.
    started = time.perf_counter()
    location = await _s3_put(unsigned, source)
    unsigned_s = time.perf_counter() - started
    await unsigned.delete(location)
    cpu = _children_cpu()  # the hashes' CPU, each run alone so that each is waited for
    await _run("md5sum", str(source), env=env)
    await _run("sha512sum", str(source), env=env)
    hashes_cpu = _children_cpu() - cpu
    return {"s3_put_mb_per_s": size / 1e6 / put_s, "s3_get_mb_per_s": size / 1e6 / get_s,
            "s3_put_hashed_mb_per_s": size / 1e6 / hashed_s,
            "s3_put_unsigned_mb_per_s": size / 1e6 / unsigned_s,
            "s3_put_cpu_s_per_gib": put_cpu / gib,
            "s3_put_cluster_cpu_s_per_gib": cluster_cpu / gib,
            "s3_put_hashed_cpu_s_per_gib": (put_cpu + hashes_cpu) / gib}


async def _rgw_gc(cluster: Any) -> None:
    """Reclaim the space of the objects deleted so far now: RGW's garbage collector waits
    hours by default, and three 1 GiB objects a round fill the dev cluster's 10 GiB OSD
    within three rounds (a full OSD stops every write). Untimed, between rounds."""
    env = {**os.environ, "CEPH_CONF": str(cluster.conf)}
    await _run("radosgw-admin", "--keyring", str(cluster.admin_keyring), "gc", "process",
               "--include-all", env=env)


async def _s3_stratus_round(cloud: StratusUp, client: httpx.AsyncClient,
                            headers: dict[str, str], source: Path, work: Path,
                            size: int, cluster: Any) -> dict[str, float]:
    images = f"{cloud.base_url}/image/v2/images"
    image_id, upload_s, download_s, upload_cpu, cluster_cpu = await _image_round_trip(
        client, images, headers, source, work, size, "bench-s3", cloud.pid, cluster)
    (await client.delete(f"{images}/{image_id}", headers=headers)).raise_for_status()
    return {"s3_upload_mb_per_s": size / 1e6 / upload_s,
            "s3_download_mb_per_s": size / 1e6 / download_s,
            "s3_upload_server_cpu_s_per_gib": upload_cpu / (size / (1 << 30)),
            "s3_upload_cluster_cpu_s_per_gib": cluster_cpu / (size / (1 << 30))}


async def _s3_rounds(cluster: Any, args: argparse.Namespace, source: Path, work: Path,
                     size: int) -> list[dict[str, float]]:
    from pydantic import SecretStr

    from stratus.image.stores.s3 import S3Store

    s3 = cluster.s3()
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    # The plain put signs each part's body (SigV4's sha256), as S3 clients (boto3, the AWS
    # CLI) do over plain HTTP; the store's defaults are pinned: 8 MiB parts, two at once.
    store = S3Store(s3.endpoint, SecretStr(s3.access_key), SecretStr(s3.secret_key),
                    bucket=bucket, part_size=8 * MiB, concurrency=2, sign_payload=True)
    unsigned = S3Store(s3.endpoint, SecretStr(s3.access_key), SecretStr(s3.secret_key),
                       bucket=bucket, part_size=8 * MiB, concurrency=2, sign_payload=False)
    await store.start()
    env = {"STRATUS_IMAGE__STORE": "s3", "STRATUS_IMAGE__S3_STORE_HOST": s3.endpoint,
           "STRATUS_IMAGE__S3_STORE_ACCESS_KEY": s3.access_key,
           "STRATUS_IMAGE__S3_STORE_SECRET_KEY": s3.secret_key,
           "STRATUS_IMAGE__S3_STORE_BUCKET": bucket, "STRATUS_COMPUTE__VIRT_DRIVER": "fake",
           "STRATUS_NETWORK__BACKEND": "noop"}
    rounds = []
    try:
        cloud = StratusUp(work / "data-s3", bcrypt_rounds=args.bcrypt_rounds, env=env)
        async with cloud, httpx.AsyncClient(timeout=600) as client:
            password = cloud.admin_password()
            assert password is not None
            token = await issue_token(client, cloud.identity_url, password)
            headers = {"X-Auth-Token": token}
            for i in range(args.repeats):
                await _rgw_gc(cluster)  # what earlier rounds (and runs on --ceph-dir) deleted
                figures = await _s3_plain_round(store, unsigned, source, work, size, cluster)
                figures.update(await _s3_stratus_round(cloud, client, headers, source, work,
                                                       size, cluster))
                figures["s3_upload_over_put"] = (figures["s3_upload_mb_per_s"]
                                                 / figures["s3_put_mb_per_s"])
                figures["s3_upload_over_unsigned_put"] = (
                    figures["s3_upload_mb_per_s"] / figures["s3_put_unsigned_mb_per_s"])
                figures["s3_upload_over_hashed_put"] = (figures["s3_upload_mb_per_s"]
                                                        / figures["s3_put_hashed_mb_per_s"])
                figures["s3_upload_cpu_over_hashed_put"] = (
                    figures["s3_upload_server_cpu_s_per_gib"]
                    / figures["s3_put_hashed_cpu_s_per_gib"])
                # What the MB/s ratio tends to on a machine whose cores are all busy: the
                # put's CPU (client, gateway, OSD) over the upload's (server, gateway, OSD).
                figures["s3_put_over_upload_total_cpu"] = (
                    (figures["s3_put_cpu_s_per_gib"] + figures["s3_put_cluster_cpu_s_per_gib"])
                    / (figures["s3_upload_server_cpu_s_per_gib"]
                       + figures["s3_upload_cluster_cpu_s_per_gib"]))
                figures["s3_download_over_get"] = (figures["s3_download_mb_per_s"]
                                                   / figures["s3_get_mb_per_s"])
                _progress(f"s3 round {i + 1}/{args.repeats}: " + ", ".join(
                    f"{k} {v:.2f}" for k, v in figures.items()))
                rounds.append(figures)
    finally:
        await store.client.call("DELETE", bucket, what="bucket removal", ok=(204, 404, 409))
        await store.stop()
        await unsigned.stop()
    return rounds


async def _rbd_parent(cluster: Any, name: str) -> str | None:
    """``pool/image`` of the RBD image ``name``'s parent (None: not a clone)."""
    env = {**os.environ, "CEPH_CONF": str(cluster.conf)}
    process = await asyncio.create_subprocess_exec(
        "rbd", "--id", "stratus", "--keyring", str(cluster.stratus_keyring), "info",
        "--format", "json", name, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env)
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"rbd info {name} failed: {err.decode(errors='replace')}")
    parent = json.loads(out).get("parent")
    return f"{parent['pool']}/{parent['image']}" if parent else None


async def _wait_line(path: Path, line: str, started: float, within: float) -> float:
    """Seconds from ``started`` (epoch) until ``line`` appears in the console log ``path``."""
    deadline = time.monotonic() + within
    text = ""
    while time.monotonic() < deadline:
        try:
            text = await asyncio.to_thread(path.read_text, errors="replace")
        except FileNotFoundError:
            text = ""
        if line in text:
            return time.time() - started
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{line} not on {path} within {within:.0f} s:\n{text[-1500:]}")


async def _boots(args: argparse.Namespace, data: Path, env: dict[str, str], image: Path,
                 disk_format: str, cluster: Any | None) -> dict[str, list[float]]:
    """A cloud of ``env`` with ``image`` uploaded; one boot, then ``--boot-rounds`` boots,
    one at a time. ``cluster`` given: each root disk must be a clone of the image in RBD."""
    from benchmarks.realboot import _gone, _recorded_active

    api = "/compute/v2.1"
    found: dict[str, list[float]] = {"first_active": [], "active": [], "init": []}
    cloud = StratusUp(data, bcrypt_rounds=args.bcrypt_rounds, env=env)
    async with cloud, httpx.AsyncClient(base_url=cloud.base_url, timeout=120) as client:
        password = cloud.admin_password()
        assert password is not None
        token = await issue_token(client, cloud.identity_url, password)
        headers = {"X-Auth-Token": token, "OpenStack-API-Version": "compute 2.79"}
        created = await client.post("/image/v2/images", headers=headers, json={
            "name": f"bench-guest-{disk_format}", "disk_format": disk_format,
            "container_format": "bare", "min_ram": 128})
        created.raise_for_status()
        image_id = created.json()["id"]
        size = (await asyncio.to_thread(image.stat)).st_size
        await _CurlTransfer(data, headers).upload(
            f"{cloud.base_url}/image/v2/images/{image_id}/file", image, size)
        networks = (await client.get("/network/v2.0/networks", headers=headers,
                                     params={"name": "private"})).json()["networks"]
        if not networks:
            raise RuntimeError("the cloud has no network named private")
        body = {"server": {"imageRef": image_id, "flavorRef": "1",  # m1.tiny
                           "networks": [{"uuid": networks[0]["id"]}]}}
        for n in range(args.boot_rounds + 1):
            body["server"]["name"] = f"bench-boot-{n}"
            posted = time.time()
            response = await client.post(f"{api}/servers", headers=headers, json=body)
            if response.status_code != 202:
                raise RuntimeError(f"POST /servers answered {response.status_code}: "
                                   f"{response.text[:300]}")
            server_id = response.json()["server"]["id"]
            try:
                active = await _recorded_active(client, headers, server_id) - posted
                if cluster is not None:
                    parent = await _rbd_parent(cluster, f"vms/{server_id}_disk")
                    if parent != f"images/{image_id}":
                        raise RuntimeError(f"root disk of {server_id}: parent {parent}, not "
                                           f"a clone of images/{image_id}")
                init = await _wait_line(data / "instances" / server_id / "console.log",
                                        "STRATUS-INIT", posted, args.boot_timeout)
            finally:
                await client.delete(f"{api}/servers/{server_id}", headers=headers)
                await _gone(client, headers, server_id)
            found["first_active" if n == 0 else "active"].append(active)
            if n:
                found["init"].append(init)
            _progress(f"{disk_format} boot {n}/{args.boot_rounds}: ACTIVE after {active:.2f} s, "
                      f"STRATUS-INIT after {init:.1f} s")
        (await client.delete(f"/image/v2/images/{image_id}", headers=headers)).raise_for_status()
    return found


def _virt_type() -> str:
    from stratus.compute.virt.libvirt import host

    return str(host.virt_type())


async def _boot_figures(cluster: Any, args: argparse.Namespace,
                        work: Path) -> dict[str, float]:
    """The test guest booted from RBD, then on the qcow2 path (see the module's text)."""
    from stratus.compute.virt.libvirt import host
    from stratus.guest_image import ensure_image

    reason = host.usable()
    if reason is not None:
        raise RuntimeError(f"libvirt is not usable here ({reason}): use --boot-rounds 0")
    cache = Path(os.environ.get("STRATUS_TEST_CACHE")
                 or Path.home() / ".cache" / "stratus-tests") / "guest-image"
    qcow2 = await asyncio.to_thread(ensure_image, cache)
    raw = work / "guest.raw"  # RBD root disks are clones of raw images only
    await _run("qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(qcow2), str(raw),
               env=dict(os.environ))
    common = {"STRATUS_COMPUTE__VIRT_DRIVER": "libvirt",
              "STRATUS_NETWORK__BACKEND": "linuxbridge", "STRATUS_CONFIG_FILE": "/nonexistent"}
    ceph = {k: v for k, v in cluster.env().items() if k.startswith("STRATUS_CEPH__")}
    on_rbd = await _boots(args, work / "boot-rbd", {
        **common, **ceph, "STRATUS_IMAGE__STORE": "rbd", "STRATUS_VOLUME__BACKEND": "rbd",
        "STRATUS_COMPUTE__IMAGES_TYPE": "rbd"}, raw, "raw", cluster)
    on_qcow2 = await _boots(args, work / "boot-qcow2", {
        **common, "STRATUS_COMPUTE__IMAGES_TYPE": "qcow2"}, qcow2, "qcow2", None)
    figures: dict[str, float] = {}
    for path, found in (("rbd", on_rbd), ("qcow2", on_qcow2)):
        figures[f"boot_{path}_first_active_s"] = found["first_active"][0]
        figures[f"boot_{path}_active_p50_s"] = statistics.median(found["active"])
        figures[f"boot_{path}_init_p50_s"] = statistics.median(found["init"])
    figures["boot_rbd_over_qcow2_active"] = (figures["boot_rbd_active_p50_s"]
                                             / figures["boot_qcow2_active_p50_s"])
    figures["boot_rbd_over_qcow2_first_active"] = (figures["boot_rbd_first_active_s"]
                                                   / figures["boot_qcow2_first_active_s"])
    figures["boot_rbd_behind_qcow2_active_s"] = (figures["boot_rbd_active_p50_s"]
                                                 - figures["boot_qcow2_active_p50_s"])
    figures["boot_rounds"] = float(args.boot_rounds)
    return figures


async def _rbd_rounds(cluster: Any, args: argparse.Namespace, source: Path, work: Path,
                      size: int) -> list[dict[str, float]]:
    rounds: list[dict[str, float]] = []
    env = {k: v for k, v in cluster.env().items() if k.startswith("STRATUS_CEPH__")}
    env.update({"STRATUS_IMAGE__STORE": "rbd", "STRATUS_VOLUME__BACKEND": "rbd",
                "STRATUS_COMPUTE__VIRT_DRIVER": "fake",
                "STRATUS_NETWORK__BACKEND": "noop"})
    cloud = StratusUp(work / "data", bcrypt_rounds=args.bcrypt_rounds, env=env)
    async with cloud, httpx.AsyncClient(timeout=600) as client:
        password = cloud.admin_password()
        assert password is not None
        token = await issue_token(client, cloud.identity_url, password)
        headers = {"X-Auth-Token": token}
        project = (await client.get(f"{cloud.identity_url}/auth/tokens", headers={
            **headers, "X-Subject-Token": token})).json()["token"]["project"]["id"]
        for i in range(args.repeats):
            figures = await _rbd_round(cluster, source, work, size)
            figures.update(await _stratus_round(cloud, client, headers, project,
                                                source, work, size, cluster))
            figures["upload_over_rbd_import"] = (figures["upload_mb_per_s"]
                                                 / figures["rbd_import_mb_per_s"])
            figures["rbd_upload_ceiling_over_import"] = (
                figures["rbd_import_with_hashes_mb_per_s"]
                / figures["rbd_import_mb_per_s"])
            figures["upload_over_rbd_ceiling"] = (
                figures["upload_mb_per_s"] / figures["rbd_import_with_hashes_mb_per_s"])
            # The same in CPU (what the MB/s ratios tend to when every core is busy):
            # import's (rbd + OSD) over the ceiling's (plus the two hashes) and over the
            # upload's (server + OSD).
            import_total = (figures["rbd_import_cpu_s_per_gib"]
                            + figures["rbd_import_osd_cpu_s_per_gib"])
            figures["rbd_upload_ceiling_over_import_cpu"] = import_total / (
                import_total + figures["hashes_only_cpu_s_per_gib"])
            figures["rbd_import_over_upload_total_cpu"] = import_total / (
                figures["upload_server_cpu_s_per_gib"] + figures["upload_osd_cpu_s_per_gib"])
            figures["upload_over_hashed_rbd_import"] = (
                figures["upload_mb_per_s"] / figures["rbd_import_hashed_mb_per_s"])
            figures["upload_cpu_over_hashed_rbd_import"] = (
                figures["upload_server_cpu_s_per_gib"]
                / figures["rbd_import_hashed_cpu_s_per_gib"])
            figures["download_over_rbd_export"] = (figures["download_mb_per_s"]
                                                   / figures["rbd_export_mb_per_s"])
            _progress(f"round {i + 1}/{args.repeats}: " + ", ".join(
                f"{k} {v:.2f}" for k, v in figures.items()))
            rounds.append(figures)
    return rounds


async def run(args: argparse.Namespace) -> Result:
    from stratus.core.ceph_dev import DevCluster

    size = args.size_mib * MiB
    rounds: list[dict[str, float]] = []
    boot_figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="stratus-bench-ceph-") as tmp:
        work = Path(tmp)
        own = args.ceph_dir is None
        cluster = DevCluster(args.ceph_dir or Path(f"/tmp/sbc-{uuid.uuid4().hex[:8]}"))
        try:
            _progress(f"starting Ceph in {cluster.dir}")
            await asyncio.to_thread(cluster.up)
            source = work / "source.bin"
            _progress(f"writing a {args.size_mib} MiB source file")
            await asyncio.to_thread(_write_source, source, size)
            if not args.skip_rbd:
                rounds = await _rbd_rounds(cluster, args, source, work, size)
            if not args.skip_s3:
                s3_rounds = await _s3_rounds(cluster, args, source, work, size)
                if not rounds:
                    rounds = [{} for _ in s3_rounds]
                for figures, s3_figures in zip(rounds, s3_rounds, strict=True):
                    figures.update(s3_figures)
            if args.boot_rounds > 0:
                boot_figures = await _boot_figures(cluster, args, work)
        finally:
            if own:
                await asyncio.to_thread(cluster.down, purge=True)
    metrics = {name: statistics.median(r[name] for r in rounds) for name in rounds[0]}
    metrics.update(boot_figures)  # medians already
    return Result(
        metrics=metrics,
        goals=[
            *([] if args.skip_rbd else [
                Goal("upload_over_rbd_import", RATIO_GOAL, ">=",
                     "PUT .../file into the rbd store vs rbd import of the same file"),
                Goal("upload_over_hashed_rbd_import", RATIO_GOAL, ">=",
                     "the same upload vs rbd import while md5sum and sha512sum read the file "
                     "(the hashes every image upload computes)"),
                Goal("download_over_rbd_export", RATIO_GOAL, ">=",
                     "GET .../file from the rbd store vs rbd export + fsync"),
                Goal("volume_from_image_s", VOLUME_GOAL_S, "<=",
                     "POST volume with imageRef until available: a clone, any size"),
            ]),
            *([] if args.skip_s3 else [
                Goal("s3_upload_over_put", RATIO_GOAL, ">=",
                     "PUT .../file into the s3 store (RGW) vs the store client's own "
                     "multipart put of the file"),
                Goal("s3_upload_over_hashed_put", RATIO_GOAL, ">=",
                     "the same upload vs that put while md5sum and sha512sum read the file "
                     "(the hashes every image upload computes; the put's own are SigV4's "
                     "sha256 of each part, which the upload skips on loopback)"),
                Goal("s3_download_over_get", RATIO_GOAL, ">=",
                     "GET .../file from the s3 store vs one S3 GET + fsync, same client"),
            ]),
            *([] if not boot_figures else [
                Goal("boot_rbd_over_qcow2_active", BOOT_RATIO_GOAL, "<=",
                     "POST /servers to ACTIVE, root disk an RBD clone (images_type rbd) vs "
                     "the qcow2 path with the image cached (medians)"),
            ]),
        ],
        backends={"image_store": ("s3 (RGW)" if args.skip_rbd else "rbd" if args.skip_s3
                                  else "rbd, then s3 (RGW)"),
                  "volume_backend": "rbd",
                  "ceph": "single-node (stratus ceph up): 1 mon, 1 mgr, 1 bluestore OSD",
                  "client": "curl", "bcrypt_rounds": args.bcrypt_rounds,
                  **({} if not boot_figures else {
                      "boot": "libvirt + linuxbridge, test guest on m1.tiny; images_type rbd "
                              "(raw image in pool images) vs qcow2 (file store, image cache)",
                      "virt_type": _virt_type()})},
    )
