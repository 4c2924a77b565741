"""Ceph: image upload/download MB/s through ``stratus up --storage ceph`` against ``rbd
import``/``rbd export`` of the same file, and a volume from a 1 GiB image (a clone).

A single-node cluster is made by ``stratus ceph up`` in a scratch directory (or
``--ceph-dir`` names a running one, e.g. ``$(stratus data dir)/ceph``) and stopped at the end.
Per round:

* *rbd import* / *rbd export*: Ceph's own command line writes the source file into pool
  ``images`` as an RBD image and reads it back into a file (fsync-ed), as client.stratus;
* *upload* / *download*: ``PUT`` / ``GET /image/v2/images/{id}/file`` with curl (image store
  ``rbd``: the same pool, through librbd in the server);
* *volume from image*: ``POST /volume/v3/{project}/volumes`` with the image, until the volume
  is ``available`` (a copy-on-write clone of the image's snapshot: the goal holds for any
  size).

* *s3 put* / *s3 get*: the file straight to the cluster's RADOS gateway and back with the
  ``s3`` store's own client (httpx, SigV4): a multipart upload read from disk in the store's
  parts (8 MiB, two at once: how any S3 client puts a large object) and one streamed ``GET``
  into a file (fsync-ed);
* *s3 upload* / *s3 download*: the same ``PUT``/``GET .../file`` with curl, to a second
  cloud whose image store is ``s3`` on that gateway.

Goals: upload and download at least 0.8x of ``rbd import``/``rbd export`` and of the plain
S3 put/get; the volume in at most 2 s. Not measured here: booting from RBD.
"""

from __future__ import annotations

import argparse
import asyncio
import os
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
    parser.add_argument("--skip-s3", action="store_true",
                        help="leave out the s3 store on the RADOS gateway")


def _progress(message: str) -> None:
    print(f"[ceph] {message}", file=sys.stderr, flush=True)


async def _run(*command: str, env: dict[str, str]) -> None:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env)
    _, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} failed: {err.decode(errors='replace')}")


async def _rbd_round(cluster: Any, source: Path, work: Path, size: int) -> dict[str, float]:
    env = {**os.environ, "CEPH_CONF": str(cluster.conf)}
    auth = ["--id", "stratus", "--keyring", str(cluster.stratus_keyring)]
    name = f"bench-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    await _run("rbd", *auth, "import", "--no-progress", str(source), f"images/{name}", env=env)
    import_s = time.perf_counter() - started
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
    return {"rbd_import_mb_per_s": size / 1e6 / import_s,
            "rbd_import_hashed_mb_per_s": size / 1e6 / hashed_s,
            "rbd_export_mb_per_s": size / 1e6 / export_s}


async def _stratus_round(cloud: StratusUp, client: httpx.AsyncClient, headers: dict[str, str],
                         project: str, source: Path, work: Path,
                         size: int) -> dict[str, float]:
    images = f"{cloud.base_url}/image/v2/images"
    created = await client.post(images, headers=headers, json={
        "name": "bench", "disk_format": "raw", "container_format": "bare"})
    created.raise_for_status()
    image_id = created.json()["id"]
    transfer = _CurlTransfer(work, headers)
    url = f"{images}/{image_id}/file"
    started = time.perf_counter()
    await transfer.upload(url, source, size)
    upload_s = time.perf_counter() - started
    target = work / "download.bin"
    started = time.perf_counter()
    content_md5 = await transfer.download(url, target)
    await asyncio.to_thread(_fsync_path, target)
    download_s = time.perf_counter() - started
    if await asyncio.to_thread(_md5_of, target) != content_md5:
        raise RuntimeError("download is wrong")
    target.unlink()

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
            "volume_from_image_s": volume_s}


async def _s3_plain_round(store: Any, source: Path, work: Path,
                          size: int) -> dict[str, float]:
    key = f"bench-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    writer = await store.writer(key)
    with source.open("rb", buffering=0) as handle:
        while block := await asyncio.to_thread(handle.read, store.part_size):
            await writer.write(block)
    location = await writer.commit()
    put_s = time.perf_counter() - started
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
    return {"s3_put_mb_per_s": size / 1e6 / put_s, "s3_get_mb_per_s": size / 1e6 / get_s}


