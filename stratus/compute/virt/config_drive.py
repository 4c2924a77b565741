"""A config drive's ISO 9660 image, made with Debian's ``genisoimage`` (Nova's ``mkisofs_cmd``).

The files (``stratus.compute.metadata.config_drive``) are written into a private scratch
directory next to the image (mode 0700, removed at once), then ``genisoimage`` makes the
image with Rock Ridge and Joliet names, lower case and several dots allowed, labelled
``config-2``. The image may hold the administrator password: it is written mode 0600 and
its scratch files never outlive the call.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from stratus.compute.virt.driver import VirtError

LABEL = "config-2"
MKISOFS = "genisoimage"
PUBLISHER = "Stratus Compute"


def _scratch_path(root: Path, relative: str) -> Path:
    parts = PurePosixPath(relative).parts
    if not parts or PurePosixPath(relative).is_absolute() or ".." in parts:
        raise VirtError(f"Config drive file {relative!r} is not a relative path.")
    return root.joinpath(*parts)


def write_iso(files: Mapping[str, bytes], target: Path, *, timeout: float = 60) -> Path:
    """``files`` (path → bytes) as an ISO 9660 image at ``target`` (replaced if there)."""
    # mkdtemp makes the directory mode 0700; the image is made 0600 before anything is
    # written into it (genisoimage writes into the file as it is). The process's umask is
    # left alone: other threads create files meanwhile.
    scratch = Path(tempfile.mkdtemp(prefix=".config-drive-", dir=target.parent))
    partial = target.with_name(f".{target.name}.partial")
    try:
        partial.unlink(missing_ok=True)
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        for relative, data in files.items():
            path = _scratch_path(scratch, relative)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        args = [MKISOFS, "-o", str(partial), "-ldots", "-allow-lowercase", "-allow-multidot",
                "-l", "-publisher", PUBLISHER, "-quiet", "-J", "-r", "-V", LABEL,
                str(scratch)]
        try:
            done = subprocess.run(args, capture_output=True, text=True, check=False,
                                  timeout=timeout)
        except FileNotFoundError as exc:
            raise VirtError(f"Could not make the config drive: {MKISOFS} is not "
                            "installed.") from exc
        except subprocess.TimeoutExpired as exc:
            raise VirtError(f"Could not make the config drive: {MKISOFS} took longer than "
                            f"{timeout:.0f} s.") from exc
        if done.returncode != 0:
            # Its messages name files, never their contents.
            raise VirtError("Could not make the config drive: "
                            f"{done.stderr.strip()[-300:] or MKISOFS + ' failed'}")
        partial.replace(target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        partial.unlink(missing_ok=True)
    return target
