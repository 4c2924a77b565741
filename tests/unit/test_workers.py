"""``stratus serve --workers``: which setups a pool refuses, and the sockets it shares."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from stratus.cli.workers import pool_refusal, reuse_port_socket
from stratus.core.config import Settings

API = ["identity-api", "compute-api"]
SPLIT = {"bus_url": "rabbit://guest:guest@127.0.0.1:5672/", "port": 18080,
         "database_url": "postgresql+asyncpg://postgres@127.0.0.1/test"}


def settings(tmp_path: Path, **overrides: object) -> Settings:
    return Settings(**{"data_dir": tmp_path, **SPLIT, **overrides})


def test_split_mode_apis_may_run_as_a_pool(tmp_path: Path) -> None:
    assert pool_refusal(settings(tmp_path), API) is None


@pytest.mark.parametrize(("overrides", "names", "said"), [
    ({}, ["scheduler", "conductor"], "only API units share a port"),
    ({"port": 0}, API, "give it"),
    ({"bus_url": "memory://"}, API, "memory:// bus"),
    ({"database_url": None}, API, "SQLite"),
    ({}, ["dashboard"], "SESSION_STORE=memcached"),
])
def test_a_pool_is_refused_where_processes_cannot_share_state(
        tmp_path: Path, overrides: dict[str, object], names: list[str], said: str) -> None:
    refusal = pool_refusal(settings(tmp_path, **overrides), names)
    assert refusal is not None and said in refusal


def test_workers_share_a_port_no_other_program_can_take() -> None:
    first = reuse_port_socket("127.0.0.1", 0)
    port = first.getsockname()[1]
    try:
        second = reuse_port_socket("127.0.0.1", port)  # the next worker
        second.close()
        with socket.socket() as other, pytest.raises(OSError):
            other.bind(("127.0.0.1", port))
    finally:
        first.close()
