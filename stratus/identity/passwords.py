"""Password and secret hashing with bcrypt, off the event loop.

bcrypt reads at most 72 bytes; longer secrets are cut there explicitly (bcrypt 5 refuses
them instead of truncating), which is what Keystone's bcrypt hashing has always done.
"""

from __future__ import annotations

import asyncio

import bcrypt

BCRYPT_MAX_BYTES = 72


def _encode(secret: str) -> bytes:
    return secret.encode("utf-8")[:BCRYPT_MAX_BYTES]


def hash_secret_sync(secret: str, rounds: int) -> str:
    return bcrypt.hashpw(_encode(secret), bcrypt.gensalt(rounds)).decode("ascii")


async def hash_secret(secret: str, rounds: int) -> str:
    return await asyncio.to_thread(hash_secret_sync, secret, rounds)


async def verify_secret(secret: str, hashed: str | None) -> bool:
    if not hashed:
        return False
    try:
        return await asyncio.to_thread(bcrypt.checkpw, _encode(secret), hashed.encode("ascii"))
    except ValueError:
        return False
