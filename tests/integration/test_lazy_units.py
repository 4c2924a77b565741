"""A process running every unit (``stratus up``'s ``root_app``) builds an API only when a
request first reaches it: until then its routes, schemas and their libraries are not even
imported. Checked on ``sys.modules`` of a fresh interpreter, so nothing a test imported
before counts."""

from __future__ import annotations

from pathlib import Path

from tests.integration.fresh import run_fresh

#: What each unit's API brings in, and a request to that API (path, expected status).
#: Identity's token routes are built at start (the first token needs them); the rest of
#: its API (users, projects, roles, the catalog's records, application credentials, and
#: their request schemas) is not.
LAZY = {
    "identity-api": (["stratus.identity.api.app_credentials", "stratus.identity.api.catalog",
                      "stratus.identity.api.resources", "stratus.identity.api.roles",
                      "stratus.identity.api.schemas", "stratus.identity.api.users"],
                     "/identity/v3/users", 200),
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
class Late(httpx.AsyncBaseTransport):
    app = None

    async def handle_async_request(self, request):
        return await httpx.ASGITransport(app=self.app).handle_async_request(request)


async def main(report):
    late = Late()
    stack = Stack(settings("lazy-admin-pw"), http_transport=late)
    try:
        await run_bootstrap(stack)
        app = late.app = await root_app(stack, list(UNITS))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://test", timeout=60) as client:
            token = await first_token(client, "lazy-admin-pw")
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


LAZY, NOT_AT_START = ARGS
run(main)
"""


def test_every_unit_runs_but_an_api_is_built_on_its_first_request(tmp_path: Path) -> None:
    report = run_fresh(SCRIPT, tmp_path, LAZY, NOT_AT_START)
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
