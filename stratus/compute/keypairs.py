"""SSH key pairs: imported, or generated here with the private key handed back once."""

from __future__ import annotations

import base64
import hashlib

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from stratus.compute.models import KeyPair
from stratus.core.exceptions import Conflict, NotFound, ValidationError

__all__ = ["SUPPORTED_TYPES", "KeyPair", "KeyPairs", "fingerprint", "generate_key_pair",
           "validate_public_key"]

SUPPORTED_TYPES = ("ssh",)


def fingerprint(public_key: str) -> str:
    """The key's MD5 fingerprint (``aa:bb:...``), the form Nova reports."""
    try:
        blob = base64.b64decode(public_key.split()[1], validate=True)
    except (IndexError, ValueError) as exc:
        raise ValidationError("Keypair data is invalid: not an OpenSSH public key.") from exc
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def validate_public_key(public_key: str) -> str:
    key = public_key.strip()
    try:
        serialization.load_ssh_public_key(key.encode())
    except (ValueError, TypeError, IndexError) as exc:
        raise ValidationError("Keypair data is invalid: not an OpenSSH public key.") from exc
    return key


def generate_key_pair() -> tuple[str, str]:
    """(public key in OpenSSH form, private key in OpenSSH PEM) for a new RSA-2048 pair."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    return public, pem


class KeyPairs:
    """A user's key pairs within one transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(self, *, user_id: str, name: str, public_key: str | None,
                     key_type: str = "ssh") -> tuple[KeyPair, str | None]:
        """Import ``public_key``, or generate a pair; returns the row and any private key."""
        if key_type not in SUPPORTED_TYPES:
            raise ValidationError(f"Keypair type {key_type!r} is not supported: use ssh.")
        if await self.session.scalar(select(KeyPair.id).where(
                KeyPair.user_id == user_id, KeyPair.name == name)):
            raise Conflict(f"Key pair '{name}' already exists.")
        private_key = None
        if public_key is None:
            public_key, private_key = generate_key_pair()
        else:
            public_key = validate_public_key(public_key)
        pair = KeyPair(user_id=user_id, name=name, type=key_type, public_key=public_key,
                       fingerprint=fingerprint(public_key))
        self.session.add(pair)
        await self.session.flush()
        return pair, private_key

    async def get(self, user_id: str, name: str) -> KeyPair:
        pair = await self.session.scalar(select(KeyPair).where(
            KeyPair.user_id == user_id, KeyPair.name == name))
        if pair is None:
            raise NotFound(f"Keypair {name} not found for user {user_id}")
        return pair

    async def list_for_user(self, user_id: str, *, limit: int | None = None,
                            marker: str | None = None) -> list[KeyPair]:
        query = select(KeyPair).where(KeyPair.user_id == user_id).order_by(KeyPair.name)
        if marker is not None:
            await self.get(user_id, marker)
            query = query.where(KeyPair.name > marker)
        if limit is not None:
            query = query.limit(limit)
        return list(await self.session.scalars(query))

    async def delete(self, user_id: str, name: str) -> None:
        await self.session.delete(await self.get(user_id, name))
        await self.session.flush()
