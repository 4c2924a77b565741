"""The e2e suites' way of running the ``openstack`` CLI (forked from a process that has
imported it, ``tests.e2e.openstack_cli``) behaves as the installed console script does."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.e2e import openstack_cli
from tests.e2e.cloud import Cloud, running_cloud, user_env

pytestmark = pytest.mark.e2e


def console_script(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(openstack_cli.CONSOLE_SCRIPT), *argv], capture_output=True,
                          text=True, env=env, timeout=120)


def cli_env(cloud: Cloud, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in cloud.env.items() if not k.startswith("OS_")}
    env["OS_CLIENT_CONFIG_FILE"] = str(cloud.clouds_yaml)
    env.update(extra)
    return env


def test_a_forked_command_answers_as_the_console_script_does(tmp_path: Path) -> None:
    with running_cloud(tmp_path) as cloud:
        env = cli_env(cloud)
        cases = [["--os-cloud", "stratus", "flavor", "list", "-f", "json"],
                 ["--os-cloud", "stratus", "network", "list", "-f", "value", "-c", "Name"],
                 ["--os-cloud", "stratus", "server", "show", "no-such-server"],
                 ["--os-cloud", "stratus", "no-such-command"]]
        for argv in cases:
            forked = openstack_cli.run(argv, env, timeout=120)
            expected = console_script(argv, env)
            assert (forked.returncode, forked.stdout, forked.stderr) == (
                expected.returncode, expected.stdout, expected.stderr), argv
        assert [openstack_cli.run(argv, env, timeout=120).returncode
                for argv in cases] == [0, 0, 1, 2]


def test_each_command_runs_with_its_own_environment_only(tmp_path: Path) -> None:
    with running_cloud(tmp_path) as cloud:
        cloud.openstack("project", "create", "demo")
        cloud.openstack("user", "create", "--password", "alice-pw-123", "alice")
        cloud.openstack("role", "add", "--project", "demo", "--user", "alice", "member")
        alice = user_env(cloud, "alice", "alice-pw-123", "demo")
        as_alice = json.loads(cloud.openstack("token", "issue", "-f", "json", cloud=False,
                                              env=alice).stdout)
        as_admin = cloud.openstack_json("token", "issue")
        users = {u["Name"]: u["ID"] for u in cloud.openstack_json("user", "list")}
        assert (as_alice["user_id"], as_admin["user_id"]) == (users["alice"], users["admin"])
        # Without the variables the last command had, this one has no credentials at all.
        anonymous = cloud.openstack("token", "issue", cloud=False, check=False)
        assert anonymous.returncode != 0 and "auth" in anonymous.stderr.lower()
