"""Answers from the server applied in the order their questions were asked.

An agent's bus events and resyncs overlap: two questions about one object (a router, a
port) can be answered in either order, and an answer slow to come back must not undo a
newer one. Each question gets a number when it is asked (an event that brings its state
with it gets one when it arrives); per object the agent keeps the number of the answer in
force and never applies an answer to an earlier question over it.
"""

from __future__ import annotations

import itertools


class AnswerOrder:
    """Numbers questions; remembers, per object id, the number of the answer in force.

    The numbers are kept for every object ever seen (a few bytes each): forgetting one
    would let a stale answer bring a removed object back."""

    def __init__(self) -> None:
        self._asks = itertools.count()
        self._in_force: dict[str, int] = {}

    def ask(self) -> int:
        """The number of a question asked now (later questions get larger numbers)."""
        return next(self._asks)

    def outdated(self, object_id: str, as_of: int) -> bool:
        """Whether the answer to question ``as_of`` is older than the one in force for
        the object; records ``as_of`` as in force when it is not."""
        if as_of < self._in_force.get(object_id, -1):
            return True
        self._in_force[object_id] = as_of
        return False
