"""The CI guard in tests/conftest.py: under CI=true a skipped test fails the run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"


def run_pytest(directory: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(directory)],
        cwd=directory, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    postgres: pg\n")
    (tmp_path / "test_sample.py").write_text(
        "import pytest\n\n"
        "def test_passes():\n    assert True\n\n"
        "def test_skips():\n    pytest.skip('no backend here')\n"
    )
    return tmp_path


@pytest.mark.parametrize("ci", [None, "false"])
def test_skip_is_fine_outside_ci(project: Path, ci: str | None) -> None:
    result = run_pytest(project, ci)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout


@pytest.mark.parametrize("ci", ["true", "1"])
def test_skip_fails_the_run_in_ci(project: Path, ci: str) -> None:
    result = run_pytest(project, ci)
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout + result.stderr
    assert "skipped tests are failures in CI" in result.stdout
    assert "test_sample.py::test_skips" in result.stdout
    assert "no backend here" in result.stdout


def test_no_skips_pass_in_ci(project: Path) -> None:
    (project / "test_sample.py").write_text("def test_passes():\n    assert True\n")
    result = run_pytest(project, "true")
    assert result.returncode == 0, result.stdout + result.stderr
