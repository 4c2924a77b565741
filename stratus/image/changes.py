"""Image changes of one transaction, told to whoever keeps image records after it commits.

Compute-api keeps the image records its boots checked (``stratus.core.image_caches``); they
hold until the image service says the image changed. Every change of what a record shows or
of who may see it says so here: an update of attributes, properties or tags, deactivation
and reactivation, data becoming active, deletion, and members added, changed or removed.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence

from stratus.core.db import Txn

LOG = logging.getLogger(__name__)

#: Told which images changed (a cache's ``invalidate``, or a coroutine function telling
#: other processes over the bus).
ChangeListener = Callable[[list[str]], Awaitable[None] | None]


class ImageChanges:
    """Records the images changed within one transaction.

    Listeners are called once, after the transaction commits (telling earlier would let a
    concurrent boot keep the old record again), and awaited: the request that changed the
    image answers only after they were told. On rollback nothing is told.
    """

    def __init__(self, txn: Txn, listeners: Sequence[ChangeListener]) -> None:
        self.txn = txn
        self.listeners = listeners
        self._changed: set[str] = set()

    def changed(self, image_id: str) -> None:
        """``image_id`` changed (or its members did): told after commit."""
        if not self.listeners:
            return
        if not self._changed:
            self.txn.after_commit(self._tell)
        self._changed.add(image_id)

    async def _tell(self) -> None:
        image_ids = sorted(self._changed)
        for listener in self.listeners:  # one failing (the bus) does not stop the next
            try:
                done = listener(image_ids)
                if inspect.isawaitable(done):
                    await done
            except Exception:
                LOG.exception("could not tell that images %s changed", ", ".join(image_ids))
