"""This cloud's secrets, generated on first start and kept in the data directory (0600).

Apart from ``stratus.stack`` (which re-exports them) so that ``stratus up`` can read or make
the admin password, and begin its bcrypt hash, before it imports what the stack needs.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stratus.core.config import Settings


def admin_password(settings: Settings) -> str:
    """``STRATUS_ADMIN_PASSWORD``, else the one generated on first start (kept 0600)."""
    if settings.admin_password is not None:
        return settings.admin_password.get_secret_value()
    return _generated_once(settings.data_dir / "admin-password",
                           lambda: secrets.token_urlsafe(18))


def metadata_secret(settings: Settings) -> str:
    """The metadata proxies' HMAC key: configured, else generated once and kept (0600)."""
    if settings.metadata.shared_secret is not None:
        return settings.metadata.shared_secret.get_secret_value()
    return _generated_once(settings.data_dir / "metadata-secret", lambda: secrets.token_hex(32))


def _generated_once(path: Path, make: Callable[[], str]) -> str:
    """The secret kept at ``path``; made and written (0600) the first time."""
    if path.exists():
        return path.read_text().strip()
    secret = make()
    write_private(path, secret + "\n")
    return secret


def write_private(path: Path, content: str) -> None:
    """``content`` written to ``path`` readable by its owner only (0600), replacing it whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    os.replace(tmp, path)
