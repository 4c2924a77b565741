"""The stores' grouping of written pieces into fixed-size units (an RBD chunk, an S3 part):
units exactly ``size`` bytes, in order, the pieces kept as they came but where one is cut at
a unit's end; the short remainder taken at the end."""

from __future__ import annotations

import pytest

from stratus.image.stores.base import UnitBuffer

SIZE = 8


def _fill(buffer: UnitBuffer, writes: list[bytes]) -> list[list[bytes]]:
    return [unit for data in writes for unit in buffer.add(data)]


def test_pieces_smaller_than_a_unit_are_kept_whole_until_it_fills() -> None:
    buffer = UnitBuffer(SIZE)
    assert _fill(buffer, [b"abc", b"def"]) == []
    assert buffer.buffered == 6
    assert _fill(buffer, [b"ghij"]) == [[b"abc", b"def", b"gh"]]  # cut at the unit's end
    assert buffer.buffered == 2
    assert buffer.take() == [b"ij"]  # the last, short unit
    assert buffer.buffered == 0 and buffer.take() == []


def test_a_piece_larger_than_a_unit_fills_several() -> None:
    buffer = UnitBuffer(SIZE)
    data = bytes(range(20))
    assert _fill(buffer, [data]) == [[data[:8]], [data[8:16]]]
    assert buffer.take() == [data[16:]]


def test_exact_multiples_leave_nothing_and_are_not_copied() -> None:
    buffer = UnitBuffer(SIZE)
    halves = [b"a" * 4, b"b" * 4, b"c" * 4, b"d" * 4]
    units = _fill(buffer, halves)
    assert units == [halves[:2], halves[2:]]
    # The pieces themselves, not copies of them (each copy of an upload costs CPU).
    assert all(got is piece for got, piece in zip(units[0] + units[1], halves, strict=True))
    assert buffer.buffered == 0 and buffer.take() == []
    whole = bytes(2 * SIZE)
    assert _fill(buffer, [whole]) == [[whole[:SIZE]], [whole[SIZE:]]]
    assert buffer.take() == []


def test_empty_writes_add_nothing() -> None:
    buffer = UnitBuffer(SIZE)
    assert _fill(buffer, [b"", b"xy", b""]) == []
    assert buffer.take() == [b"xy"]
    assert _fill(buffer, [b""]) == [] and buffer.take() == []


def test_units_come_out_in_order_whatever_the_pieces() -> None:
    data = bytes(i % 251 for i in range(1000))
    for step in (1, 3, 7, 8, 9, 64, 999, 1000):
        buffer = UnitBuffer(SIZE)
        units = _fill(buffer, [data[i:i + step] for i in range(0, len(data), step)])
        rest = buffer.take()
        assert all(sum(map(len, unit)) == SIZE for unit in units)
        assert b"".join(b"".join(unit) for unit in [*units, rest]) == data
        assert len(b"".join(rest)) == len(data) % SIZE


def test_a_unit_is_cut_only_once_the_one_before_was_taken() -> None:
    """A write of many units holds one cut at a time; stopping (a failed send) drops the
    rest of that write."""
    buffer = UnitBuffer(SIZE)
    units = buffer.add(bytes(5 * SIZE + 3))
    assert next(units) == [bytes(SIZE)]
    assert buffer.buffered == 0
    units.close()
    assert buffer.take() == []


def test_a_unit_holds_at_least_a_byte() -> None:
    with pytest.raises(ValueError, match="at least one byte"):
        UnitBuffer(0)
