"""The ``stratus`` operator command, run as a user runs it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from stratus.compute import migrations as compute_migrations
from stratus.identity import migrations as identity_migrations
from stratus.image import migrations as image_migrations
from stratus.network import migrations as network_migrations
from stratus.volume import migrations as volume_migrations
from tests.e2e.cloud import BIN, base_env


def stratus(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "stratus"), *args], capture_output=True, text=True,
                          env=env or base_env(), timeout=60)


def test_db_upgrade_reports_the_head_revision(tmp_path: Path) -> None:
    # Each service's HEAD is checked against its migration scripts in test_migrations.
    heads = {"identity": identity_migrations.HEAD, "image": image_migrations.HEAD,
             "volume": volume_migrations.HEAD, "compute": compute_migrations.HEAD,
             "network": network_migrations.HEAD}
    result = stratus("db", "upgrade", "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    for service, head in heads.items():
        assert f"{service}: at revision {head}" in result.stderr
    for service in ("identity", "image", "volume"):
        assert (tmp_path / f"{service}.db").exists()


def test_rotate_keys(tmp_path: Path) -> None:
    first = stratus("identity", "rotate-keys", "--data-dir", str(tmp_path))
    assert first.returncode == 0, first.stderr
    assert "Primary key is now 2" in first.stderr
    stratus("identity", "rotate-keys", "--data-dir", str(tmp_path))
    keys = sorted(p.name for p in (tmp_path / "fernet-keys").iterdir())
    assert keys == ["0", "2", "3"]


def test_bootstrap_is_idempotent_and_never_prints_the_password(tmp_path: Path) -> None:
    env = base_env(STRATUS_ADMIN_PASSWORD="bootstrap-secret-pw")
    for _ in range(2):
        result = stratus("bootstrap", "--data-dir", str(tmp_path), "--port", "9999", env=env)
        assert result.returncode == 0, result.stderr
        assert "bootstrap-secret-pw" not in result.stdout + result.stderr
    clouds = (tmp_path / "clouds.yaml").read_text()
    assert "http://127.0.0.1:9999/identity/v3" in clouds
    assert "bootstrap-secret-pw" in clouds
    # The password came from the environment, so none was generated.
    assert not (tmp_path / "admin-password").exists()


def test_unknown_unit_is_refused(tmp_path: Path) -> None:
    result = stratus("serve", "nova-api", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "Unknown unit" in result.stderr


def test_serve_says_why_a_unit_does_not_run(tmp_path: Path) -> None:
    result = stratus("serve", "dhcp-agent", "l2-agent", "--data-dir", str(tmp_path),
                     env=base_env(STRATUS_NETWORK__BACKEND="noop"))
    assert result.returncode == 1
    assert "dhcp-agent: not started: the network backend is noop (configured)" in result.stderr
    assert "l2-agent: not started: the network backend is noop (configured)" in result.stderr
    assert "None of the units can run here." in result.stderr
