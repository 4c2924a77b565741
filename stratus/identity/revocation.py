"""Revocation events: how a stateless token is made invalid before it expires.

An event names some of user, project, domain, audit id and audit chain id. A token is
revoked when it was issued at or before the event's ``issued_before`` and every field the
event names matches the token. Events older than the longest a token can live are pruned.
"""

from __future__ import annotations

import datetime as dt
import inspect
from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy import delete, or_, select

from stratus.core.db import Txn, utcnow
from stratus.identity.models import RevocationEvent
from stratus.identity.tokens import TokenPayload

#: Told that some token may no longer be valid (a cache's ``invalidate``, or a coroutine
#: function that tells other processes).
RevocationListener = Callable[[], Awaitable[None] | None]


class RevocationLog:
    """Records revocation events within one transaction.

    A change that can invalidate a token calls each of ``listeners`` (token caches) once,
    after the transaction commits: flushing earlier would let a concurrent request re-cache
    a token from the old state. On rollback they are not called. A listener may be async
    (the one telling other processes' caches over the bus): it is awaited, so the request
    that revoked answers only after the others were told.
    """

    def __init__(self, txn: Txn, retention: dt.timedelta,
                 listeners: Sequence[RevocationListener]) -> None:
        self.txn = txn
        self.session = txn.session
        self.retention = retention
        self.listeners = listeners
        self._notified = False

    async def revoke(self, *, user_id: str | None = None, project_id: str | None = None,
                     domain_id: str | None = None, audit_id: str | None = None,
                     audit_chain_id: str | None = None) -> None:
        if not any((user_id, project_id, domain_id, audit_id, audit_chain_id)):
            raise ValueError("a revocation event must name what it revokes")
        now = utcnow()
        self.session.add(RevocationEvent(
            user_id=user_id, project_id=project_id, domain_id=domain_id, audit_id=audit_id,
            audit_chain_id=audit_chain_id, issued_before=now, revoked_at=now))
        await self.session.execute(
            delete(RevocationEvent).where(RevocationEvent.revoked_at < now - self.retention))
        await self.session.flush()
        self.notify()

    def notify(self) -> None:
        """Some token may no longer be valid: caches are to be flushed after commit."""
        if not self._notified:
            self._notified = True
            self.txn.after_commit(self._flush_caches)

    async def _flush_caches(self) -> None:
        for listener in self.listeners:
            done = listener()
            if inspect.isawaitable(done):
                await done

    async def is_revoked(self, payload: TokenPayload, *, user_domain_id: str | None,
                         project_domain_id: str | None) -> bool:
        domains = {d for d in (user_domain_id, project_domain_id, payload.domain_id) if d}
        E = RevocationEvent
        query = select(E.id).where(
            E.issued_before >= payload.issued_at,
            or_(E.user_id.is_(None), E.user_id == payload.user_id),
            or_(E.project_id.is_(None), E.project_id == (payload.project_id or "")),
            or_(E.domain_id.is_(None), E.domain_id.in_(domains or {""})),
            or_(E.audit_id.is_(None), E.audit_id == payload.audit_id),
            or_(E.audit_chain_id.is_(None), E.audit_chain_id == payload.audit_chain_id),
        ).limit(1)
        return (await self.session.execute(query)).first() is not None
