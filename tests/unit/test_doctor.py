"""``stratus doctor``'s checks and report, and ``stratus up``'s summary, on a PATH that holds
only what a test puts there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stratus.cli import doctor
from stratus.cli.banner import unit_lines, up_lines
from stratus.cli.doctor import Check, Status
from stratus.core import hosttools
from stratus.core.config import Settings
from stratus.network.units import agents_unavailable


@pytest.fixture
def bare_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH is one empty directory: every program is missing until a test adds it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


def add_program(bin_dir: Path, name: str) -> None:
    program = bin_dir / name
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)


def test_missing_programs_name_their_debian_package(bare_path: Path) -> None:
    assert hosttools.missing("qemu-img") == "qemu-img is not installed; apt-get install qemu-utils"
    assert hosttools.missing("/opt/x/dnsmasq", "h1") == (
        "dnsmasq is not installed on host h1; apt-get install dnsmasq-base")
    check = doctor._tool("qemu-img")
    assert check.status is Status.MISSING and check.fix == "apt-get install qemu-utils"
    assert check.packages == ("qemu-utils",)
    add_program(bare_path, "qemu-img")
    check = doctor._tool("qemu-img")
    assert check.ok and check.detail == str(bare_path / "qemu-img") and check.fix is None


def test_qemu_missing_and_present(bare_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = doctor.check_qemu()
    assert missing.status is Status.MISSING
    assert missing.fix == "apt-get install qemu-system-x86"
    add_program(bare_path, "qemu-system-x86_64")
    from stratus.compute.virt.libvirt import host

    monkeypatch.setattr(host, "kvm_device_problem", lambda: None)
    monkeypatch.setattr(host, "kvm_usable", lambda: False)
    assert "TCG only" in doctor.check_qemu().detail
    monkeypatch.setattr(host, "kvm_usable", lambda: True)
    assert "KVM" in doctor.check_qemu().detail
    monkeypatch.setattr(host, "kvm_device_problem", lambda: "/dev/kvm is not open to them")
    failing = doctor.check_qemu()
    assert failing.status is Status.FAILING and "not open" in failing.detail
    assert failing.fix == "chgrp kvm /dev/kvm && chmod 660 /dev/kvm"


def test_nft_without_its_python_binding(bare_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    add_program(bare_path, "nft")
    monkeypatch.setattr(doctor.importlib.util, "find_spec",
                        lambda name: None if name == "nftables" else object())
    check = doctor.check_nftables()
    assert check.status is Status.MISSING and check.packages == ("python3-nftables",)
    monkeypatch.setattr(doctor.importlib.util, "find_spec", lambda name: object())
    assert doctor.check_nftables().ok


async def test_run_checks_and_the_packages_make_deps_installs(bare_path: Path) -> None:
    checks = await doctor.run_checks(Settings(data_dir=bare_path.parent))
    by_name = {c.name: c for c in checks}
    for name, package in (("qemu-img", "qemu-utils"), ("dnsmasq", "dnsmasq-base"),
                          ("qemu-system-x86_64", "qemu-system-x86"), ("nft", "nftables")):
        assert by_name[name].status is Status.MISSING, name
        assert package in doctor.missing_packages(checks)
    # Not configured: nothing to install for them.
    assert by_name["PostgreSQL"].status is Status.NOT_CONFIGURED
    assert by_name["RabbitMQ"].status is Status.NOT_CONFIGURED
    packages = doctor.missing_packages(checks)
    assert len(packages) == len(set(packages))
    report = doctor.report_lines(checks)
    assert report[-1].startswith("Everything missing, at once (as root): apt-get install ")
    (qemu_img,) = [line for line in report if " qemu-img " in line.splitlines()[0]]
    assert qemu_img.startswith("missing") and "to add it: apt-get install qemu-utils" in qemu_img


async def test_unreachable_postgresql_and_rabbitmq_are_failing_without_secrets(
        bare_path: Path) -> None:
    settings = Settings(data_dir=bare_path.parent,
                        database_url="postgresql+asyncpg://u:pg-secret@127.0.0.1:1/x",
                        bus_url="rabbit://u:mq-secret@127.0.0.1:1/")
    postgres = await doctor.check_postgresql(settings)
    rabbit = await doctor.check_rabbitmq(settings)
    for check in (postgres, rabbit):
        assert check.status is Status.FAILING, check
        assert "secret" not in check.detail and check.fix


def test_report_says_nothing_to_install_when_all_works() -> None:
    checks = [Check("qemu-img", "conversion", Status.OK, "/usr/bin/qemu-img"),
              Check("Ceph", "rbd", Status.NOT_CONFIGURED, "no ceph.conf")]
    assert doctor.missing_packages(checks) == []
    assert doctor.report_lines(checks)[-1] == "Nothing to install."


def test_network_agents_say_why_they_do_not_run(monkeypatch: pytest.MonkeyPatch,
                                                bare_path: Path) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    reason = agents_unavailable(Settings())
    assert reason == ("the network backend is noop (dnsmasq is not installed; "
                      "apt-get install dnsmasq-base)")
    add_program(bare_path, "dnsmasq")
    assert agents_unavailable(Settings()) is None
    assert agents_unavailable(Settings(network={"backend": "noop"})) == (
        "the network backend is noop (configured)")


def test_the_summary_groups_units_not_started_by_reason(tmp_path: Path) -> None:
    lines = unit_lines(["a", "b", "c", "d"], {"b": "no dnsmasq", "c": "no dnsmasq",
                                                "d": "no nft"})
    assert lines == ["  running      a", "  not started  b, c: no dnsmasq",
                     "  not started  d: no nft"]
    summary = up_lines(base_url="http://h:1", names=["a", "b"], not_started={"b": "why"},
                       choices={"virt driver": "fake", "network backend": "noop (why)"},
                       clouds_yaml=tmp_path / "clouds.yaml", log_file=tmp_path / "stratus.log")
    assert summary[0] == f"Stratus is up at http://h:1 (log: {tmp_path / 'stratus.log'})"
    assert "  virt driver      fake" in summary
    assert "  network backend  noop (why)" in summary
    assert summary[-2] == "Identity: http://h:1/identity/v3"
