"""Glance's metadata definitions catalog with the real ``openstack image metadef`` commands
against ``stratus up``: the seeded namespaces listed and shown, an admin's namespace made,
changed and deleted, and a member refused the write."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cloud import Cloud, running_cloud

pytestmark = pytest.mark.e2e


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    # SQLite only: tests/integration/image/test_metadefs.py reads every route on both.
    with running_cloud(tmp_path) as instance:
        yield instance


def test_metadef_namespaces_with_the_real_cli(cloud: Cloud) -> None:
    listed = cloud.openstack_json("image", "metadef", "namespace", "list")
    assert {n["namespace"] for n in listed} >= {
        "OS::Compute::Architecture", "OS::Compute::Hypervisor",
        "OS::Glance::CommonImageProperties"}
    shown = cloud.openstack_json("image", "metadef", "namespace", "show",
                                 "OS::Compute::Architecture")
    assert shown["display_name"] == "CPU Architecture" and shown["protected"] is True
    properties = cloud.openstack_json("image", "metadef", "property", "list",
                                      "OS::Compute::Architecture")
    assert [p["name"] for p in properties] == ["hw_architecture"]
    types = cloud.openstack_json("image", "metadef", "resource", "type", "list")
    assert {t["Name"] for t in types} == {"OS::Glance::Image", "OS::Cinder::Volume"}

    made = cloud.openstack_json("image", "metadef", "namespace", "create", "--display-name",
                                "Disk speed", "--description", "How fast disks are",
                                "--private", "--protected", "Stratus::DiskSpeed")
    assert made["namespace"] == "Stratus::DiskSpeed" and made["visibility"] == "private"
    refused = cloud.openstack("image", "metadef", "namespace", "delete",
                              "Stratus::DiskSpeed", check=False)
    assert refused.returncode != 0 and "protected" in refused.stderr
    cloud.openstack("image", "metadef", "namespace", "set", "--unprotected", "--public",
                    "--display-name", "Disk Speed", "Stratus::DiskSpeed")
    changed = cloud.openstack_json("image", "metadef", "namespace", "show",
                                   "Stratus::DiskSpeed")
    assert (changed["protected"], changed["visibility"], changed["display_name"]) == (
        False, "public", "Disk Speed")
    cloud.openstack("image", "metadef", "namespace", "delete", "Stratus::DiskSpeed")
    after = cloud.openstack_json("image", "metadef", "namespace", "list")
    assert "Stratus::DiskSpeed" not in {n["namespace"] for n in after}
