"""The overview page through the ASGI app: quota bars of compute, network and volume from
one round of three calls, drawn on the server; a missing service is a banner."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stratus.core.config import DashboardSettings
from tests.integration.dashboard.conftest import UNITS, Deck, make_deck
from tests.integration.dashboard.test_pages import _servers, _set_state, _whoami


@pytest.fixture
async def full(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[Deck]:
    async for made in make_deck(tmp_path, sqlite_template, DashboardSettings(),
                                units=[*UNITS, "volume-api"]):
        yield made


def _quota(html: str, label: str) -> tuple[str, str]:
    """(the bar's fill width, its words) of the quota ``label``."""
    found = re.search(rf'<li class="quota level-(\w+)">\s*<span class="label">{label}</span>'
                      r'\s*<svg[^>]*>(.*?)</svg>\s*<span class="numbers">([^<]+)</span>',
                      html, re.S)
    assert found, f"no bar for {label}"
    fill = re.search(r'class="fill"[^>]*width="(\d+)"', found.group(2))
    return (fill.group(1) if fill else "-"), f"{found.group(1)}: {found.group(3)}"


async def test_overview_draws_usage_of_each_quota_from_one_round(full: Deck) -> None:
    project_id, _ = await _whoami(full)
    limited = await full.api.put(f"/compute/v2.1/os-quota-sets/{project_id}",
                                 headers=full.admin(), json={"quota_set": {"instances": 4}})
    assert limited.status_code == 200, limited.text
    for server_id in await _servers(full, 3):
        await _set_state(full, server_id, vcpus=1, memory_mb=512)
    made = await full.api.post("/network/v2.0/networks", headers=full.admin(),
                               json={"network": {"name": "net-a"}})
    assert made.status_code == 201, made.text
    assert (await full.login()).status_code == 303

    full.calls.clear()
    page = await full.browser.get("/dashboard/overview")
    assert page.status_code == 200, page.text
    assert sorted(full.calls.made) == sorted([
        ("GET", f"/compute/v2.1/os-quota-sets/{project_id}/detail"),
        ("GET", f"/network/v2.0/quotas/{project_id}/details"),
        ("GET", f"/volume/v3/{project_id}/os-quota-sets/{project_id}")])
    assert 'aria-current="page">Overview<' in page.text
    assert 'class="banner"' not in page.text
    assert _quota(page.text, "Instances") == ("75", "low: 3 of 4 used (75%)")
    assert _quota(page.text, "vCPUs")[1].startswith("low: 3 of ")
    assert _quota(page.text, "RAM")[1].startswith("low: 1536 of ")
    # The network service's quotas are unlimited by default: no fill, the count in words.
    assert _quota(page.text, "Networks") == ("-", "low: 1 used, no limit")
    assert _quota(page.text, "Volumes")[1].startswith("low: 0 of ")
    assert _quota(page.text, "Volumes")[0] == "0"
    assert "style=" not in page.text  # the CSP allows no inline style: widths are attributes

    # At the limit: a full bar, and words that say so without colour.
    await _servers(full, 1)
    page = await full.browser.get("/dashboard/overview")
    assert _quota(page.text, "Instances") == ("100", "full: 4 of 4 used (100%)")


async def test_a_missing_service_is_a_banner_and_the_rest_renders(deck: Deck) -> None:
    # The default deck runs no volume API: its catalog URL answers 404.
    assert (await deck.login()).status_code == 303
    page = await deck.browser.get("/dashboard/overview")
    assert page.status_code == 200, page.text
    assert re.search(r'<p class="banner" role="alert">The block storage service[^<]*</p>',
                     page.text)
    assert _quota(page.text, "Instances")[1].startswith("low: 0 of ")
    assert _quota(page.text, "Ports") == ("-", "low: 0 used, no limit")
    assert re.search(r'id="quota-volume".*?Not available', page.text, re.S)
