"""Running nft scripts for the firewall: in this process through libnftables, or with the
``nft`` program.

libnftables (Debian's ``python3-nftables``, a ctypes wrapper of the library ``nft`` itself
is built on; ``make nft-bindings`` links it into the venv) parses the script and commits it
as one transaction just as ``nft -f`` does, without a process per apply: a fork, an exec
and the program's start-up were most of an apply's cost while ports were being created.
Where the module is missing, each script runs ``nft -f -`` as before.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import shutil
import threading
from typing import Any, Protocol

LOG = logging.getLogger(__name__)


class NftError(RuntimeError):
    pass


class NftRunner(Protocol):
    name: str

    async def run(self, script: str) -> str: ...


class NftProcess:
    """``nft -f -`` per script."""

    name = "nft"

    def __init__(self, nft: str = "nft") -> None:
        self.nft = nft

    def available(self) -> bool:
        return shutil.which(self.nft) is not None

    async def run(self, script: str) -> str:
        process = await asyncio.create_subprocess_exec(
            self.nft, "-f", "-", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await process.communicate(script.encode())
        if process.returncode != 0:
            raise NftError(f"nft failed ({process.returncode}): "
                           f"{err.decode(errors='replace').strip()[:2000]}")
        return out.decode()


class LibNftables:
    """One libnftables context, used by one script at a time (a context is not safe to
    share between threads); the commit runs in a worker thread, as the kernel may take a
    while over a large ruleset."""

    name = "libnftables"

    def __init__(self, module: Any) -> None:
        self._nft = module.Nftables()
        self._lock = threading.Lock()

    async def run(self, script: str) -> str:
        return await asyncio.to_thread(self._run, script)

    def _run(self, script: str) -> str:
        with self._lock:
            rc, out, err = self._nft.cmd(script)
        if rc != 0:
            raise NftError(f"libnftables failed ({rc}): {str(err).strip()[:2000]}")
        return str(out)


def runner(nft: str = "nft") -> NftRunner | None:
    """libnftables when its Python module loads, else the ``nft`` program when it is
    there; None when neither is."""
    try:
        return LibNftables(importlib.import_module("nftables"))
    except (ImportError, OSError) as exc:  # no module, or no libnftables.so.1
        LOG.info("firewall: libnftables not usable (%s); applying with %s", exc, nft)
    process = NftProcess(nft)
    return process if process.available() else None
