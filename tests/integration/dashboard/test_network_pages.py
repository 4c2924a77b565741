"""The network pages through the ASGI app: each is one round of calls whatever the number
of rows, shows the project's resources (not all an admin's token lists), and the network
API's refusal is said beside the row it came from."""

from __future__ import annotations

import re
from typing import Any

from tests.integration.dashboard.conftest import Deck


async def _make(deck: Deck, collection: str, body: dict[str, Any]) -> dict[str, Any]:
    key = collection.rstrip("s").replace("-", "_")
    made = await deck.api.post(f"/network/v2.0/{collection}", headers=deck.admin(),
                               json={key: body})
    assert made.status_code == 201, made.text
    result: dict[str, Any] = made.json()[key]
    return result


async def test_each_page_is_one_round_of_the_projects_and_a_refusal_shows_at_its_row(
        deck: Deck) -> None:
    subnets = []
    for n in range(6):
        network = await _make(deck, "networks", {"name": f"net-{n}"})
        subnets.append(await _make(deck, "subnets", {
            "network_id": network["id"], "cidr": f"10.{n + 100}.0.0/24", "ip_version": 4}))
    routers = [await _make(deck, "routers", {"name": f"router-{n}"}) for n in range(4)]
    for router, subnet in zip(routers, subnets, strict=False):
        joined = await deck.api.put(f"/network/v2.0/routers/{router['id']}/add_router_interface",
                                    headers=deck.admin(), json={"subnet_id": subnet["id"]})
        assert joined.status_code == 200, joined.text
    groups = [await _make(deck, "security-groups", {"name": f"group-{n}"}) for n in range(3)]
    # Another project's: the admin's token lists them too, the project's pages do not.
    other = (await deck.api.post("/identity/v3/projects", headers=deck.admin(), json={
        "project": {"name": "elsewhere"}})).json()["project"]
    await _make(deck, "routers", {"name": "their-router", "project_id": other["id"]})
    await _make(deck, "networks", {"name": "their-net", "project_id": other["id"]})
    await deck.login()

    expected = {"/dashboard/networks": 2, f"/dashboard/networks/{subnets[0]['network_id']}": 3,
                "/dashboard/routers": 4, "/dashboard/floating-ips": 4,
                "/dashboard/security-groups": 1,
                f"/dashboard/security-groups/{groups[0]['id']}": 2}
    for path, calls in expected.items():
        deck.calls.clear()
        page = await deck.browser.get(path)
        assert page.status_code == 200, (path, page.text[-2000:])
        assert len(deck.calls) == calls, (path, deck.calls.made)
        # Every form posts to a page of the dashboard (its action a path, no template text).
        for action in re.findall(r'<form [^>]*action="([^"]*)"', page.text):
            assert re.fullmatch(r"/dashboard/[\w/-]+", action), (path, action)
    group_page = (await deck.browser.get(f"/dashboard/security-groups/{groups[0]['id']}")).text
    assert f'action="/dashboard/security-groups/{groups[0]["id"]}/rules"' in group_page
    routers_page = (await deck.browser.get("/dashboard/routers")).text
    assert "their-router" not in routers_page
    networks_page = (await deck.browser.get("/dashboard/networks")).text
    assert "net-5" in networks_page and "their-net" not in networks_page
    for n, router in enumerate(routers):
        row = re.search(rf'<tr id="router-{router["id"]}">.*?</tr>', routers_page, re.S)
        assert row and f"10.{n + 100}.0.1" in row.group(0)  # each router's interface

    # A router with an interface is not deleted: the API's message at its row, not a 500.
    refused = await deck.browser.post(f"/dashboard/routers/{routers[0]['id']}/delete",
                                      data={"csrf_token": await deck.csrf()})
    assert refused.status_code == 409, refused.text[-2000:]
    message = re.search(rf'id="router-{routers[0]["id"]}-error">([^<]+)<', refused.text)
    assert message and "still has ports" in message.group(1), refused.text[-3000:]
    # One the API does not know (gone, or another project's): said atop the page.
    gone = await deck.browser.post("/dashboard/security-groups/no-such-group/delete",
                                   data={"csrf_token": await deck.csrf()})
    assert gone.status_code == 404 and 'id="page-error"' in gone.text
