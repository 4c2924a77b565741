"""A real three-node RabbitMQ cluster on this machine, from Debian's ``rabbitmq-server``.

Each node has its own name (``stratus-<id>-N@localhost``), AMQP and distribution ports
(below the kernel's ephemeral range, so no client socket takes one between a stop and a
start), data, log and configuration directories, and no plugins; they share one Erlang
cookie of their own. Nodes 2 and 3 join node 1. The machine's own RabbitMQ (5672, node
``rabbit@localhost``) is never touched: every ``rabbitmqctl`` here names one of our nodes and
runs with our cookie.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")


def available() -> str | None:
    """Why a cluster cannot run here, or None."""
    if not (RABBIT_BIN / "rabbitmq-server").exists():
        return "rabbitmq-server (Debian package) is not installed"
    return None


def _free_port_pair() -> tuple[int, int]:
    """An AMQP port and a distribution port, both free, below the ephemeral range."""
    for _ in range(200):
        port = random.randint(20000, 30000)
        ports = (port, port + 1000)
        try:
            for candidate in ports:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return ports
    raise RuntimeError("no free port pair for a RabbitMQ node")


@dataclass
class Node:
    name: str
    port: int
    dist_port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None


class RabbitCluster:
    def __init__(self, directory: Path, size: int = 3) -> None:
        self.directory = directory
        self.home = directory / "home"
        ident = uuid.uuid4().hex[:6]
        self.nodes: list[Node] = []
        for index in range(1, size + 1):
            port, dist_port = _free_port_pair()
            self.nodes.append(Node(f"stratus-{ident}-{index}@localhost", port, dist_port,
                                   directory / f"node{index}"))

    def url(self, vhost: str = "") -> str:
        """The three-host transport URL, as the seed's ``transport_url`` names its nodes."""
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)
        return f"rabbit://guest:guest@{hosts}/{vhost}"

    def node_at(self, port: int) -> Node:
        return next(node for node in self.nodes if node.port == port)

    # Life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        cookie = self.home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16).upper())
        cookie.chmod(0o400)
        for node in self.nodes:
            self._launch(node)
        for node in self.nodes:
            self._await_startup(node)
        first = self.nodes[0]
        for node in self.nodes[1:]:
            self.ctl(node, "stop_app")
            self.ctl(node, "join_cluster", first.name)
            self.ctl(node, "start_app", timeout=150)
        status = json.loads(self.ctl(first, "cluster_status", "--formatter", "json"))
        running = sorted(status["running_nodes"])
        assert running == sorted(node.name for node in self.nodes), status

    def _environment(self, node: Node) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update({
            "HOME": str(self.home), "RABBITMQ_NODENAME": node.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(node.port), "RABBITMQ_DIST_PORT": str(node.dist_port),
            "RABBITMQ_CONF_ENV_FILE": str(node.directory / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(node.directory / "rabbitmq"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(node.directory / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(node.directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(node.directory / "log"),
            "RABBITMQ_PID_FILE": str(node.directory / "pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS":
                "-kernel inet_dist_use_interface {127,0,0,1}"})
        return env

    def _launch(self, node: Node) -> None:
        node.directory.mkdir(parents=True, exist_ok=True)
        (node.directory / "enabled_plugins").write_text("[].\n")
        (node.directory / "rabbitmq-env.conf").write_text("")
        (node.directory / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{node.port}\n"
            # Small machines: the disk and memory alarms would block publishers.
            "disk_free_limit.absolute = 50MB\n"
            "vm_memory_high_watermark.relative = 0.8\n")
        with (node.directory / "console.log").open("ab") as log:
            node.process = subprocess.Popen(
                [str(RABBIT_BIN / "rabbitmq-server")], cwd=node.directory,
                env=self._environment(node), stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)

    def _await_startup(self, node: Node, within: float = 150) -> None:
        """Until the node's Erlang VM is up ``await_startup`` cannot reach it: ask again."""
        deadline = time.monotonic() + within
        while True:
            if node.process is not None and node.process.poll() is not None:
                log = (node.directory / "console.log").read_text(errors="replace")
                raise RuntimeError(f"{node.name} exited: {log[-1500:]}")
            try:
                self.ctl(node, "await_startup", "--timeout", "120", timeout=150)
                return
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def ctl(self, node: Node, *args: str, timeout: float = 90) -> str:
        done = subprocess.run([str(RABBIT_BIN / "rabbitmqctl"), "-q", "-n", node.name, *args],
                              capture_output=True, text=True, timeout=timeout,
                              env=self._environment(node), check=False)
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl -n {node.name} {' '.join(args)}: "
                               f"{(done.stderr or done.stdout)[-800:]}")
        return done.stdout

    def stop_app(self, node: Node) -> None:
        """The node leaves service: its clients are disconnected, its queue replicas stop."""
        self.ctl(node, "stop_app")

    def start_app(self, node: Node) -> None:
        self.ctl(node, "start_app", timeout=150)
        self.ctl(node, "await_startup", "--timeout", "120", timeout=150)

    def close(self) -> None:
        """Stop every node (asked, then killed) and remove the cluster's files."""
        for node in self.nodes:
            if node.process is None or node.process.poll() is not None:
                continue
            try:
                self.ctl(node, "stop", timeout=60)
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        deadline = time.monotonic() + 30
        for node in self.nodes:
            if node.process is None:
                continue
            try:
                node.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(node.process.pid, signal.SIGKILL)
                node.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)
