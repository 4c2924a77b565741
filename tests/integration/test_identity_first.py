"""A process running every unit (``stratus up``) serves identity, and so a client's first
token, before it starts the other units (``stratus.units.UnitsStart``): until then their
services' modules are not even imported, and a request to one of them waits for the whole
start, then is answered. Checked on ``sys.modules`` of a fresh interpreter, with the real
units (``tests/unit/test_units_start.py`` has the mechanism with fake ones)."""

from __future__ import annotations

from pathlib import Path

from tests.integration.fresh import run_fresh

#: What the units other than identity import when they start (the bus too: identity's
#: start asks only whether it reaches other processes, a setting).
OTHERS = ["stratus.compute.service", "stratus.image.service", "stratus.network.service",
          "stratus.network.backends", "stratus.core.bus",
          "stratus.volume.service", "stratus.compute.scheduler.manager",
          "stratus.compute.conductor.manager", "stratus.compute.agent.manager",
          "stratus.volume.manager", "stratus.dashboard.sessions"]

SCRIPT = """
async def main(report):
    stack = Stack(settings("first-admin-pw"))
    try:
        await run_bootstrap(stack)
        start = UnitsStart(stack, list(UNITS))
        app = await start.first()
        report["serves_early"] = start.serves_early
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://test", timeout=60) as client:
            token = await first_token(client, "first-admin-pw")
            report["token"] = token.status_code
            report["catalog"] = sorted(entry["type"] for entry in token.json()["token"]["catalog"])
            report["loaded_at_token"] = loaded(OTHERS)
            headers = {"X-Auth-Token": token.headers["X-Subject-Token"]}
            flavors = asyncio.ensure_future(client.get("/compute/v2.1/flavors", headers=headers))
            await asyncio.sleep(0.2)
            report["answered_before_start"] = flavors.done()
            await start.rest()
            start.open()
            report["flavors"] = (await flavors).status_code
            report["loaded_after"] = loaded(OTHERS)
    finally:
        await stack.aclose()


OTHERS = ARGS[0]
run(main)
"""


def test_identity_serves_tokens_before_the_other_units_start(tmp_path: Path) -> None:
    report = run_fresh(SCRIPT, tmp_path, OTHERS)
    assert report["serves_early"] is True
    assert report["token"] == 201
    # The catalog names every service: bootstrap registered them, started or not.
    assert {"compute", "image", "network", "block-storage"} <= set(report["catalog"])
    assert report["loaded_at_token"] == []
    assert report["answered_before_start"] is False
    assert report["flavors"] == 200
    assert report["loaded_after"] == sorted(OTHERS)
