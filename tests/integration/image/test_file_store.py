"""The ``file`` store: staged writes invisible until commit, atomic publish, ranged reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from stratus.image.stores import ObjectMissing
from stratus.image.stores.file import FileStore

ID = "0b5f0e6e-5a4c-4f0e-9a57-5f8d6f1e2a11"


async def read_all(store: FileStore, location: str, offset: int = 0,
                   length: int | None = None, chunk_size: int = 3) -> bytes:
    reader = await store.open(location, offset, length, chunk_size=chunk_size)
    return b"".join([chunk async for chunk in reader.chunks()])


async def test_staged_write_becomes_visible_on_commit(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "images")
    await store.start()
    writer = await store.writer(ID)
    await writer.write(b"hello ")
    await writer.write(b"world")
    assert writer.local_path is not None and writer.local_path.parent == store.staging
    assert not (store.directory / ID).exists()
    with pytest.raises(ObjectMissing):
        await store.open(f"file:{ID}")
    location = await writer.commit()
    assert location == f"file:{ID}"
    assert list(store.staging.iterdir()) == []
    assert await store.exists(location)
    assert await read_all(store, location) == b"hello world"
    assert await read_all(store, location, 6) == b"world"
    assert await read_all(store, location, 2, 4) == b"llo "
    reader = await store.open(location, 4, 100)
    assert reader.size == 11
    await reader.aclose()
    await store.delete(location)
    await store.delete(location)  # already gone: no error
    assert not await store.exists(location)


async def test_abort_leaves_nothing(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "images")
    await store.start()
    writer = await store.writer(ID)
    await writer.write(b"partial")
    await writer.abort()
    await writer.abort()
    committed = await store.writer(ID)
    await committed.write(b"whole")
    await committed.commit()
    await committed.abort()  # a failure after commit (say, the database) removes it too
    assert [p for p in store.directory.rglob("*") if p.is_file()] == []


async def test_locations_cannot_escape_the_store(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "images")
    await store.start()
    for location in ("file:../../etc/passwd", "file:/etc/passwd", "s3:bucket/key", "file:"):
        with pytest.raises(ObjectMissing):
            await store.open(location)


@pytest.mark.parametrize("direct_io", [True, False])
async def test_unaligned_sizes_arrive_whole(tmp_path: Path, direct_io: bool) -> None:
    import os

    from stratus.image.stores.file import ALIGN, DIRECT_BUFFER

    store = FileStore(tmp_path / "images", direct_io=direct_io)
    await store.start()
    data = os.urandom(DIRECT_BUFFER * 2 + 3 * ALIGN + 77)
    writer = await store.writer(ID)
    for piece in (data[:5], data[5:ALIGN + 1], data[ALIGN + 1:DIRECT_BUFFER + 9],
                  data[DIRECT_BUFFER + 9:]):
        await writer.write(piece)
    await writer.written()
    assert writer.local_path is not None and writer.local_path.read_bytes() == data
    location = await writer.commit()
    assert await read_all(store, location, chunk_size=1 << 20) == data


@pytest.mark.parametrize("direct_io", [True, False])
async def test_ranged_reads_at_any_offset(tmp_path: Path, direct_io: bool) -> None:
    import os

    store = FileStore(tmp_path / "images", direct_io=direct_io)
    await store.start()
    data = os.urandom(3 * 4096 + 1234)
    writer = await store.writer(ID)
    await writer.write(data)
    location = await writer.commit()
    for offset, length, chunk in ((0, None, 4096), (1, 5000, 777), (4095, 2, 1),
                                  (8191, 4096 + 1000, 4096), (len(data) - 1, None, 10)):
        expected = data[offset:] if length is None else data[offset:offset + length]
        assert await read_all(store, location, offset, length, chunk_size=chunk) == expected
    reader = await store.open(location, 0, None, chunk_size=4096)
    first = await anext(aiter(reader.chunks()))
    assert first == data[:4096]
    await reader.aclose()  # closed half way: the file is released
