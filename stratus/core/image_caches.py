"""Image records across processes: compute-api keeps the image records its boots checked,
and every change of an image empties them, in this process and, over the bus, in the others.

Each boot (and rebuild, rescue, image-backed volume) checks that the caller may use its image:
``ImageClient.get``, a ``GET /v2/images/{id}`` with the caller's token. Most of that request's
cost is HTTP machinery, and the answer rarely changes, but a time-limited cache would let an
image deleted, deactivated or made private boot until the entry expires. So the image service
tells of every change instead (``stratus.image.changes``): after the transaction that changed
an image commits, and before the request that changed it answers,

* the cache of a compute-api in the same process drops the image's records directly (a boot
  that starts after the answer cannot see the old record), and
* when the bus reaches other processes, ``images_changed`` is fanned out on ``image_caches``
  (awaiting the broker's confirm), and every process with a cache drops them when the message
  arrives: a few milliseconds later, the window in which another process may still accept the
  old record, as a token revoked elsewhere (``stratus.core.token_caches``).

What a caller may see of an image depends on who it is: its project (owner, members), its
roles (admin, the ``get_image`` rule), and whatever else a policy file may test. A record is
kept per image *and* per caller as policy sees it (:func:`caller_key`) and per endpoint, so
one project's view never answers another's. Only successful answers are kept (an ``active``
image the caller may see): a refusal is asked again each time.

Changes that come over the bus are lost while the connection is down. The cache therefore
serves only while the bus is connected, and empties itself when the connection it was
filled on is replaced (``Transport.connection_epoch``): a record from before the outage is
never served after it. A connection that died without the process noticing yet (up to about
two heartbeats) is the limit of what it can tell.

A record is also never served once it is ``max_age`` seconds old (60 by default): the backstop
for a notice that never came (a fan-out the broker did not take, an image service of an
older release during an upgrade), so such a miss is bounded in time, not kept for as long as
the record stays in use.

With the in-process ``memory://`` bus nothing reaches another process: the cache is kept only
when the image service runs in the same process (its direct notice is then enough), and is
not kept at all otherwise.

Concurrent misses of one record share one fetch (``fetched``): under a burst of boots, a
cold or expired record was fetched once per request in flight (a hundred ``GET`` of the
same image through the image service's whole request path), then kept a hundred times.
A request joins a fetch only while records are served and no change was told since that
fetch started, so what it gets is what a fetch of its own could have answered: a change
answered before the request started has bumped the generation, and the request fetches
anew. A failed fetch, or a record not to keep (an image not usable), is not shared: each
waiter asks again for itself, as a refusal is asked each time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import Any

from stratus.core.bus import RPCAPI
from stratus.core.context import RequestContext

LOG = logging.getLogger(__name__)

TOPIC = "image_caches"

#: Image records kept per process, by default (a few KB each).
DEFAULT_SIZE = 1024
#: Seconds after which a record is fetched again even if no change was told.
DEFAULT_MAX_AGE_S = 60.0


def caller_key(ctx: RequestContext) -> Hashable:
    """What the image service's answer to ``ctx`` may depend on besides the image: every
    fact its policy can test (``RequestContext.policy_credentials``) and the project its
    visibility rules compare with (owner, members)."""
    return (ctx.user_id, ctx.user_domain_id, ctx.project_id, ctx.project_domain_id,
            ctx.domain_id, ctx.system_scope, tuple(sorted(ctx.roles)),
            tuple(sorted(ctx.service_roles)))


class ImageRecords:
    """The image records a process's compute-api checked, per (image, caller, endpoint);
    at most ``size`` of them, the least recently used dropped first.

    ``epoch`` (when changes come over the bus) tells the bus connection the process is on
    now: None while disconnected (nothing is served or kept), a number that changes with
    every new connection (the records from an older one are dropped). A record fetched while
    a change was told (``invalidate``) is not kept: it may be from before the change.

    A new instance is off (``enabled`` False) until something will tell it of changes.
    """

    def __init__(self, size: int = DEFAULT_SIZE, *, max_age: float = DEFAULT_MAX_AGE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if size < 1:
            raise ValueError("the cache needs room for at least one record")
        self.size = size
        self.max_age = max_age
        self._clock = clock
        self.enabled = False
        self.epoch: Callable[[], int | None] | None = None
        #: (image, endpoint, caller) → (when it was kept, the record as JSON text: each
        #: boot gets its own copy from ``json.loads``, ~10 Python calls where
        #: ``copy.deepcopy`` of an image record made ~270).
        self._records: OrderedDict[tuple[str, str, Hashable],
                                   tuple[float, str]] = OrderedDict()
        self._by_image: dict[str, set[tuple[str, str, Hashable]]] = {}
        self._filled_on: int | None = None
        #: Changes told so far: a fetch that saw another number at its start is not kept.
        self.generation = 0
        #: Fetches under way (``fetched``), per key: the generation each started under and
        #: what it will tell its joiners (the record as JSON text, or None: ask yourself).
        self._flights: dict[tuple[str, str, Hashable],
                            tuple[int, asyncio.Future[str | None]]] = {}

    def __len__(self) -> int:
        return len(self._records)

    def _current(self) -> bool:
        """Whether records may be served and kept now (emptying them if the connection
        they were filled on is gone)."""
        if not self.enabled:
            return False
        if self.epoch is None:
            return True
        epoch = self.epoch()
        if epoch != self._filled_on:
            if self._records:
                LOG.info("image records: the bus connection changed; dropping %d",
                         len(self._records))
            self.clear()
            self._filled_on = epoch
        return epoch is not None

    def get(self, image_id: str, endpoint: str, ctx: RequestContext) -> dict[str, Any] | None:
        """A copy of the record kept for this image and caller, or None."""
        if not self._current():
            return None
        key = (image_id, endpoint, caller_key(ctx))
        kept = self._records.get(key)
        if kept is None:
            return None
        kept_at, record = kept
        if self._clock() - kept_at >= self.max_age:
            del self._records[key]
            self._forget_key(key)
            return None
        self._records.move_to_end(key)
        copied: dict[str, Any] = json.loads(record)  # the caller may change its copy
        return copied

    async def fetched(self, image_id: str, endpoint: str, ctx: RequestContext,
                      fetch: Callable[[], Awaitable[dict[str, Any]]],
                      keep: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The record kept for this image and caller (a copy), else ``fetch()``'s answer,
        kept if ``keep`` says so. While records are served, concurrent callers missing the
        same record await one fetch (the first's) instead of one each: see the module
        docstring for when one joins. ``fetch``'s exceptions reach its own caller only;
        the ones that joined it then fetch for themselves."""
        kept = self.get(image_id, endpoint, ctx)
        if kept is not None:
            return kept
        if not self._current():  # served by no record: nothing to share either
            return await fetch()
        generation = self.generation
        key = (image_id, endpoint, caller_key(ctx))
        flight = self._flights.get(key)
        if flight is not None and flight[0] == generation:
            # Shielded: a joiner cancelled must not cancel what the others await.
            text = await asyncio.shield(flight[1])
            if text is not None:
                copied: dict[str, Any] = json.loads(text)
                return copied
            return await fetch()  # the first failed, or its answer is not to keep
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._flights[key] = (generation, future)
        text = None
        try:
            record = await fetch()
            if keep(record):
                text = json.dumps(record)
                self._keep(key, text, generation)
            return record
        finally:  # whatever happened (an error, a cancel), nobody is left waiting
            current = self._flights.get(key)
            if current is not None and current[1] is future:
                del self._flights[key]
            future.set_result(text)

    def put(self, image_id: str, endpoint: str, ctx: RequestContext, record: dict[str, Any],
            generation: int) -> None:
        """Keep ``record`` (JSON, as the image service answered it), fetched since
        ``generation``, unless a change was told since."""
        self._keep((image_id, endpoint, caller_key(ctx)), json.dumps(record), generation)

    def _keep(self, key: tuple[str, str, Hashable], text: str, generation: int) -> None:
        if generation != self.generation or not self._current():
            return
        image_id = key[0]
        self._records[key] = (self._clock(), text)
        self._records.move_to_end(key)
        self._by_image.setdefault(image_id, set()).add(key)
        while len(self._records) > self.size:
            old, _ = self._records.popitem(last=False)
            self._forget_key(old)

    def _forget_key(self, key: tuple[str, str, Hashable]) -> None:
        keys = self._by_image.get(key[0])
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_image[key[0]]

    def invalidate(self, image_ids: Iterable[str]) -> None:
        """These images changed: drop every record of them (all callers)."""
        self.generation += 1
        for image_id in image_ids:
            for key in self._by_image.pop(image_id, ()):
                self._records.pop(key, None)

    def clear(self) -> None:
        self.generation += 1
        self._records.clear()
        self._by_image.clear()


class ImageCachesAPI(RPCAPI):
    """What the image service tells every process's image records."""

    TOPIC = TOPIC

    async def images_changed(self, ctx: RequestContext, image_ids: list[str]) -> None:
        await self.client.fanout(ctx, "images_changed", image_ids=image_ids)


class ImageCacheListener:
    """Serves ``image_caches`` in a process with image records: drops the changed ones."""

    METHODS = ("images_changed",)

    def __init__(self, records: ImageRecords) -> None:
        self.records = records

    async def images_changed(self, ctx: RequestContext, image_ids: list[str]) -> None:
        LOG.debug("images changed elsewhere: %s", ", ".join(image_ids))
        self.records.invalidate(image_ids)
