"""The real ``openstack`` CLI on the ``s3`` image store, on the run's real Ceph RADOS gateway."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import signal
import subprocess
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from stratus.core.ceph_dev import DevCluster
from stratus.image.stores.s3 import S3Client
from tests.e2e.cloud import Cloud, base_env, free_port, running_cloud

pytestmark = pytest.mark.e2e

MiB = 1 << 20
NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def _s3(cluster: DevCluster, endpoint: str | None = None) -> S3Client:
    s3 = cluster.s3()
    return S3Client(endpoint or s3.endpoint, SecretStr(s3.access_key), SecretStr(s3.secret_key))


def _call(client: S3Client, method: str, bucket: str, key: str = "",
          params: list[tuple[str, str]] | None = None) -> httpx.Response:
    async def go() -> httpx.Response:
        try:
            return await client.send(client.build(method, bucket, key, params or []))
        finally:
            await client.aclose()
    return asyncio.run(go())


def _uploads(cluster: DevCluster, bucket: str, endpoint: str | None = None) -> list[str]:
    listed = _call(_s3(cluster, endpoint), "GET", bucket, params=[("uploads", "")])
    assert listed.status_code == 200, listed.text
    return [u.findtext(f"{NS}Key") or "" for u in ET.fromstring(listed.content).iter(
        f"{NS}Upload")]


def _keys(cluster: DevCluster, bucket: str, endpoint: str | None = None) -> list[str]:
    listed = _call(_s3(cluster, endpoint), "GET", bucket)
    assert listed.status_code == 200, listed.text
    return [c.findtext(f"{NS}Key") or "" for c in ET.fromstring(listed.content).iter(
        f"{NS}Contents")]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(MiB):
            digest.update(block)
    return digest.hexdigest()


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@contextlib.contextmanager
def _peak_rss(pid: int) -> Iterator[list[int]]:
    """Samples the process's RSS every 20 ms while the block runs: [baseline, peak]."""
    figures = [_rss(pid), 0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            figures[1] = max(figures[1], _rss(pid))
            done.wait(0.02)

    thread = threading.Thread(target=sample)
    thread.start()
    try:
        yield figures
    finally:
        done.set()
        thread.join()


def _no_credentials(cluster: DevCluster, *texts: str, data_dir: Path | None = None) -> None:
    s3 = cluster.s3()
    for text in texts:
        assert s3.access_key not in text and s3.secret_key not in text
    for path in (data_dir.rglob("*") if data_dir else ()):
        if path.is_file():
            content = path.read_bytes()
            assert s3.access_key.encode() not in content, path
            assert s3.secret_key.encode() not in content, path


def test_images_on_rgw_stream_in_parts_with_bounded_memory(
        tmp_path: Path, ceph_cluster: DevCluster) -> None:
    bucket = f"img-{uuid.uuid4().hex[:12]}"
    # A multipart upload left behind by a crash, before the store starts.
    assert _call(_s3(ceph_cluster), "PUT", bucket).status_code == 200
    assert _call(_s3(ceph_cluster), "POST", bucket, "crashed",
                 [("uploads", "")]).status_code == 200
    assert _uploads(ceph_cluster, bucket) == ["crashed"]
    time.sleep(1.1)

    env = {k: v for k, v in ceph_cluster.env().items() if k.startswith("STRATUS_CEPH__")}
    cloud = Cloud(tmp_path / "data", free_port(),
                  base_env(STRATUS_IMAGE__STORE="s3", STRATUS_IMAGE__S3_STORE_BUCKET=bucket,
                           STRATUS_IMAGE__STALE_UPLOAD_SECONDS="1",
                           STRATUS_VOLUME__HOST="storage", **env),
                  args=["up", "--storage", "ceph"])
    cloud.start()
    try:
        # --storage ceph keeps the s3 store the operator picked, keys from the dev cluster.
        assert f"images in bucket {bucket} at {ceph_cluster.s3().endpoint} (S3)" in (
            cloud.console())
        assert "aborted 1 multipart upload(s)" in cloud.log()
        assert _uploads(ceph_cluster, bucket) == []

        small = tmp_path / "small.raw"
        small.write_bytes(os.urandom(3 * MiB + 17))
        image = cloud.openstack_json("image", "create", "--file", str(small), "--disk-format",
                                     "raw", "--container-format", "bare", "small")
        assert image["status"] == "active" and "direct_url" not in image
        assert _keys(ceph_cluster, bucket) == [image["id"]]

        big = tmp_path / "big.raw"
        with big.open("wb") as f:
            for _ in range(100):
                f.write(os.urandom(MiB))
        assert cloud.process is not None
        with _peak_rss(cloud.process.pid) as rss:
            large = cloud.openstack_json("image", "create", "--file", str(big),
                                         "--disk-format", "raw", "--container-format", "bare",
                                         "large")
        assert large["status"] == "active" and large["size"] == 100 * MiB
        grown = rss[1] - rss[0]
        print(f"server RSS grew {grown / MiB:.1f} MiB during the 100 MiB upload")
        # The service's 4 MiB batches, two 8 MiB parts in flight and one filling (made of
        # those batches, not copies), and what the allocator keeps of them (23 MiB measured;
        # 42-47 MiB while parts were joined copies): never the image (100 MiB).
        assert grown < 56 * MiB, f"RSS grew {grown / MiB:.0f} MiB during a 100 MiB upload"
        head = _call(_s3(ceph_cluster), "HEAD", bucket, large["id"])
        assert head.status_code == 200 and int(head.headers["content-length"]) == 100 * MiB
        # RGW's ETag of a multipart object ends in its number of parts: 100 MiB / 8 MiB.
        assert head.headers["etag"].strip('"').endswith("-13"), head.headers["etag"]
        assert f"{bucket}/{large['id']}: {100 * MiB} bytes in 13 part(s)" in cloud.log()

        saved = tmp_path / "saved.raw"
        cloud.openstack("image", "save", "--file", str(saved), "large")
        assert _sha256(saved) == _sha256(big)
        saved.unlink()
        cloud.openstack("image", "save", "--file", str(saved), "small")
        assert saved.read_bytes() == small.read_bytes()

        shown = cloud.openstack("image", "show", "-f", "json", "large").stdout
        cloud.openstack("image", "delete", "large", "small")
        assert _keys(ceph_cluster, bucket) == []
        assert _uploads(ceph_cluster, bucket) == []
    finally:
        cloud.stop()
    _no_credentials(ceph_cluster, shown, cloud.log(), data_dir=cloud.data_dir)


@contextlib.contextmanager
def _private_rgw(cluster: DevCluster, work: Path) -> Iterator[tuple[str, list[str]]]:
    """A RADOS gateway of its own on the run's cluster (the shared one must not stop under
    other tests): (endpoint, the command that starts it again). Stopped at the end."""
    name = f"client.rgw.t{uuid.uuid4().hex[:8]}"
    admin = ["ceph", "-c", str(cluster.conf), "-n", "client.admin", "-k",
             str(cluster.admin_keyring)]
    keyring = work / "keyring"
    subprocess.run([*admin, "auth", "get-or-create", name, "mon", "allow rw", "osd",
                    "allow rwx", "-o", str(keyring)], check=True, capture_output=True)
    port = free_port()
    command = ["radosgw", "-c", str(cluster.conf), "-n", name, "--keyring", str(keyring),
               "--rgw-frontends", f"beast endpoint=127.0.0.1:{port}",
               "--pid-file", str(work / "rgw.pid"), "--admin-socket", str(work / "rgw.asok"),
               "--log-file", str(work / "rgw.log"), "--rgw-data", str(work)]
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _start_rgw(command, endpoint)
        yield endpoint, command
    finally:
        _kill_rgw(work)
        subprocess.run([*admin, "auth", "del", name], check=False, capture_output=True)


def _start_rgw(command: list[str], endpoint: str) -> None:
    subprocess.run(command, check=True, capture_output=True)
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(endpoint, timeout=1).status_code == 200:
                return
        assert time.monotonic() < deadline, "the private RADOS gateway did not listen"
        time.sleep(0.2)


def _kill_rgw(work: Path) -> None:
    pid_file = work / "rgw.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
        while Path(f"/proc/{pid}").exists():
            time.sleep(0.05)
    pid_file.unlink()


def _stream_killing_rgw(cluster: DevCluster, bucket: str, endpoint: str, work: Path,
                        total: int, kill_after: int) -> Iterator[bytes]:
    """``total`` random bytes in 1 MiB pieces; once ``kill_after`` bytes are out and the
    multipart upload shows in the bucket, the gateway is killed (SIGKILL: no goodbye)."""
    sent = 0
    while sent < total:
        if sent == kill_after:
            deadline = time.monotonic() + 60
            while not _uploads(cluster, bucket, endpoint):
                assert time.monotonic() < deadline, "the multipart upload never began"
                time.sleep(0.1)
            _kill_rgw(work)
        yield os.urandom(MiB)
        sent += MiB


def _put_during_outage(url: str, headers: dict[str, str],
                       body: Iterator[bytes] | bytes) -> httpx.Response:
    """The PUT of ``body``; the server may answer before it read it all (and close)."""
    with httpx.Client(timeout=120) as client:
        return client.put(url, headers=headers, content=body)


def test_rgw_down_is_a_503_and_no_half_image(tmp_path: Path,
                                              ceph_cluster: DevCluster) -> None:
    work = tmp_path / "rgw"
    work.mkdir()
    bucket = f"down-{uuid.uuid4().hex[:12]}"
    with _private_rgw(ceph_cluster, work) as (endpoint, command):
        s3 = ceph_cluster.s3()
        with running_cloud(tmp_path, None, STRATUS_IMAGE__STORE="s3",
                           STRATUS_IMAGE__S3_STORE_HOST=endpoint,
                           STRATUS_IMAGE__S3_STORE_ACCESS_KEY=s3.access_key,
                           STRATUS_IMAGE__S3_STORE_SECRET_KEY=s3.secret_key,
                           STRATUS_IMAGE__S3_STORE_BUCKET=bucket) as cloud:
            assert re.search(rf"image store +s3: bucket {bucket} at {endpoint}", cloud.log())
            token = cloud.openstack("token", "issue", "-f", "value", "-c", "id").stdout.strip()
            made = httpx.post(f"{cloud.url}/image/v2/images", headers={"X-Auth-Token": token},
                              json={"name": "lost", "disk_format": "raw",
                                    "container_format": "bare"})
            assert made.status_code == 201, made.text
            url = f"{cloud.url}/image/v2/images/{made.json()['id']}/file"
            headers = {"X-Auth-Token": token, "Content-Type": "application/octet-stream"}

            # The gateway dies mid-upload: parts went up, more were streaming.
            started = time.monotonic()
            cut = _put_during_outage(url, headers, _stream_killing_rgw(
                ceph_cluster, bucket, endpoint, work, total=96 * MiB, kill_after=32 * MiB))
            assert time.monotonic() - started < 60  # an error, not a hang
            assert cut.status_code == 503, cut.text
            fault = cut.json()  # the image API's error form
            assert (fault["code"], fault["title"]) == (503, "Service Unavailable"), fault
            assert "object storage" in fault["message"] and "did not answer" in fault["message"]
            assert cloud.openstack_json("image", "show", "lost")["status"] == "queued"
            assert "could not abort the multipart upload" in cloud.log()

            # Back, with no restart of Stratus: the store aborts the cut upload by itself.
            _start_rgw(command, endpoint)
            deadline = time.monotonic() + 120
            while _uploads(ceph_cluster, bucket, endpoint):
                assert time.monotonic() < deadline, "the cut multipart upload stayed"
                time.sleep(0.5)
            assert _keys(ceph_cluster, bucket, endpoint) == []  # no half object

            # Down before an upload begins: refused at once.
            _kill_rgw(work)
            started = time.monotonic()
            refused = _put_during_outage(url, headers, os.urandom(20 * MiB))
            assert time.monotonic() - started < 30  # an error, not a hang
            assert refused.status_code == 503, refused.text
            assert "object storage" in refused.text
            assert cloud.openstack_json("image", "show", "lost")["status"] == "queued"

            _start_rgw(command, endpoint)  # back: nothing half-written, nothing to clean
            assert _keys(ceph_cluster, bucket, endpoint) == []
            assert _uploads(ceph_cluster, bucket, endpoint) == []
            data = os.urandom(20 * MiB)  # multipart again (8 MiB parts)
            assert httpx.put(url, headers=headers, content=data,
                             timeout=120).status_code == 204
            assert httpx.get(url, headers=headers, timeout=60).content == data
            assert cloud.openstack_json("image", "show", "lost")["status"] == "active"
            assert _uploads(ceph_cluster, bucket, endpoint) == []
            cloud.openstack("image", "delete", "lost")
            assert _keys(ceph_cluster, bucket, endpoint) == []
        _no_credentials(ceph_cluster, cut.text, refused.text, cloud.console(),
                        data_dir=cloud.data_dir)
