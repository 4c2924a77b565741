"""A 1 GiB image up and down through a real ``stratus up``, in bounded memory.

The data is generated on the fly (one random MiB sent 1024 times), never held whole, by the
client either. The server's peak resident memory is read from the kernel (``VmHWM``, reset
through ``/proc/PID/clear_refs`` after a warm-up) and, as a cross-check, sampled with
psutil while the transfer runs; it may grow by less than 64 MiB over the warmed-up baseline.
Speeds are for ``benchmarks/image.py``, not asserted here.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.e2e.cloud import Cloud, running_cloud
from tests.e2e.test_image_cli import admin_token

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
GiB = 1024 * MiB
RSS_GROWTH_LIMIT = 64 * MiB


class PeakRSS:
    """Peak resident memory of a process over a stretch of time."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.process = psutil.Process(pid)
        self.sampled = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.kernel_reset = False

    def _hwm(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM")

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.sampled = max(self.sampled, self.process.memory_info().rss)

    def __enter__(self) -> PeakRSS:
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # reset VmHWM to now
            self.kernel_reset = True
        except OSError:
            self.kernel_reset = False
        self.sampled = self.process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self.sampled = max(self.sampled, self.process.memory_info().rss)

    @property
    def peak(self) -> int:
        return max(self.sampled, self._hwm()) if self.kernel_reset else self.sampled


@pytest.fixture
def cloud(tmp_path: Path, db_url: str) -> Iterator[Cloud]:
    with running_cloud(tmp_path, db_url) as instance:
        yield instance


def generated(total: int, block: bytes, md5: hashlib._Hash) -> Iterator[bytes]:
    for _ in range(total // len(block)):
        md5.update(block)
        yield block


def test_one_gib_up_and_down_in_bounded_memory(cloud: Cloud) -> None:
    assert cloud.process is not None
    headers = {"X-Auth-Token": admin_token(cloud)}
    images = f"{cloud.url}/image/v2/images"
    block = os.urandom(MiB)
    rss = psutil.Process(cloud.process.pid)

    with httpx.Client(timeout=120, headers=headers) as client:
        def create(name: str) -> str:
            response = client.post(images, json={"name": name, "disk_format": "raw",
                                                 "container_format": "bare"})
            assert response.status_code == 201, response.text
            return str(response.json()["id"])

        # Warm up every code path once (upload, download), then take the baseline.
        warm = create("warm-up")
        assert client.put(f"{images}/{warm}/file", content=block * 8,
                          headers={"Content-Type": "application/octet-stream"}
                          ).status_code == 204
        assert len(client.get(f"{images}/{warm}/file").content) == 8 * MiB
        baseline = rss.memory_info().rss

        image_id = create("big")
        sent_md5 = hashlib.md5()
        with PeakRSS(cloud.process.pid) as upload_peak:
            response = client.put(
                f"{images}/{image_id}/file", content=generated(GiB, block, sent_md5),
                headers={"Content-Type": "application/octet-stream",
                         "Content-Length": str(GiB)})
        assert response.status_code == 204, response.text
        image = client.get(f"{images}/{image_id}").json()
        assert image["status"] == "active" and image["size"] == GiB
        assert image["checksum"] == sent_md5.hexdigest()

        received_md5 = hashlib.md5()
        received = 0
        with PeakRSS(cloud.process.pid) as download_peak, \
                client.stream("GET", f"{images}/{image_id}/file") as download:
            assert download.status_code == 200
            assert download.headers["content-length"] == str(GiB)
            for chunk in download.iter_raw(MiB):
                received += len(chunk)
                received_md5.update(chunk)
        assert received == GiB
        assert received_md5.hexdigest() == download.headers["content-md5"] == image["checksum"]

    growth = {"upload": upload_peak.peak - baseline, "download": download_peak.peak - baseline}
    print(f"baseline {baseline / MiB:.1f} MiB; peak growth: "  # shown with pytest -s
          + ", ".join(f"{k} {v / MiB:.1f} MiB" for k, v in growth.items())
          + f" (kernel peak reset: {upload_peak.kernel_reset})")
    assert all(g < RSS_GROWTH_LIMIT for g in growth.values()), (
        f"peak RSS growth over {baseline / MiB:.1f} MiB: "
        + ", ".join(f"{k} {v / MiB:.1f} MiB" for k, v in growth.items()))