async def _s3_stratus_round(cloud: StratusUp, client: httpx.AsyncClient,
                            headers: dict[str, str], source: Path, work: Path,
                            size: int) -> dict[str, float]:
    images = f"{cloud.base_url}/image/v2/images"
    created = await client.post(images, headers=headers, json={
        "name": "bench-s3", "disk_format": "raw", "container_format": "bare"})
    created.raise_for_status()
    image_id = created.json()["id"]
    transfer = _CurlTransfer(work, headers)
    url = f"{images}/{image_id}/file"
    started = time.perf_counter()
    await transfer.upload(url, source, size)
    upload_s = time.perf_counter() - started
    target = work / "download-s3.bin"
    started = time.perf_counter()
    content_md5 = await transfer.download(url, target)
    await asyncio.to_thread(_fsync_path, target)
    download_s = time.perf_counter() - started
    if await asyncio.to_thread(_md5_of, target) != content_md5:
        raise RuntimeError("s3 download is wrong")
    target.unlink()
    (await client.delete(f"{images}/{image_id}", headers=headers)).raise_for_status()
    return {"s3_upload_mb_per_s": size / 1e6 / upload_s,
            "s3_download_mb_per_s": size / 1e6 / download_s}


async def _s3_rounds(cluster: Any, args: argparse.Namespace, source: Path, work: Path,
                     size: int) -> list[dict[str, float]]:
    from pydantic import SecretStr

    from stratus.image.stores.s3 import S3Store

    s3 = cluster.s3()
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    store = S3Store(s3.endpoint, SecretStr(s3.access_key), SecretStr(s3.secret_key),
                    bucket=bucket)
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
                figures = await _s3_plain_round(store, source, work, size)
                figures.update(await _s3_stratus_round(cloud, client, headers, source, work,
                                                       size))
                figures["s3_upload_over_put"] = (figures["s3_upload_mb_per_s"]
                                                 / figures["s3_put_mb_per_s"])
                figures["s3_download_over_get"] = (figures["s3_download_mb_per_s"]
                                                   / figures["s3_get_mb_per_s"])
                _progress(f"s3 round {i + 1}/{args.repeats}: " + ", ".join(
                    f"{k} {v:.2f}" for k, v in figures.items()))
                rounds.append(figures)
    finally:
        await store.client.call("DELETE", bucket, what="bucket removal", ok=(204, 404, 409))
        await store.stop()
    return rounds


async def run(args: argparse.Namespace) -> Result:
    from stratus.core.ceph_dev import DevCluster

    size = args.size_mib * MiB
    rounds: list[dict[str, float]] = []
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
                                                        source, work, size))
                    figures["upload_over_rbd_import"] = (figures["upload_mb_per_s"]
                                                         / figures["rbd_import_mb_per_s"])
                    figures["upload_over_hashed_rbd_import"] = (
                        figures["upload_mb_per_s"] / figures["rbd_import_hashed_mb_per_s"])
                    figures["download_over_rbd_export"] = (figures["download_mb_per_s"]
                                                           / figures["rbd_export_mb_per_s"])
                    _progress(f"round {i + 1}/{args.repeats}: " + ", ".join(
                        f"{k} {v:.2f}" for k, v in figures.items()))
                    rounds.append(figures)
            if not args.skip_s3:
                for figures, s3_figures in zip(
                        rounds, await _s3_rounds(cluster, args, source, work, size),
                        strict=True):
                    figures.update(s3_figures)
        finally:
            if own:
                await asyncio.to_thread(cluster.down, purge=True)
    metrics = {name: statistics.median(r[name] for r in rounds) for name in rounds[0]}
    return Result(
        metrics=metrics,
        goals=[
            Goal("upload_over_rbd_import", RATIO_GOAL, ">=",
                 "PUT .../file into the rbd store vs rbd import of the same file"),
            Goal("upload_over_hashed_rbd_import", RATIO_GOAL, ">=",
                 "the same upload vs rbd import while md5sum and sha512sum read the file "
                 "(the hashes every image upload computes)"),
            Goal("download_over_rbd_export", RATIO_GOAL, ">=",
                 "GET .../file from the rbd store vs rbd export + fsync"),
            Goal("volume_from_image_s", VOLUME_GOAL_S, "<=",
                 "POST volume with imageRef until available: a clone, any size"),
            *([] if args.skip_s3 else [
                Goal("s3_upload_over_put", RATIO_GOAL, ">=",
                     "PUT .../file into the s3 store (RGW) vs the store client's own "
                     "multipart put of the file"),
                Goal("s3_download_over_get", RATIO_GOAL, ">=",
                     "GET .../file from the s3 store vs one S3 GET + fsync, same client"),
            ]),
        ],
        backends={"image_store": "rbd" if args.skip_s3 else "rbd, then s3 (RGW)",
                  "volume_backend": "rbd",
                  "ceph": "single-node (stratus ceph up): 1 mon, 1 mgr, 1 bluestore OSD",
                  "client": "curl", "bcrypt_rounds": args.bcrypt_rounds},
    )
