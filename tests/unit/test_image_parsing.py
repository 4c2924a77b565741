"""The Image API's request parsing and the domain's pure helpers (no I/O)."""

from __future__ import annotations

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from stratus.core.exceptions import BadRequest, StratusError
from stratus.image import migrations
from stratus.image.api.data import parse_range
from stratus.image.api.images import parse_filters, parse_page, parse_patch
from stratus.image.data import ByteRange
from stratus.image.errors import RangeNotSatisfiable
from stratus.image.formats import sniff
from stratus.image.images import PatchOp
from stratus.image.migrations import SCRIPT_LOCATION


def test_image_head_is_recorded() -> None:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    assert ScriptDirectory.from_config(config).get_heads() == [migrations.HEAD]


@pytest.mark.parametrize(("header", "expected"), [
    ("bytes=0-99", ByteRange(0, 99)),
    ("bytes=100-", ByteRange(100, None)),
    ("bytes=-5", ByteRange(None, 5)),
    (" BYTES = 1 - 2 ", ByteRange(1, 2)),
    ("bytes=5-1", None),
    ("bytes=0-1,5-6", None),
    ("items=0-1", None),
    ("bytes=-", None),
    (None, None),
])
def test_parse_range(header: str | None, expected: ByteRange | None) -> None:
    assert parse_range(header) == expected


def test_byte_range_resolution() -> None:
    assert ByteRange(0, 99).resolve(50) == (0, 50)
    assert ByteRange(10, None).resolve(50) == (10, 40)
    assert ByteRange(None, 5).resolve(50) == (45, 5)
    assert ByteRange(None, 500).resolve(50) == (0, 50)
    assert ByteRange(0, 0).resolve(50) == (0, 1)
    for unsatisfiable, size in ((ByteRange(50, None), 50), (ByteRange(None, 0), 50),
                                (ByteRange(0, None), 0)):
        with pytest.raises(RangeNotSatisfiable):
            unsatisfiable.resolve(size)


def test_parse_patch_both_dialects() -> None:
    ops = [{"op": "add", "path": "/a~1b~0c", "value": "x"}, {"op": "remove", "path": "/n"}]
    assert parse_patch(ops, draft=False) == [PatchOp("add", ("a/b~c",), "x"),
                                             PatchOp("remove", ("n",), None)]
    assert parse_patch([{"replace": "/name", "value": "y"}], draft=True) == [
        PatchOp("replace", ("name",), "y")]
    for bad, draft in (({"op": "add"}, False), ([{"op": "test", "path": "/a"}], False),
                       ([{"op": "add", "path": "/a"}], False), (["x"], False),
                       ([{"op": "add", "path": "a", "value": 1}], False),
                       ([{"add": "/a", "remove": "/b", "value": 1}], True)):
        with pytest.raises(BadRequest):
            parse_patch(bad, draft=draft)


def test_parse_page_and_filters() -> None:
    page = parse_page([("limit", "5000"), ("marker", "m"), ("sort_key", "name"),
                       ("sort_key", "size"), ("sort_dir", "asc")], 25, 1000)
    assert (page.limit, page.marker, page.sort) == (1000, "m", [("name", "asc"),
                                                               ("size", "asc")])
    assert parse_page([("sort", "name:asc,status")], 25, 1000).sort == [("name", "asc"),
                                                                        ("status", "desc")]
    assert parse_page([], 25, 1000).sort == [("created_at", "desc")]
    for bad in ([("sort_key", "a"), ("sort_key", "name")],
                [("sort_key", "name"), ("sort_key", "size"), ("sort_dir", "asc"),
                 ("sort_dir", "asc"), ("sort_dir", "asc")],
                [("limit", "x")]):
        with pytest.raises(StratusError):
            parse_page(bad, 25, 1000)

    f = parse_filters([("name", 'in:a,"b,c"'), ("tag", "t1"), ("tag", "t2"),
                       ("os_hidden", "true"), ("hw_arch", "x86"), ("limit", "3"),
                       ("created_at", "gte:2020-01-01T00:00:00Z"), ("status", "active")])
    assert f.names == ["a", "b,c"] and f.tags == ["t1", "t2"] and f.os_hidden is True
    assert f.properties == {"hw_arch": ["x86"]} and f.statuses == ["active"]
    assert f.created_at[0][0] == "gte" and f.created_at[0][1].tzinfo is not None
    assert parse_filters([]).os_hidden is False and parse_filters([]).member_status == "accepted"


def test_sniff_disk_formats() -> None:
    assert sniff(b"QFI\xfb\0\0\0\3") == "qcow2"
    assert sniff(b"KDMV\1\0\0\0") == "vmdk"
    assert sniff(b"vhdxfile") == "vhdx"
    assert sniff(b"conectix") == "vhd"
    assert sniff(b"\0" * 0x40 + b"\x7f\x10\xda\xbe") == "vdi"
    assert sniff(b"\0" * 512) is None


async def test_inspector_without_qemu_img_reads_the_qcow2_header() -> None:
    import struct

    from stratus.image.formats import FormatMismatch, Inspector

    inspector = Inspector("no-such-qemu-img-binary")
    assert inspector.qemu_img is None
    header = bytearray(512)
    header[0:4] = b"QFI\xfb"
    struct.pack_into(">IQ", header, 4, 3, 0)
    struct.pack_into(">Q", header, 24, 64 * 1024 * 1024)
    assert (await inspector.inspect(None, "qcow2", 512, bytes(header))).virtual_size == \
        64 * 1024 * 1024
    assert (await inspector.inspect(None, "raw", 77, b"\0" * 77)).virtual_size == 77
    backed = bytearray(header)
    struct.pack_into(">Q", backed, 8, 512)
    for bad, disk_format in ((bytes(backed), "qcow2"), (b"\0" * 512, "qcow2"),
                             (bytes(header), "raw"), (b"# Disk DescriptorFile\n", "vmdk")):
        with pytest.raises(FormatMismatch):
            await inspector.inspect(None, disk_format, len(bad), bad)
