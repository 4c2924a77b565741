"""Run the real ``openstack`` CLI as a fresh process per command, without paying its imports
every time.

The console script spends ~0.7 of its ~1 s importing openstackclient, openstacksdk,
keystoneauth and the command modules before it sends a request, and the e2e suites run it
hundreds of times. Here a fork server (``multiprocessing``'s) imports them once per test
process (``tests.e2e.openstack_cli_imports``) and forks one child per command. The child
runs what the console script runs, ``openstackclient.shell.main``, with the command's argv,
environment and working directory, its output going to files of its own: each command is
still a new process that shares nothing with the last one but the imported modules.

``STRATUS_TEST_OPENSTACK=console-script`` runs the installed ``openstack`` script instead.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CONSOLE_SCRIPT = Path(sys.executable).parent / "openstack"

_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(["tests.e2e.openstack_cli",
                                 "tests.e2e.openstack_cli_imports"])


def run(argv: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """``openstack ARGV`` in ``env``: its exit status and output, as ``subprocess.run`` gives
    them (``subprocess.TimeoutExpired`` after ``timeout`` seconds, the command killed)."""
    command = [str(CONSOLE_SCRIPT), *argv]
    if os.environ.get("STRATUS_TEST_OPENSTACK") == "console-script":
        return subprocess.run(command, capture_output=True, text=True, env=env,
                              timeout=timeout)
    with tempfile.TemporaryDirectory(prefix="openstack-cli-") as scratch:
        stdout, stderr = Path(scratch, "stdout"), Path(scratch, "stderr")
        child = _context.Process(target=_command, args=(argv, env, os.getcwd(), stdout,
                                                        stderr))
        child.start()
        child.join(timeout)
        if child.exitcode is None:
            child.kill()
            child.join()
            raise subprocess.TimeoutExpired(command, timeout)
        return subprocess.CompletedProcess(
            command, child.exitcode, stdout.read_text(errors="replace"),
            stderr.read_text(errors="replace"))


def _command(argv: list[str], env: dict[str, str], cwd: str, stdout: Path,
             stderr: Path) -> None:
    """The forked child: become ``openstack ARGV`` and run it (its status is the exit code
    ``multiprocessing`` reports)."""
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    for fd, path in ((1, stdout), (2, stderr)):
        opened = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(opened, fd)
        os.close(opened)
    sys.argv = [str(CONSOLE_SCRIPT), *argv]
    from openstackclient.shell import main

    sys.exit(main(argv))
