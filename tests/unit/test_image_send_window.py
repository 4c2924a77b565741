"""A download sent with ``os.sendfile`` reads the disk a window ahead of what it sends and
drops what it sent from the page cache as it goes (``stratus.image.api.data._SentFile``):
the page cache holds a window of the image, not all of it until the download ends."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest

from stratus.image.api import data as api_data

PIECE = 64 * 1024


async def test_pieces_are_asked_ahead_and_dropped_behind(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api_data, "SEND_PIECE", PIECE)
    length = 20 * PIECE + 777
    start = 3  # a range that does not start at 0
    path = tmp_path / "image"
    path.write_bytes(os.urandom(start + length))
    asked: list[tuple[int, int]] = []
    dropped: list[tuple[int, int]] = []
    real = os.posix_fadvise

    def advise(fd: int, offset: int, count: int, advice: int) -> None:
        if advice == os.POSIX_FADV_WILLNEED:
            asked.append((offset, count))
        elif advice == os.POSIX_FADV_DONTNEED:
            dropped.append((offset, count))
        real(fd, offset, count, advice)

    monkeypatch.setattr(os, "posix_fadvise", advise)
    sent: list[tuple[int, int]] = []
    window = api_data.AHEAD_PIECES * PIECE
    behind = api_data.BEHIND_PIECES * PIECE

    def reach(ranges: list[tuple[int, int]]) -> int:
        """How far from ``start`` the ranges cover without a gap or overlap."""
        at = start
        for offset, count in ranges:
            assert offset == at and count > 0
            at += count
        return at

    async def sendfile(file: Any, offset: int, count: int) -> bool:
        end = start + length
        assert reach(asked) >= min(offset + count + window, end)
        assert reach(dropped) >= offset - behind
        assert reach(dropped) <= max(start, offset - behind)  # nothing not yet sent
        sent.append((offset, count))
        return True

    response = api_data._SentFile.__new__(api_data._SentFile)
    response.sendfile = sendfile
    fd = os.open(path, os.O_RDONLY)
    try:
        with io.FileIO(fd, "rb", closefd=False) as file:
            assert await response._send_pieces(file, fd, start, length)
    finally:
        os.close(fd)
    assert reach(sent) == start + length
    assert all(count <= PIECE for _, count in sent)
    assert reach(asked) == start + length
    assert dropped  # dropped while sending, before the reader's close drops the rest
