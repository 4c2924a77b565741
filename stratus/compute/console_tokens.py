"""One-time console tokens: minted by compute-api for a guest's console, consumed once by
the console proxy.

The token itself goes only to the caller (in the console URL); the table keeps its
SHA-256, so a copy of the database opens no console. A token opens one connection before
it expires (``TOKEN_TTL`` seconds, Nova's default): consuming deletes its row in the same
statement that finds it, so two connections racing with one token get one console.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, select

from stratus.compute.console_types import ConsoleEndpoint
from stratus.compute.models import ConsoleAuthToken
from stratus.core.db import Txn, utcnow

#: Seconds a console token stays usable (Nova's ``[consoleauth] token_ttl``).
TOKEN_TTL = 600


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class ConsoleGrant:
    """What a valid token opens: the guest and its console endpoint."""

    instance_uuid: str
    console_type: str
    host: str
    port: int | None
    internal_access_path: str | None

    @classmethod
    def of(cls, row: ConsoleAuthToken) -> ConsoleGrant:
        return cls(row.instance_uuid, row.console_type, row.host, row.port,
                   row.internal_access_path)


class ConsoleTokens:
    def __init__(self, txn: Txn) -> None:
        self.session = txn.session

    async def mint(self, instance_uuid: str, console_type: str, endpoint: ConsoleEndpoint,
                   *, ttl: float = TOKEN_TTL, now: dt.datetime | None = None) -> str:
        """A new token for ``endpoint``, stored hashed; the plain token is returned once."""
        token = secrets.token_urlsafe(32)
        now = now or utcnow()
        self.session.add(ConsoleAuthToken(
            token_hash=token_hash(token), instance_uuid=instance_uuid,
            console_type=console_type, host=endpoint.host, port=endpoint.port,
            internal_access_path=endpoint.path,
            expires_at=now + dt.timedelta(seconds=ttl), created_at=now))
        await self.session.flush()
        return token

    async def show(self, token: str, *, now: dt.datetime | None = None) -> ConsoleGrant | None:
        """The grant of a valid token, leaving it usable (the admin API); None if unknown,
        used or expired."""
        row = await self.session.scalar(select(ConsoleAuthToken).where(
            ConsoleAuthToken.token_hash == token_hash(token),
            ConsoleAuthToken.expires_at > (now or utcnow())))
        return ConsoleGrant.of(row) if row is not None else None

    async def consume(self, token: str, *,
                      now: dt.datetime | None = None) -> ConsoleGrant | None:
        """The grant of a valid token, which is used up; None if unknown, used or expired.
        Expired tokens are swept on the way."""
        now = now or utcnow()
        await self.session.execute(delete(ConsoleAuthToken).where(
            ConsoleAuthToken.expires_at <= now))
        row = await self.session.scalar(select(ConsoleAuthToken).where(
            ConsoleAuthToken.token_hash == token_hash(token)))
        if row is None:
            return None
        deleted = await self.session.execute(delete(ConsoleAuthToken).where(
            ConsoleAuthToken.token_hash == row.token_hash))
        if getattr(deleted, "rowcount", 1) != 1:  # another connection took it first
            return None
        return ConsoleGrant.of(row)

    async def revoke_instance(self, instance_uuid: str) -> None:
        """Forget every token of a guest (it is deleted or moved)."""
        await self.session.execute(delete(ConsoleAuthToken).where(
            ConsoleAuthToken.instance_uuid == instance_uuid))
