"""Application credentials: a user's delegated, project-bound secret with a subset of roles.

Contracts: ``AppCredentials`` is the repository of one transaction; the secret is returned
once, at creation, and only its hash is kept; a credential delegates only roles its creator
holds in the token used; deleting one flushes token caches.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from dataclasses import dataclass

from sqlalchemy import select

from stratus.core.db import Txn, utcnow
from stratus.core.exceptions import Forbidden, NotFound, ValidationError
from stratus.identity.assignments import Assignments
from stratus.identity.errors import duplicate
from stratus.identity.models import ApplicationCredential, Role
from stratus.identity.passwords import hash_secret
from stratus.identity.revocation import RevocationLog


def generate_secret() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(64)).rstrip(b"=").decode()


@dataclass(eq=False)
class AppCredentials:
    """A user's application credentials within one transaction; ``assignments`` finds the
    roles delegated, ``bcrypt_rounds`` hashes the secret."""

    txn: Txn
    assignments: Assignments
    revocations: RevocationLog
    bcrypt_rounds: int

    async def create(self, *, user_id: str, project_id: str, name: str, token_role_ids: list[str],
                     secret: str | None = None, description: str = "",
                     expires_at: dt.datetime | None = None, unrestricted: bool = False,
                     requested_roles: list[dict[str, str]] | None = None,
                     ) -> tuple[ApplicationCredential, str]:
        """Create one; returns the row and its secret, which is never retrievable again."""
        if expires_at is not None and expires_at <= utcnow():
            raise ValidationError("expires_at must be in the future.")
        if await self.txn.session.scalar(select(ApplicationCredential.id).where(
                ApplicationCredential.user_id == user_id, ApplicationCredential.name == name)):
            raise duplicate("store", "application_credential",
                            f"Duplicate entry found with name {name}.")
        role_ids = list(token_role_ids)
        if requested_roles:
            wanted = []
            for ref in requested_roles:
                role = await self.assignments.find_role(role_id=ref.get("id"),
                                                        name=ref.get("name"))
                if role.id not in token_role_ids:
                    raise Forbidden(f"You do not hold the role {role.name} you tried to delegate.")
                wanted.append(role.id)
            role_ids = wanted
        secret = secret or generate_secret()
        cred = ApplicationCredential(
            name=name, user_id=user_id, project_id=project_id, description=description,
            expires_at=expires_at, unrestricted=unrestricted, role_ids=role_ids,
            secret_hash=await hash_secret(secret, self.bcrypt_rounds))
        self.txn.session.add(cred)
        await self.txn.session.flush()
        return cred, secret

    async def get(self, cred_id: str, *, user_id: str | None = None) -> ApplicationCredential:
        cred = await self.txn.session.get(ApplicationCredential, cred_id)
        if cred is None or (user_id is not None and cred.user_id != user_id):
            raise NotFound(f"Could not find Application Credential: {cred_id}.")
        return cred

    async def find(self, *, user_id: str, name: str) -> ApplicationCredential:
        cred = await self.txn.session.scalar(select(ApplicationCredential).where(
            ApplicationCredential.user_id == user_id, ApplicationCredential.name == name))
        if cred is None:
            raise NotFound(f"Could not find Application Credential: {name}.")
        return cred

    async def list_for_user(self, user_id: str, *,
                            name: str | None = None) -> list[ApplicationCredential]:
        query = select(ApplicationCredential).where(
            ApplicationCredential.user_id == user_id).order_by(ApplicationCredential.name)
        if name is not None:
            query = query.where(ApplicationCredential.name == name)
        return list(await self.txn.session.scalars(query))

    async def delete(self, cred_id: str, *, user_id: str) -> None:
        cred = await self.get(cred_id, user_id=user_id)
        await self.txn.session.delete(cred)
        await self.txn.session.flush()
        # Tokens made from it check that it still exists; flush caches that say otherwise.
        self.revocations.notify()

    async def roles(self, cred: ApplicationCredential) -> list[Role]:
        if not cred.role_ids:
            return []
        return list(await self.txn.session.scalars(
            select(Role).where(Role.id.in_(cred.role_ids)).order_by(Role.name)))
