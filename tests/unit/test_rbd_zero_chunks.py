"""The rbd store's check for all-zero chunks (written as holes): any length, a non-zero byte
anywhere."""

from __future__ import annotations

from stratus.image.stores.rbd import _zeros


def test_all_zero_chunks_are_found_whatever_their_length() -> None:
    for size in (1, 4096, 8 << 20, 3, 4 << 20, (8 << 20) + 1):
        assert _zeros(bytes(size))
        for where in (0, size // 2, size - 1):
            data = bytearray(size)
            data[where] = 1
            assert not _zeros(bytes(data))
    assert _zeros(b"")
