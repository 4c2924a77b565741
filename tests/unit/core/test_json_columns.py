"""JSON columns are read by ``json_column_value``: what ``json.loads`` reads, the same
errors, a fresh object for each empty value."""

from __future__ import annotations

import json

import pytest

from stratus.core.db import Database, json_column_value

DOCUMENTS = ['{}', '[]', 'null', '0', '"text"', '{"name": "m1.tiny", "vcpus": 1, "ram": 512}',
             '[{"ips": [{"address": "10.0.0.2", "version": 4}]}]',
             '["d\\u00e9faut", "\\ud83d\\ude00"]', ' {"a": 1} ', '{"a": 1}\n',
             '[1.5e3, true, false, null]']


@pytest.mark.parametrize("document", DOCUMENTS)
def test_reads_what_json_loads_reads(document: str) -> None:
    assert json_column_value(document) == json.loads(document)


@pytest.mark.parametrize("document", ['{"a": 1} x', "", "{", "[1,]", "{} {}"])
def test_refuses_what_json_loads_refuses(document: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        json.loads(document)
    with pytest.raises(json.JSONDecodeError):
        json_column_value(document)


def test_empty_values_are_fresh_objects() -> None:
    first, second = json_column_value("{}"), json_column_value("{}")
    first["key"] = "value"
    assert second == {} and json_column_value("[]") is not json_column_value("[]")


def test_every_database_engine_reads_json_columns_with_it() -> None:
    database = Database("sqlite+aiosqlite:///:memory:")
    assert database.engine.dialect._json_deserializer is json_column_value  # type: ignore[attr-defined]
