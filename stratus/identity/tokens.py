"""Fernet token format: what a token says, packed small, encrypted, and nothing stored.

The payload is a msgpack list: format version, user id, auth methods (bit set), scope kind,
scope id, expiry, issue time, audit ids, application credential id. 32-hex ids are packed
as 16 bytes so tokens stay short, as Keystone's do.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from dataclasses import dataclass, field

import msgpack
from cryptography.fernet import InvalidToken

from stratus.identity.errors import TokenDecodeError
from stratus.identity.fernet import KeyRepository

FORMAT_VERSION = 1

METHODS = ("password", "token", "application_credential")

UNSCOPED, PROJECT, DOMAIN, SYSTEM = 0, 1, 2, 3


def new_audit_id() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()


def _pack_id(value: str | None) -> bytes | str | None:
    if value is not None and len(value) == 32:
        try:
            return bytes.fromhex(value)
        except ValueError:
            pass
    return value


def _unpack_id(value: bytes | str | None) -> str | None:
    if isinstance(value, bytes):
        return value.hex()
    return value


def _pack_audit(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "==")


def _unpack_audit(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).rstrip(b"=").decode()


def _ts(value: dt.datetime) -> float:
    return value.timestamp()


def _from_ts(value: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(value, dt.UTC)


@dataclass
class TokenPayload:
    user_id: str
    methods: list[str]
    expires_at: dt.datetime
    issued_at: dt.datetime
    audit_ids: list[str]
    project_id: str | None = None
    domain_id: str | None = None
    system: str | None = None
    app_cred_id: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def scope_kind(self) -> int:
        if self.project_id:
            return PROJECT
        if self.domain_id:
            return DOMAIN
        if self.system:
            return SYSTEM
        return UNSCOPED

    @property
    def audit_id(self) -> str:
        return self.audit_ids[0]

    @property
    def audit_chain_id(self) -> str:
        return self.audit_ids[-1]


class TokenFormatter:
    def __init__(self, keys: KeyRepository) -> None:
        self.keys = keys

    def encode(self, payload: TokenPayload) -> str:
        bits = sum(1 << METHODS.index(m) for m in set(payload.methods))
        scope_kind = payload.scope_kind
        scope_id = {PROJECT: payload.project_id, DOMAIN: payload.domain_id,
                    SYSTEM: payload.system}.get(scope_kind)
        packed = msgpack.packb([
            FORMAT_VERSION,
            _pack_id(payload.user_id),
            bits,
            scope_kind,
            _pack_id(scope_id),
            _ts(payload.expires_at),
            _ts(payload.issued_at),
            [_pack_audit(a) for a in payload.audit_ids],
            _pack_id(payload.app_cred_id),
        ])
        token = self.keys.fernet().encrypt(packed)
        return token.rstrip(b"=").decode()

    def decode(self, token: str) -> TokenPayload:
        try:
            raw = token.encode("ascii")
            raw += b"=" * (-len(raw) % 4)
            packed = self.keys.fernet().decrypt(raw)
            fields = msgpack.unpackb(packed)
            version, user, bits, scope_kind, scope_id, expires, issued, audits, app_cred = fields
        except (InvalidToken, UnicodeError, ValueError, TypeError,
                msgpack.UnpackException) as exc:
            raise TokenDecodeError("not a valid token") from exc
        if version != FORMAT_VERSION:
            raise TokenDecodeError(f"unknown token format {version}")
        scope = _unpack_id(scope_id)
        return TokenPayload(
            user_id=_unpack_id(user) or "",
            methods=[m for i, m in enumerate(METHODS) if bits & (1 << i)],
            expires_at=_from_ts(expires),
            issued_at=_from_ts(issued),
            audit_ids=[_unpack_audit(a) for a in audits],
            project_id=scope if scope_kind == PROJECT else None,
            domain_id=scope if scope_kind == DOMAIN else None,
            system=scope if scope_kind == SYSTEM else None,
            app_cred_id=_unpack_id(app_cred),
        )
