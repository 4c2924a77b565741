"""``python benchmarks/profiles/port_creates.py TREE OUT [N] [CONCURRENCY] [PROF]``: what one
port create costs a tree, counted where the load of the machine does not reach.

``TREE``'s venv runs ``stratus up`` (noop network backend, SQLite, memory bus) under
``counted_server``; after 120 creates of warm-up, ``N`` creates (default 200,
``CONCURRENCY`` in flight, default 1) are counted: SQL statements and CPU time per create,
and with ``PROF=1`` a cProfile (``OUT.prof``, Python calls per create). With ``VG=1`` in
the environment the server runs under ``valgrind --tool=callgrind`` with instrumentation on
only for the counted creates (``OUT.cg.<pid>.1``; its ``totals`` line is the
instructions). Prints one JSON line. Run with any interpreter that has httpx; the other
tree's code can be measured with this tree's venv through ``PYTHONPATH``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

API = "/network/v2.0"
SERVER = str(Path(__file__).with_name("counted_server.py"))
#: Creates before counting.
WARM_UP = 120


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _token(client: httpx.AsyncClient, data: Path) -> str:
    auth = {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"name": "Default"}, "password": ""}}},
        "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}
    for _ in range(3000):
        secret = await asyncio.to_thread(_read, data / "admin-password")
        if secret:
            auth["identity"]["password"]["user"]["password"] = secret
            try:
                answer = await client.post("/identity/v3/auth/tokens", json={"auth": auth})
                if answer.status_code == 201:
                    return answer.headers["X-Subject-Token"]
            except httpx.TransportError:
                pass
        await asyncio.sleep(0.2)
    raise SystemExit("the cloud did not come up")


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""


def _control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], capture_output=True, check=False)


def measure(tree: str, out: str, count: int, concurrency: int, profile: str) -> None:
    port, tmp = _free_port(), tempfile.mkdtemp(prefix="port-creates-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATUS_")}
    env.update(STRATUS_IDENTITY__BCRYPT_ROUNDS="4", STRATUS_NETWORK__BACKEND="noop",
               PYTHONUNBUFFERED="1", PROF=profile, PROF_OUT=out)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    valgrind = os.environ.get("VG") == "1"
    wrapper = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
               f"--callgrind-out-file={out}.cg.%p"] if valgrind else []
    if valgrind:
        env["PYTHONMALLOC"] = "malloc"
    with open(out + ".log", "w") as log:
        server = subprocess.Popen(
            [*wrapper, f"{tree}/.venv/bin/python", SERVER, "up", "--data-dir", f"{tmp}/data",
             "--host", "127.0.0.1", "--port", str(port)], cwd=tmp, env=env, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        took = asyncio.run(_creates(server.pid, port, Path(tmp) / "data", count,
                                    concurrency, valgrind))
        while not Path(out + ".done").exists():
            time.sleep(0.1)
        counted = json.loads(Path(out + ".json").read_text())
        print(json.dumps({"tree": tree, "creates": count, "concurrency": concurrency,
                          "cpu_ms_per_create": counted["cpu_s"] / count * 1e3,
                          "sql_per_create": counted["sql"] / count,
                          "commits_per_create": counted.get("commits", 0) / count,
                          "creates_per_s": count / took, "load_average": os.getloadavg()}))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)


async def _creates(pid: int, port: int, data: Path, count: int, concurrency: int,
                   valgrind: bool) -> float:
    """Warm up, then the counted creates between SIGUSR1 and SIGUSR2; their seconds."""
    # As ``benchmarks network`` holds its connections: every one kept alive (httpx keeps 20
    # by default, so with more in flight the server would accept and close connections).
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=300,
                                 limits=limits) as c:
        headers = {"X-Auth-Token": await _token(c, data)}
        net = (await c.post(f"{API}/networks", headers=headers,
                            json={"network": {"name": "counted"}})).json()["network"]
        answer = await c.post(f"{API}/subnets", headers=headers, json={"subnet": {
            "network_id": net["id"], "cidr": "10.100.0.0/16", "ip_version": 4}})
        assert answer.status_code == 201, answer.text
        body = {"port": {"network_id": net["id"]}}

        async def create() -> None:
            answer = await c.post(f"{API}/ports", headers=headers, json=body)
            assert answer.status_code == 201, answer.text

        # Past the first ``TABLE_AFTER_REQUESTS`` (100) requests, which FastAPI routes
        # before the app's route table is built (the build would be counted otherwise).
        for _ in range(WARM_UP):
            await create()
        await asyncio.sleep(0.5)
        if valgrind:
            await asyncio.to_thread(_control, pid, "-z")
            await asyncio.to_thread(_control, pid, "-i", "on")
        os.kill(pid, signal.SIGUSR1)
        await asyncio.sleep(0.2)
        started, left = time.perf_counter(), list(range(count))

        async def worker() -> None:
            while left:
                left.pop()
                await create()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        took = time.perf_counter() - started
        os.kill(pid, signal.SIGUSR2)
        if valgrind:
            await asyncio.sleep(1)
            await asyncio.to_thread(_control, pid, "-d")
            await asyncio.to_thread(_control, pid, "-i", "off")
        return took


if __name__ == "__main__":
    argv = sys.argv[1:]
    measure(argv[0], argv[1], int(argv[2]) if len(argv) > 2 else 200,
            int(argv[3]) if len(argv) > 3 else 1, argv[4] if len(argv) > 4 else "0")
