"""The Placement API with the real client, ``osc-placement``'s ``openstack resource ...``
commands, against ``stratus up`` (fake driver): it finds ``placement`` in the catalog,
negotiates its microversion and reads a booted server's claim."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cloud import Cloud, running_cloud

pytestmark = pytest.mark.e2e


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    # SQLite only: tests/integration/compute/test_placement_api.py reads every route on both.
    with running_cloud(tmp_path, STRATUS_COMPUTE__HOST="fake") as instance:
        yield instance


def test_resource_provider_list_and_usage_show_with_osc_placement(cloud: Cloud,
                                                                  tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\0" * 65536)
    cloud.openstack("image", "create", "--file", str(disk), "--disk-format", "raw",
                    "--container-format", "bare", "tiny-image")
    server = cloud.openstack_json("server", "create", "--image", "tiny-image", "--flavor",
                                  "m1.tiny", "--nic", "none", "--wait", "vm1")
    flavor = cloud.openstack_json("flavor", "show", "m1.tiny")
    claim = {"VCPU": flavor["vcpus"], "MEMORY_MB": flavor["ram"], "DISK_GB": flavor["disk"]}

    (provider,) = cloud.openstack_json("resource", "provider", "list")
    assert provider["name"] == "fake"
    # negotiated: the newest both know, 1.14, which adds the tree's fields
    assert provider["root_provider_uuid"] == provider["uuid"]
    assert provider["parent_provider_uuid"] is None

    usages = cloud.openstack_json("resource", "provider", "usage", "show", provider["uuid"])
    assert {u["resource_class"]: u["usage"] for u in usages} == claim
    inventories = cloud.openstack_json("resource", "provider", "inventory", "list",
                                       provider["uuid"])
    assert {i["resource_class"] for i in inventories} == set(claim)
    allocations = cloud.openstack_json("resource", "provider", "allocation", "show",
                                       server["id"])
    assert [(a["resource_provider"], a["resources"]) for a in allocations] == [
        (provider["uuid"], claim)]
    project_usages = cloud.openstack_json("resource", "usage", "show",
                                          server["project_id"])
    assert {u["resource_class"]: u["usage"] for u in project_usages} == claim
