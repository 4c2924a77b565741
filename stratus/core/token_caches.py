"""Token caches across processes: a revocation recorded by one API process empties the
token cache of every other one, over the bus.

Each process keeps validated tokens in memory (``CachingValidator``, up to
``auth.cache_ttl`` seconds). Revocations themselves live in identity's database, so a
validation that reaches identity always sees them; what a process does not see by itself
is a revocation another process recorded while the token sits in its cache. When identity
runs in several processes (``stratus serve --workers N``, or an API process next to an
identity process of its own), identity fans ``tokens_revoked`` out on ``token_caches``
after the revoking transaction commits, and awaits the broker's confirm before the
request that revoked answers; every process with a token cache listens on its own queue
and empties its cache when the message arrives (a few milliseconds later: the window in
which another process may still accept the token, where keystonemiddleware's cache
leaves up to its whole lifetime).

The in-process ``memory://`` bus reaches no other process: nothing is sent or served there.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from stratus.core.bus import RPCAPI
from stratus.core.context import RequestContext

if TYPE_CHECKING:
    from stratus.core.auth import CachingValidator

LOG = logging.getLogger(__name__)

TOPIC = "token_caches"


class TokenCachesAPI(RPCAPI):
    """What identity tells every process's token cache."""

    TOPIC = TOPIC

    async def tokens_revoked(self, ctx: RequestContext) -> None:
        await self.client.fanout(ctx, "tokens_revoked")


class TokenCacheListener:
    """Serves ``token_caches`` in a process with a token cache: empties it."""

    METHODS = ("tokens_revoked",)

    def __init__(self, cache: CachingValidator) -> None:
        self.cache = cache

    async def tokens_revoked(self, ctx: RequestContext) -> None:
        LOG.debug("a token was revoked elsewhere: emptying this process's token cache")
        self.cache.invalidate()
