"""Identity's domain layer: the process-wide runtime and the per-transaction service."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from stratus.core.config import Settings
from stratus.core.db import Database
from stratus.core.policy import Enforcer
from stratus.identity.app_credentials import AppCredentialManager
from stratus.identity.assignments import AssignmentManager
from stratus.identity.authentication import Authenticator
from stratus.identity.catalog import CatalogManager
from stratus.identity.fernet import KeyRepository
from stratus.identity.migrations import HEAD, SCRIPT_LOCATION, VERSION_TABLE
from stratus.identity.policy import RULES
from stratus.identity.resources import ResourceManager
from stratus.identity.revocation import RevocationLog
from stratus.identity.tokens import TokenFormatter
from stratus.identity.users import UserManager


class IdentityRuntime:
    """What identity keeps for the life of the process: database, keys, policy, listeners."""

    def __init__(self, settings: Settings, db: Database | None = None) -> None:
        self.settings = settings
        self.db = db or Database(settings.database_url_for("identity",
                                                           settings.identity.database_url))
        self.keys = KeyRepository(settings.key_repository, settings.identity.max_active_keys)
        self.formatter = TokenFormatter(self.keys)
        self.enforcer = Enforcer(RULES, settings.policy_file)
        #: Called after any change that can invalidate a token (caches subscribe here).
        self.revocation_listeners: list[Callable[[], None]] = []

    @property
    def revocation_retention(self) -> dt.timedelta:
        ident = self.settings.identity
        return dt.timedelta(seconds=ident.token_expiration + ident.allow_expired_window)

    async def start(self) -> None:
        """Bring the schema to head and make sure a Fernet key repository exists."""
        await self.db.upgrade(SCRIPT_LOCATION, VERSION_TABLE, known_head=HEAD)
        self.keys.initialize()

    async def stop(self) -> None:
        await self.db.dispose()

    @asynccontextmanager
    async def service(self) -> AsyncIterator[IdentityService]:
        """A service bound to one transaction: committed on success, rolled back on error."""
        async with self.db.session() as session:
            svc = IdentityService(self, session)
            yield svc
        if svc.revocations.changed:
            for listener in self.revocation_listeners:
                listener()

    async def validate(self, token: str, *, allow_expired: bool = False) -> dict[str, Any]:
        """In-process ``TokenValidator``: the token body, or ``NotFound``."""
        async with self.service() as svc:
            _, body = await svc.auth.validate(token, allow_expired=allow_expired)
            return body


class IdentityService:
    """Identity's operations within one database transaction."""

    def __init__(self, runtime: IdentityRuntime, session: AsyncSession) -> None:
        self.runtime = runtime
        self.session = session
        self.revocations = RevocationLog(session, runtime.revocation_retention)
        self.resources = ResourceManager(self)
        self.users = UserManager(self)
        self.assignments = AssignmentManager(self)
        self.catalog = CatalogManager(self)
        self.app_credentials = AppCredentialManager(self)
        self.auth = Authenticator(self)
