"""Fernet key rotation and the token payload format."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest

from stratus.identity.fernet import KeyRepository
from stratus.identity.tokens import TokenDecodeError, TokenFormatter, TokenPayload, new_audit_id


def keys_on_disk(path: Path) -> list[int]:
    return sorted(int(p.name) for p in path.iterdir() if p.name.isdigit())


def payload(**changes: object) -> TokenPayload:
    now = dt.datetime(2026, 11, 22, 12, 0, 0, 123456, tzinfo=dt.UTC)
    fields: dict[str, object] = {
        "user_id": "0123456789abcdef0123456789abcdef", "methods": ["password", "token"],
        "expires_at": now + dt.timedelta(hours=1), "issued_at": now,
        "audit_ids": [new_audit_id(), new_audit_id()],
        "project_id": "fedcba9876543210fedcba9876543210"}
    fields.update(changes)
    return TokenPayload(**fields)  # type: ignore[arg-type]


def test_repository_starts_with_staged_and_primary_keys(tmp_path: Path) -> None:
    repo = KeyRepository(tmp_path / "keys")
    assert repo.initialize() is True
    assert keys_on_disk(repo.path) == [0, 1]
    assert stat.S_IMODE(repo.path.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in repo.path.iterdir())
    assert repo.initialize() is False  # keeps the keys it has


def test_rotation_promotes_staged_and_prunes_oldest(tmp_path: Path) -> None:
    repo = KeyRepository(tmp_path / "keys", max_active_keys=3)
    repo.initialize()
    staged = (repo.path / "0").read_bytes()
    assert repo.rotate() == 2
    assert (repo.path / "2").read_bytes() == staged  # the staged key became primary
    assert keys_on_disk(repo.path) == [0, 1, 2]
    assert repo.rotate() == 3
    assert keys_on_disk(repo.path) == [0, 2, 3]  # key 1 pruned: only 3 kept


def test_tokens_survive_rotation_until_their_key_is_pruned(tmp_path: Path) -> None:
    repo = KeyRepository(tmp_path / "keys", max_active_keys=3)
    repo.initialize()
    issuer = TokenFormatter(repo)
    token = issuer.encode(payload())
    repo.rotate()
    # A fresh formatter (another process) sees the rotated repository.
    reader = TokenFormatter(KeyRepository(repo.path, max_active_keys=3))
    assert reader.decode(token).user_id == payload().user_id
    repo.rotate()
    with pytest.raises(TokenDecodeError):
        TokenFormatter(KeyRepository(repo.path)).decode(token)


def test_token_staged_on_another_node_is_accepted(tmp_path: Path) -> None:
    """A node that already rotated encrypts with what is still our staged key."""
    ours = KeyRepository(tmp_path / "ours")
    ours.initialize()
    theirs_path = tmp_path / "theirs"
    theirs_path.mkdir()
    for p in ours.path.iterdir():
        (theirs_path / p.name).write_bytes(p.read_bytes())
    theirs = KeyRepository(theirs_path)
    theirs.rotate()
    token = TokenFormatter(theirs).encode(payload())
    assert TokenFormatter(ours).decode(token).project_id == payload().project_id


@pytest.mark.parametrize("scope", [
    {"project_id": "fedcba9876543210fedcba9876543210"},
    {"project_id": None, "domain_id": "default"},
    {"project_id": None, "system": "all"},
    {"project_id": None},
])
def test_payload_round_trips(tmp_path: Path, scope: dict[str, object]) -> None:
    repo = KeyRepository(tmp_path / "keys")
    repo.initialize()
    formatter = TokenFormatter(repo)
    original = payload(**scope, app_cred_id="abc")
    decoded = formatter.decode(formatter.encode(original))
    assert decoded == original
    assert decoded.issued_at.microsecond == 123456


def test_tokens_are_short_and_unpadded(tmp_path: Path) -> None:
    repo = KeyRepository(tmp_path / "keys")
    repo.initialize()
    token = TokenFormatter(repo).encode(payload())
    assert "=" not in token
    assert len(token) < 255  # Keystone keeps Fernet tokens under 255 characters


@pytest.mark.parametrize("garbage", ["", "x", "gAAAAA" + "A" * 100, "é" * 10])
def test_garbage_is_not_a_token(tmp_path: Path, garbage: str) -> None:
    repo = KeyRepository(tmp_path / "keys")
    repo.initialize()
    with pytest.raises(TokenDecodeError):
        TokenFormatter(repo).decode(garbage)
