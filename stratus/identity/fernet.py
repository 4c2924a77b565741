"""The Fernet key repository: staged, primary and secondary keys on disk, as Keystone keeps them.

Keys are files named by integers. ``0`` is the staged key: every node can already decrypt
with it, so promoting it never breaks tokens issued elsewhere. The highest number is the
primary key, the only one that encrypts. The rest are secondary keys, kept to decrypt tokens
issued before the last rotations. Rotation promotes the staged key, stages a new one and
prunes the oldest secondaries down to ``max_active_keys``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from cryptography.fernet import Fernet, MultiFernet

LOG = logging.getLogger(__name__)


class KeyRepository:
    def __init__(self, path: Path, max_active_keys: int = 3) -> None:
        if max_active_keys < 2:
            raise ValueError("max_active_keys must be at least 2 (staged and primary)")
        self.path = path
        self.max_active_keys = max_active_keys
        self._lock = threading.Lock()
        self._fernet: MultiFernet | None = None
        self._loaded_mtime: float | None = None
        self._checked_at = 0.0

    def _keys(self) -> dict[int, bytes]:
        keys = {}
        for entry in self.path.iterdir():
            if entry.name.isdigit():
                keys[int(entry.name)] = entry.read_bytes().strip()
        return keys

    def _write_key(self, index: int, key: bytes) -> None:
        target = self.path / str(index)
        tmp = self.path / f".{index}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
        os.replace(tmp, target)

    def initialize(self) -> bool:
        """Create the repository with a staged and a primary key; False if it already had keys."""
        with self._lock:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.path, 0o700)
            if self._keys():
                return False
            self._write_key(0, Fernet.generate_key())
            self._write_key(1, Fernet.generate_key())
            self._fernet = None
            LOG.info("created Fernet key repository at %s", self.path)
            return True

    def rotate(self) -> int:
        """Promote the staged key, stage a new one, prune old secondaries.

        Returns the new primary key's index.
        """
        with self._lock:
            keys = self._keys()
            if 0 not in keys:
                raise RuntimeError(f"key repository {self.path} has no staged key")
            new_primary = max(keys) + 1
            os.replace(self.path / "0", self.path / str(new_primary))
            self._write_key(0, Fernet.generate_key())
            keys = self._keys()
            excess = len(keys) - self.max_active_keys
            for index in sorted(k for k in keys if k != 0)[:max(0, excess)]:
                (self.path / str(index)).unlink()
            self._fernet = None
            LOG.info("rotated Fernet keys: primary is now key %d", new_primary)
            return new_primary

    def fernet(self) -> MultiFernet:
        """Primary first (it encrypts), then every other key; reloaded when the files change."""
        now = time.monotonic()
        if self._fernet is not None and now - self._checked_at < 1.0:
            return self._fernet
        with self._lock:
            self._checked_at = now
            mtime = self.path.stat().st_mtime
            if self._fernet is None or mtime != self._loaded_mtime:
                keys = self._keys()
                if len(keys) < 2:
                    raise RuntimeError(f"key repository {self.path} is not initialised")
                order = sorted(keys, reverse=True)  # primary (highest) first, staged (0) last
                self._fernet = MultiFernet([Fernet(keys[i]) for i in order])
                self._loaded_mtime = mtime
            return self._fernet
