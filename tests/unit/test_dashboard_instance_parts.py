"""The instance pages' parts that are pure functions of API bodies: the attached volumes of
the detail page, and the create body's part for each boot source of the launch form."""

from __future__ import annotations

import pytest

from stratus.dashboard.boot_sources import SourceInvalid, boot_lists, server_source
from stratus.dashboard.instance_detail import attached_volumes


def test_attached_volumes_read_the_server_body_and_the_volume_list() -> None:
    server = {"id": "srv", "os-extended-volumes:volumes_attached": [
        {"id": "v1", "delete_on_termination": True}, {"id": "v2"}]}
    volumes = {"volumes": [
        {"id": "v1", "name": "root", "size": 2, "status": "in-use",
         "attachments": [{"server_id": "other", "device": "/dev/vdc"},
                         {"server_id": "srv", "device": "/dev/vda"}]},
        {"id": "v3", "name": "unrelated", "size": 1, "status": "available"}]}
    assert attached_volumes(server, volumes) == [
        {"id": "v1", "name": "root", "size": 2, "status": "in-use", "device": "/dev/vda"},
        {"id": "v2", "name": "v2", "size": None, "status": None, "device": None}]
    # The volume list failed or there is no block storage: the ids alone.
    assert [v["name"] for v in attached_volumes(server, None)] == ["v1", "v2"]


def test_each_boot_source_makes_its_create_body() -> None:
    assert server_source({"source": "image", "image": "img"}) == {"imageRef": "img"}
    assert server_source({"source": "volume", "volume": "vol", "volume_size": "9",
                          "delete_on_termination": "on"}) == {
        "imageRef": "", "block_device_mapping_v2": [{
            "boot_index": 0, "uuid": "vol", "source_type": "volume",
            "destination_type": "volume", "delete_on_termination": True}]}
    (root,) = server_source({"source": "snapshot", "snapshot": "snap"})[
        "block_device_mapping_v2"]
    assert root["source_type"] == "snapshot" and "volume_size" not in root
    assert root["delete_on_termination"] is False
    (root,) = server_source({"source": "image-volume", "image": "img", "volume_size": "3"})[
        "block_device_mapping_v2"]
    assert (root["source_type"], root["uuid"], root["volume_size"]) == ("image", "img", 3)


@pytest.mark.parametrize(("values", "field"), [
    ({"source": "floppy"}, "source"),
    ({"source": "volume", "volume": ""}, "volume"),
    ({"source": "snapshot"}, "snapshot"),
    ({"source": "image-volume", "image": "img", "volume_size": ""}, "volume_size"),
    ({"source": "image-volume", "image": "img", "volume_size": "0"}, "volume_size"),
    ({"source": "snapshot", "snapshot": "s", "volume_size": "1.5"}, "volume_size"),
])
def test_a_source_without_its_pick_is_said_at_its_field(values: dict[str, str],
                                                        field: str) -> None:
    with pytest.raises(SourceInvalid) as refused:
        server_source(values)
    assert refused.value.field == field


def test_only_bootable_volumes_are_offered() -> None:
    lists = boot_lists({"volumes": [{"id": "a", "name": "data", "bootable": "false"},
                                    {"id": "b", "name": "root", "bootable": "true"}]},
                       None)
    assert [v["id"] for v in lists.volumes] == ["b"] and lists.snapshots == []
