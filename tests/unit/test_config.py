"""Settings: defaults, STRATUS_* environment, the TOML file, and the derived values."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from stratus.core.config import Settings, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No STRATUS_* variable of the developer's shell, and no /etc/stratus file, leaks in."""
    for name in list(os.environ):
        if name.startswith("STRATUS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("STRATUS_CONFIG_FILE", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


def test_defaults(tmp_path: Path) -> None:
    settings = load_settings()
    assert settings.host == "127.0.0.1"
    assert settings.port == 8080
    assert settings.identity.bcrypt_rounds == 12
    assert settings.data_dir == tmp_path / "xdg" / "stratus"
    assert settings.key_repository == tmp_path / "xdg" / "stratus" / "fernet-keys"


def test_env_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATUS_PORT", "9191")
    assert load_settings().port == 9191


def test_env_port_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATUS_PORT", "70000")
    with pytest.raises(ValidationError):
        load_settings()


def test_env_nested_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATUS_IDENTITY__BCRYPT_ROUNDS", "5")
    monkeypatch.setenv("STRATUS_AUTH__CACHE_TTL", "7")
    settings = load_settings()
    assert settings.identity.bcrypt_rounds == 5
    assert settings.auth.cache_ttl == 7
    # the other nested values keep their defaults
    assert settings.identity.token_expiration == 3600
    assert settings.auth.cache_size == 10000


def test_env_nested_key_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATUS_IDENTITY__BCRYPT_ROUNDS", "2")
    with pytest.raises(ValidationError):
        load_settings()


def test_keyword_arguments_beat_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATUS_PORT", "9191")
    assert load_settings(port=7000).port == 7000


def write_toml(path: Path) -> Path:
    path.write_text(
        'port = 9000\n'
        'region = "RegionTwo"\n'
        'host = "10.0.0.5"\n'
        '[identity]\n'
        'bcrypt_rounds = 6\n'
        'token_expiration = 600\n'
    )
    return path


def test_toml_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STRATUS_CONFIG_FILE", str(write_toml(tmp_path / "stratus.toml")))
    settings = load_settings()
    assert settings.port == 9000
    assert settings.region == "RegionTwo"
    assert settings.identity.bcrypt_rounds == 6
    assert settings.identity.token_expiration == 600


def test_env_beats_toml_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STRATUS_CONFIG_FILE", str(write_toml(tmp_path / "stratus.toml")))
    monkeypatch.setenv("STRATUS_PORT", "9100")
    monkeypatch.setenv("STRATUS_IDENTITY__BCRYPT_ROUNDS", "5")
    settings = load_settings()
    assert settings.port == 9100
    assert settings.identity.bcrypt_rounds == 5
    # values only the file sets still come from the file, nested ones included
    assert settings.region == "RegionTwo"
    assert settings.host == "10.0.0.5"
    assert settings.identity.token_expiration == 600


def test_missing_config_file_is_ignored(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STRATUS_CONFIG_FILE", str(tmp_path / "nope.toml"))
    assert load_settings().port == 8080


def test_database_url_for(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    assert settings.database_url_for("identity") == (
        f"sqlite+aiosqlite:///{tmp_path / 'data' / 'identity.db'}"
    )
    assert settings.database_url_for("compute").endswith("/data/compute.db")
    assert settings.database_url_for("identity", "postgresql+asyncpg://h/x") == (
        "postgresql+asyncpg://h/x"
    )
    shared = Settings(data_dir=tmp_path, database_url="postgresql+asyncpg://db/stratus")
    assert shared.database_url_for("identity") == "postgresql+asyncpg://db/stratus"
    assert shared.database_url_for("identity", "sqlite+aiosqlite:///x.db") == (
        "sqlite+aiosqlite:///x.db"
    )


def test_database_url_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATUS_DATABASE_URL", "postgresql+asyncpg://env/db")
    assert load_settings().database_url_for("image") == "postgresql+asyncpg://env/db"


@pytest.mark.parametrize(("host", "port", "expected"), [
    ("0.0.0.0", 8080, "http://127.0.0.1:8080"),
    ("::", 5000, "http://127.0.0.1:5000"),
    ("", 5000, "http://127.0.0.1:5000"),
    ("10.1.2.3", 80, "http://10.1.2.3:80"),
    ("::1", 8080, "http://[::1]:8080"),
    ("cloud.example", 443, "http://cloud.example:443"),
])
def test_base_url(host: str, port: int, expected: str) -> None:
    assert Settings(host=host, port=port).base_url == expected


def test_base_url_prefers_public_url() -> None:
    settings = Settings(host="0.0.0.0", public_url="https://cloud.example/")
    assert settings.base_url == "https://cloud.example"
