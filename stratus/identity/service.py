"""Identity's domain layer: the process-wide runtime and the per-transaction facade.

Contracts: ``IdentityRuntime.service()`` yields an ``IdentityService`` bound to one
transaction (committed on success, rolled back on error); the facade only wires the
repositories, each given the session and the collaborators it names. Token caches are
told of revocations after the commit, never before.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from stratus.core.config import Settings
from stratus.core.db import Database, Txn
from stratus.core.policy import Enforcer
from stratus.identity.app_credentials import AppCredentials
from stratus.identity.assignments import Assignments
from stratus.identity.authentication import Authentication
from stratus.identity.catalog import Catalog
from stratus.identity.fernet import KeyRepository
from stratus.identity.migrations import HEAD, SCRIPT_LOCATION, VERSION_TABLE
from stratus.identity.policy import RULES
from stratus.identity.resources import Resources
from stratus.identity.revocation import RevocationListener, RevocationLog
from stratus.identity.role_assignments import RoleAssignments
from stratus.identity.tokens import TokenFormatter
from stratus.identity.users import Users


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
        self.revocation_listeners: list[RevocationListener] = []

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
    async def service(self, *, write: bool = True) -> AsyncIterator[IdentityService]:
        """A service bound to one transaction: committed on success, rolled back on error.
        ``write=False`` for work that only reads (see ``Database.transaction``)."""
        async with self.db.transaction(write=write) as txn:
            yield IdentityService(self, txn)

    async def validate(self, token: str, *, allow_expired: bool = False) -> dict[str, Any]:
        """In-process ``TokenValidator``: the token body, or ``NotFound``."""
        async with self.service(write=False) as svc:
            _, body = await svc.auth.validate(token, allow_expired=allow_expired)
            return body


class IdentityService:
    """Identity's repositories within one database transaction, wired in dependency order."""

    def __init__(self, runtime: IdentityRuntime, txn: Txn) -> None:
        options = runtime.settings.identity
        self.txn = txn
        self.session = txn.session
        self.revocations = RevocationLog(txn, runtime.revocation_retention,
                                         runtime.revocation_listeners)
        self.resources = Resources(txn, self.revocations)
        self.users = Users(txn, self.resources, self.revocations, options.bcrypt_rounds)
        self.assignments = Assignments(txn, self.resources, self.users, self.revocations)
        self.role_assignments = RoleAssignments(txn, self.assignments, self.resources,
                                                self.users)
        self.catalog = Catalog(txn)
        self.app_credentials = AppCredentials(txn, self.assignments, self.revocations,
                                              options.bcrypt_rounds)
        self.auth = Authentication(
            txn=txn, resources=self.resources, users=self.users,
            assignments=self.assignments, catalog=self.catalog,
            app_credentials=self.app_credentials,
            revocations=self.revocations, formatter=runtime.formatter, options=options)
