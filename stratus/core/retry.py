"""Calls to another service tried again while it is only slow or briefly away.

``transient(exc)``: the failure is the callee's, not the request's: ``ServiceUnavailable``
(no answer: a refused or reset connection, a timeout; or a 5xx), also when another error
wraps it (``raise ... from``). A refusal (4xx) is not transient: asking again gets the same.

``with_backoff`` runs a call until it succeeds, fails otherwise than transiently, or the
tries are spent: up to ``Backoff.tries`` tries, the waits between them doubling from
``first`` up to ``cap`` seconds (with jitter, so a burst of callers that failed together
does not come back together). The last failure is raised as it was, so the caller ends
the way it did before (an ERROR with a fault), only later and only when the callee stayed
away. Only for idempotent calls.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from stratus.core.exceptions import ServiceUnavailable

LOG = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    #: Tries in all (1: no retry). 8 tries wait 1+2+4+8+16+30+30 = 91 s in all: through a
    #: restart of the callee under load (50-80 s in ``benchmarks chaos``).
    tries: int = 8
    #: Seconds before the second try; each wait doubles up to ``cap``.
    first: float = 1.0
    cap: float = 30.0

    def delays(self) -> list[float]:
        """The waits between the tries, before jitter."""
        return [min(self.cap, self.first * 2 ** n) for n in range(max(0, self.tries - 1))]


def transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error it was raised from) says the callee failed or did not
    answer, rather than refused."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ServiceUnavailable):
            return True
        seen.add(id(current))
        current = current.__cause__
    return False


async def with_backoff(call: Callable[[], Awaitable[T]], *, what: str,
                       backoff: Backoff = Backoff(),
                       on_retry: Callable[[BaseException], None] | None = None) -> T:
    """``call()``'s result, tried again after a transient failure (see the module).
    ``what`` names the call in the log; ``on_retry`` is told of each failure tried again."""
    delays = backoff.delays()
    for attempt in range(len(delays) + 1):
        try:
            return await call()
        except Exception as exc:
            if attempt == len(delays) or not transient(exc):
                raise
            delay = delays[attempt] * random.uniform(0.75, 1.25)
            LOG.warning("%s failed (%s); trying again in %.1f s (%d of %d tries left)",
                        what, exc, delay, len(delays) - attempt, backoff.tries)
            if on_retry is not None:
                on_retry(exc)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
