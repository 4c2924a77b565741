"""Run a real ``stratus`` process and the real ``openstack`` CLI against it."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.e2e import openstack_cli

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cloud:
    """A ``stratus up`` (or ``stratus serve``) subprocess with its data directory."""

    data_dir: Path
    port: int
    env: dict[str, str]
    args: list[str] = field(default_factory=lambda: ["up"])
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def tls(self) -> bool:
        """HTTPS: started with ``--tls`` (the CA in ``DIR/tls``) or given a certificate
        (``STRATUS_TLS__*``)."""
        return "--tls" in self.args or "STRATUS_TLS__CERT_FILE" in self.env

    @property
    def ca_file(self) -> Path:
        given = self.env.get("STRATUS_TLS__CA_FILE")
        return Path(given) if given else self.data_dir / "tls" / "ca.pem"

    def verify(self) -> ssl.SSLContext | bool:
        """What a client trusting this cloud verifies it with (its CA once made)."""
        if self.tls and self.ca_file.exists():
            return ssl.create_default_context(cafile=str(self.ca_file))
        return True

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def auth_url(self) -> str:
        return f"{self.url}/identity/v3"

    @property
    def clouds_yaml(self) -> Path:
        return self.data_dir / "clouds.yaml"

    def start(self, timeout: float = 30) -> None:
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-{self.port}.log"
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [str(BIN / "stratus"), *self.args, "--data-dir", str(self.data_dir),
             "--port", str(self.port)],
            stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"stratus exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.auth_url}", timeout=1,
                             verify=self.verify()).status_code == 200:
                    # `up` writes clouds.yaml once every unit has started (identity serves
                    # before that): wait for the one naming this start's address, since a
                    # restart on another port finds the last start's file still there.
                    if self.args[0] != "up" or self._clouds_yaml_names_this_start():
                        return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        # Stopped (its agents remove what they made): fixtures stop only a cloud that started,
        # and a slow start on a loaded machine left clouds running with their namespaces.
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.stop(timeout=30)
        raise RuntimeError(f"stratus did not come up in {timeout}s:\n{self.log()}")

    def _clouds_yaml_names_this_start(self) -> bool:
        try:
            return f"auth_url: {self.auth_url}\n" in self.clouds_yaml.read_text()
        except FileNotFoundError:
            return False

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM and wait; returns the exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
                raise
        return self.process.returncode

    def console(self) -> str:
        """What the process printed (stdout and stderr)."""
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def log(self) -> str:
        """Everything the process wrote: its console and its log file (``stratus up``
        keeps the log in ``DIR/stratus.log`` unless ``--verbose``)."""
        log_file = self.data_dir / "stratus.log"
        logged = log_file.read_text(errors="replace") if log_file.exists() else ""
        return self.console() + logged

    def openstack(self, *args: str, cloud: bool = True, env: dict[str, str] | None = None,
                  check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the real ``openstack`` CLI (as admin via clouds.yaml unless ``cloud=False``)."""
        run_env = {k: v for k, v in self.env.items() if not k.startswith("OS_")}
        if cloud:
            run_env["OS_CLIENT_CONFIG_FILE"] = str(self.clouds_yaml)
        run_env.update(env or {})
        result = openstack_cli.run([*(["--os-cloud", "stratus"] if cloud else []), *args],
                                   run_env, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"openstack {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def openstack_json(self, *args: str, **kwargs: Any) -> Any:
        return json.loads(self.openstack(*args, "-f", "json", **kwargs).stdout)


def external_network_env() -> dict[str, str]:
    """The ``public`` network of a test cloud: its own bridge and a random /24 of 198.18.0.0/15
    and never a masquerade to the machine's uplink (test traffic stays on the machine)."""
    suffix = uuid.uuid4().hex[:8]
    return {"STRATUS_NETWORK__PHYSICAL_BRIDGES": f"public:bx{suffix}",
            "STRATUS_NETWORK__EXTERNAL_SUBNET_CIDR":
                f"198.{random.randint(18, 19)}.{random.randint(0, 255)}.0/24",
            "STRATUS_NETWORK__EXTERNAL_MASQUERADE": "false"}


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRATUS_", "OS_"))}
    env.update({"STRATUS_IDENTITY__BCRYPT_ROUNDS": "4", "STRATUS_CONFIG_FILE": "/nonexistent",
                "PYTHONUNBUFFERED": "1",
                # Real guests only where a test asks (STRATUS_COMPUTE__VIRT_DRIVER=libvirt).
                "STRATUS_COMPUTE__VIRT_DRIVER": "fake",
                # Each cloud its own firewall tables: concurrent clouds never replace each
                # other's rulesets (the l2-agent owns its tables whole).
                "STRATUS_NETWORK__FIREWALL_TABLE": f"sg-e2e-{uuid.uuid4().hex[:10]}"})
    env.update(external_network_env())
    env.update(extra)
    return env


@contextlib.contextmanager
def running_cloud(tmp_path: Path, db_url: str | None = None,
                  **env: str) -> Iterator[Cloud]:
    """A started ``stratus up`` on a fresh data dir (on ``db_url`` unless it is SQLite)."""
    run_env = base_env(**env)
    if db_url is not None and not db_url.startswith("sqlite"):
        run_env["STRATUS_DATABASE_URL"] = db_url
    instance = Cloud(tmp_path / "data", free_port(), run_env)
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


@contextlib.contextmanager
def libvirt_cloud(data: Path, args: list[str], **env: str) -> Iterator[Cloud]:
    """A started ``stratus up`` with real guests (libvirt) and real networking on ``data``;
    the guests it leaves are destroyed after it (they outlive their agent by design)."""
    import asyncio

    from tests.realvm import destroy_leftovers

    instance = Cloud(data, free_port(), base_env(STRATUS_COMPUTE__VIRT_DRIVER="libvirt",
                                                 STRATUS_NETWORK__BACKEND="linuxbridge",
                                                 **env), args=args)
    instance.start(timeout=180)
    try:
        yield instance
    finally:
        instance.stop()
        asyncio.run(destroy_leftovers(data / "instances"))


def user_env(cloud: Cloud, user: str, password: str, project: str) -> dict[str, str]:
    """``OS_*`` variables that log the CLI in as ``user`` on ``project``."""
    return {"OS_AUTH_URL": cloud.auth_url, "OS_USERNAME": user, "OS_PASSWORD": password,
            "OS_PROJECT_NAME": project, "OS_USER_DOMAIN_NAME": "Default",
            "OS_PROJECT_DOMAIN_NAME": "Default", "OS_IDENTITY_API_VERSION": "3"}
