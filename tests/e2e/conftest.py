"""Fixtures shared by the e2e modules."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.e2e.cloud import Cloud, libvirt_cloud
from tests.realvm import guest_image, libvirt_ready


@pytest.fixture(scope="session")
def _realvm_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    """One ``stratus up --with-test-image`` (libvirt driver, real networking) for every
    real-guest CLI test of the session: starting it (identity bootstrap, the test image
    upload, the networks) is the same for each, so it is paid once. The test guest built
    once for the session is put in the data dir's cache (same key)."""
    libvirt_ready()
    image = guest_image()
    data = tmp_path_factory.mktemp("realvm-up") / "data"
    (data / "guest-image").mkdir(parents=True)
    shutil.copyfile(image, data / "guest-image" / image.name)
    with libvirt_cloud(data, ["up", "--with-test-image"]) as instance:
        yield instance


@pytest.fixture
def realvm_cloud(_realvm_up: Cloud) -> Iterator[Cloud]:
    """The session's real-guest cloud, running (started again if a test stopped or killed
    it), handed to one test; what servers and snapshots the test left are deleted after it,
    so the next test starts from the same cloud (its names free)."""
    cloud = _realvm_up
    if cloud.process is None or cloud.process.poll() is not None:
        cloud.start(timeout=180)
    try:
        yield cloud
    finally:
        if cloud.process is None or cloud.process.poll() is not None:
            cloud.start(timeout=180)
        servers = [s["ID"] for s in cloud.openstack_json("server", "list", "--all-projects")]
        if servers:
            cloud.openstack("server", "delete", "--wait", *servers, check=False)
        for image in cloud.openstack_json("image", "list"):
            if image["Name"] != "stratus-test-guest":
                cloud.openstack("image", "delete", image["ID"], check=False)
