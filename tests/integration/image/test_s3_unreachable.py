"""``stratus up`` with the s3 image store and no gateway answering: a clear exit, no traceback,
no credential in what it prints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.e2e.cloud import free_port


def test_up_with_the_gateway_down_exits_clearly(tmp_path: Path) -> None:
    gateway = free_port()  # nothing listens there
    access, secret = "AKIASTRATUSTESTKEY01", "s3cr3t-that-must-never-be-printed"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATUS_")}
    env.update({"STRATUS_CONFIG_FILE": "/nonexistent", "STRATUS_IMAGE__STORE": "s3",
                "STRATUS_IMAGE__S3_STORE_HOST": f"http://127.0.0.1:{gateway}",
                "STRATUS_IMAGE__S3_STORE_ACCESS_KEY": access,
                "STRATUS_IMAGE__S3_STORE_SECRET_KEY": secret,
                "STRATUS_IDENTITY__BCRYPT_ROUNDS": "4", "STRATUS_COMPUTE__VIRT_DRIVER": "fake",
                "STRATUS_NETWORK__BACKEND": "noop"})
    done = subprocess.run([str(Path(sys.executable).parent / "stratus"), "up", "--data-dir",
                           str(tmp_path / "data"), "--port", str(free_port())], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stderr
    message = " ".join((done.stdout + done.stderr).split())
    assert (f"Stratus cannot start: The image store's object storage at "
            f"http://127.0.0.1:{gateway} did not answer") in message
    assert "Traceback" not in done.stderr
    logged = (tmp_path / "data" / "stratus.log").read_text()
    for text in (done.stdout, done.stderr, logged):
        assert access not in text and secret not in text
