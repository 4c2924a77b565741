"""Small helpers every part of the network domain uses: ids, MACs, revisions, tags and
the equality filters lists push down to SQL. Plain functions; no state."""

from __future__ import annotations

import dataclasses
import enum
import random
import uuid
from collections.abc import Mapping
from typing import Any, Final, TypeVar

from sqlalchemy import Select

from stratus.core.db import utcnow

MAC_PREFIX = "fa:16:3e"

_Q = TypeVar("_Q", bound=Select[Any])


class Unset(enum.Enum):
    """The value of a command field the request did not mention (where ``None`` is a
    value a client may send, e.g. ``gateway_ip: null``)."""

    UNSET = "unset"


UNSET: Final = Unset.UNSET


def given(command: Any, *names: str) -> dict[str, Any]:
    """The fields of a (dataclass) command that the request set: ``names`` if given, else
    every field; ``UNSET`` ones are left out."""
    fields = names or tuple(f.name for f in dataclasses.fields(command))
    return {name: value for name in fields
            if (value := getattr(command, name)) is not UNSET}


def new_id() -> str:
    return str(uuid.uuid4())


def rowcount(result: Any) -> int:
    """Rows an INSERT ... ON CONFLICT DO NOTHING wrote: 0 means the key was taken."""
    return int(getattr(result, "rowcount", 0))


def random_mac() -> str:
    return f"{MAC_PREFIX}:" + ":".join(f"{random.randrange(256):02x}" for _ in range(3))


def touch(row: Any) -> None:
    """A new revision of a standard-attribute row (``revision_number``, ``updated_at``)."""
    row.revision_number = (row.revision_number or 0) + 1
    row.updated_at = utcnow()


def set_tags(row: Any, tags: list[str]) -> None:
    """A resource's tags replaced (duplicates dropped, order kept); a new revision."""
    row.tags = list(dict.fromkeys(tags))
    touch(row)


def apply_filters(query: _Q, model: Any, where: Mapping[str, list[Any]] | None) -> _Q:
    """Equality filters pushed down to SQL (``column IN values``)."""
    for column, values in (where or {}).items():
        query = query.where(getattr(model, column).in_(values))
    return query
