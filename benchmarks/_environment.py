"""Where a benchmark ran: machine, Python, package versions and the scenario's backends."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("stratus", "fastapi", "starlette", "pydantic", "sqlalchemy", "alembic", "aiosqlite",
            "asyncpg", "uvicorn", "httpx", "cryptography", "bcrypt", "msgpack", "psutil")


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip()
        if sep and key not in info:
            info[key] = value.strip()
    return info


def machine() -> dict[str, Any]:
    import psutil

    cpu = _cpuinfo()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu_model": cpu.get("model name") or platform.processor() or platform.machine(),
        "logical_cpus": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "usable_cpus": usable,
        "virtualized": "hypervisor" in cpu.get("flags", "").split(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "os": platform.platform(terse=True),
        "arch": platform.machine(),
    }


def packages() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages: other work on the machine skews every figure."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def environment(backends: dict[str, Any], *,
                load_before: list[float] | None = None) -> dict[str, Any]:
    host = machine()
    host["load_average_before_run"] = load_before
    return {
        "machine": host,
        "python": {"version": platform.python_version(),
                   "implementation": platform.python_implementation()},
        "backends": backends,
        "packages": packages(),
    }
