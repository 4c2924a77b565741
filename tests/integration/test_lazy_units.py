"""A process running every unit (``stratus up``'s ``root_app``) builds an API only when a
request first reaches it: until then its routes, schemas and their libraries are not even
imported. Checked on ``sys.modules`` of a fresh interpreter, so nothing a test imported
before counts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: What each unit's API brings in, and a request to that API (path, expected status).
LAZY = {
    "compute-api": (["stratus.compute.api"], "/compute/v2.1/flavors", 200),
    "placement-api": (["stratus.compute.api.placement"], "/placement/resource_providers",
                      200),
    "image-api": (["stratus.image.api"], "/image/v2/images", 200),
    "network-api": (["stratus.network.api"], "/network/v2.0/networks", 200),
    "volume-api": (["stratus.volume.api"], "/volume/v3/{project}/types", 200),
    "dashboard": (["stratus.dashboard.app", "jinja2"], "/dashboard/login", 200),
}

#: Loaded by what first needs them, not by the start of the units that use them: numpy by
#: the scheduler's first decision, cryptography.x509 by the first x509 key pair.
NOT_AT_START = ["cryptography.x509", "numpy"]

SCRIPT = """
import asyncio, json, sys
from pathlib import Path

import httpx

from stratus.core.config import Settings
from stratus.stack import Stack
from stratus.units import UNITS, root_app, run_bootstrap

LAZY = json.loads(sys.argv[2])
NOT_AT_START = json.loads(sys.argv[3])


class Late(httpx.AsyncBaseTransport):
    app = None

    async def handle_async_request(self, request):
        return await httpx.ASGITransport(app=self.app).handle_async_request(request)


def loaded(names):
    return sorted(name for name in names if name in sys.modules)


async def main():
    settings = Settings(data_dir=Path(sys.argv[1]), public_url="http://test",
                        admin_password="lazy-admin-pw", bus_url="memory://",
                        identity={"bcrypt_rounds": 4}, compute={"virt_driver": "fake"},
                        network={"backend": "noop"})
    late = Late()
    stack = Stack(settings, http_transport=late)
    report = {}
    try:
        await run_bootstrap(stack)
        app = late.app = await root_app(stack, list(UNITS))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://test", timeout=60) as client:
            auth = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
                "name": "admin", "domain": {"id": "default"}, "password": "lazy-admin-pw"}}},
                "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}
            token = await client.post("/identity/v3/auth/tokens", json=auth)
            report["token"] = token.status_code
            headers = {"X-Auth-Token": token.headers["X-Subject-Token"]}
            project = token.json()["token"]["project"]["id"]
            report["started"] = sorted(n for n in UNITS if n not in stack.not_started)
            report["before"] = loaded(m for modules, _, _ in LAZY.values() for m in modules)
            report["not_at_start"] = loaded(NOT_AT_START)
            report["after"] = {}
            for unit, (modules, path, _) in LAZY.items():
                response = await client.get(path.format(project=project), headers=headers)
                report["after"][unit] = [response.status_code, loaded(modules)]
    finally:
        await stack.aclose()
    print(json.dumps(report))


asyncio.run(main())
"""


def run_cloud(tmp_path: Path) -> dict[str, object]:
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), json.dumps(LAZY),
                             json.dumps(NOT_AT_START)],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    report: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def test_every_unit_runs_but_an_api_is_built_on_its_first_request(tmp_path: Path) -> None:
    report = run_cloud(tmp_path)
    assert report["token"] == 201
    started = report["started"]
    assert isinstance(started, list) and set(LAZY) <= set(started)
    # Every unit started (runtimes, bus servers), yet none of these APIs was built.
    assert report["before"] == []
    assert report["not_at_start"] == []  # the scheduler runs, but has not decided yet
    after = report["after"]
    assert isinstance(after, dict)
    for unit, (modules, _, status) in LAZY.items():
        assert after[unit] == [status, sorted(modules)], unit
