"""``stratus doctor`` against the machine's configured PostgreSQL and RabbitMQ: a real
connection each (the unreachable cases are in tests/unit/test_doctor.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stratus.cli import doctor
from stratus.cli.doctor import Status
from stratus.core.config import Settings


async def test_the_configured_database_answers(db_url: str, tmp_path: Path) -> None:
    check = await doctor.check_postgresql(Settings(data_dir=tmp_path, database_url=db_url))
    if db_url.startswith("sqlite"):
        assert check.status is Status.NOT_CONFIGURED and "SQLite" in check.detail
    else:
        assert check.status is Status.OK, check


@pytest.mark.rabbitmq
async def test_the_configured_broker_answers(rabbit_url: str, tmp_path: Path) -> None:
    check = await doctor.check_rabbitmq(Settings(data_dir=tmp_path, bus_url=rabbit_url))
    assert check.status is Status.OK, check
    assert check.detail.startswith("answers at ")
    password = rabbit_url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    assert f":{password}@" not in check.detail  # the user is shown, never the password
