"""A test cloud started by a fresh interpreter, to read what it has imported when
(``sys.modules``): nothing the test process imported before counts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

#: What every script run by ``run_fresh`` starts with: ``settings(password)`` for a cloud in
#: the data dir given (memory bus, fake virt driver, no-op network, cheap bcrypt);
#: ``first_token(client, password)``, the admin's project token; ``loaded(names)``, those
#: of ``names`` imported by now; ``ARGS``, the further arguments; ``run(main)``, which runs
#: ``main(report)`` and prints the report it filled in.
PRELUDE = """
import asyncio, json, sys
from pathlib import Path

import httpx

from stratus.core.config import Settings
from stratus.stack import Stack
from stratus.units import UNITS, UnitsStart, root_app, run_bootstrap

ARGS = [json.loads(arg) for arg in sys.argv[2:]]


def loaded(names):
    return sorted(name for name in names if name in sys.modules)


def settings(admin_password):
    return Settings(data_dir=Path(sys.argv[1]), public_url="http://test",
                    admin_password=admin_password, bus_url="memory://",
                    identity={"bcrypt_rounds": 4}, compute={"virt_driver": "fake"},
                    network={"backend": "noop"})


async def first_token(client, admin_password):
    auth = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"id": "default"}, "password": admin_password}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}
    return await client.post("/identity/v3/auth/tokens", json=auth)


def run(main):
    report = {}
    asyncio.run(main(report))
    print(json.dumps(report))
"""


def run_fresh(script: str, data_dir: Path, *args: object) -> dict[str, Any]:
    """The report printed by ``PRELUDE`` + ``script`` in a fresh interpreter; ``args`` are
    its ``ARGS`` (through JSON)."""
    result = subprocess.run([sys.executable, "-c", PRELUDE + script, str(data_dir),
                             *(json.dumps(arg) for arg in args)],
                            capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report
