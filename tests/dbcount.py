"""Count the ORM rows the database returned for a model during a block.

    with count_loaded(Image) as loaded:
        response = await client.get("/v2/images?limit=10&marker=...")
    assert loaded.count <= 11

Counted with SQLAlchemy's ``load`` event (an instance built from a returned row) and
``refresh`` event (an instance already in the session, refreshed from a returned row), on
the class and its subclasses, in every session of the process while the block runs. So an
API that loads every visible row to serve one page shows it here, whatever it answers.
A row whose instance is already in the session (and not refreshed) is not counted: each
API request opens its own session, so in API tests every returned row is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event


@dataclass
class Loaded:
    """How many rows of the model were loaded so far in the block."""

    count: int = 0


@contextmanager
def count_loaded(model: type[Any]) -> Iterator[Loaded]:
    loaded = Loaded()

    def on_load(_target: Any, _context: Any) -> None:
        loaded.count += 1

    def on_refresh(_target: Any, _context: Any, _attrs: Any) -> None:
        loaded.count += 1

    event.listen(model, "load", on_load, propagate=True)
    event.listen(model, "refresh", on_refresh, propagate=True)
    try:
        yield loaded
    finally:
        event.remove(model, "load", on_load)
        event.remove(model, "refresh", on_refresh)
