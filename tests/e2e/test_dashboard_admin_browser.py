"""The admin pages in a real browser (Debian's chromium driven by Playwright) on the
session's dashboard cloud (``conftest.py``): identity admin (projects, users, a role on a
project) and the hosts page; every result checked through the API, and a member's view
checked too (no admin entries, the APIs' refusal on the pages).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cloud import Cloud
from tests.e2e.dashboard_browser import Admin, logged_in

pytestmark = pytest.mark.e2e


def test_projects_users_and_a_role_on_a_project(dashboard_page: Any, dashboard_admin: Admin,
                                                dashboard_browser: Any, dashboard_cloud: Cloud,
                                                tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page, admin = dashboard_page, dashboard_admin
    page.get_by_role("link", name="Projects", exact=True).click()
    expect(page.get_by_role("heading", name="Create a project")).to_be_visible()
    # By keyboard alone: the field, its text, Enter submits.
    page.get_by_label("Project name").focus()
    page.keyboard.type("blue")
    page.keyboard.press("Tab")
    page.keyboard.type("the blue team")
    page.keyboard.press("Enter")
    row = page.locator("#projects tr", has_text="blue")
    expect(row).to_contain_text("the blue team")
    (blue,) = admin.identity("projects", name="blue")
    assert blue["enabled"] is True and blue["description"] == "the blue team"
    # The same name again: the identity API's refusal at the form.
    page.get_by_label("Project name").fill("blue")
    page.get_by_role("button", name="Create project").click()
    expect(page.locator("#create-error")).to_contain_text("blue")

    page.get_by_role("link", name="Users", exact=True).click()
    page.get_by_label("User name").fill("frank")
    page.get_by_label("Password").fill("frank-secret-pw-1")
    page.get_by_label("Email").fill("frank@example.org")
    page.get_by_label("Default project").select_option(label="blue")
    page.get_by_role("button", name="Create user").click()
    user_row = page.locator("#users tr", has_text="frank")
    expect(user_row).to_contain_text("frank@example.org")
    expect(user_row).to_contain_text("blue")
    (frank,) = admin.identity("users", name="frank")
    assert frank["default_project_id"] == blue["id"]

    page.get_by_role("link", name="Projects", exact=True).click()
    page.get_by_role("link", name="Edit project blue and its members").click()
    expect(page.get_by_role("heading", name="Project blue")).to_be_visible()
    page.get_by_label("User", exact=True).select_option(label="frank")
    page.get_by_label("Role", exact=True).select_option(label="member")
    page.get_by_role("button", name="Assign role").click()
    granted = page.locator("#assignments tr", has_text="frank")
    expect(granted).to_contain_text("member")
    (assignment,) = admin.identity("role_assignments", **{"scope.project.id": blue["id"],
                                                          "include_names": "true"})
    assert (assignment["user"]["name"], assignment["role"]["name"]) == ("frank", "member")
    page.screenshot(path=str(tmp_path / "identity-project.png"), full_page=True)

    # Frank, a member: no admin entries; the APIs refuse the pages, with their message.
    with logged_in(dashboard_browser, dashboard_cloud, "frank", "frank-secret-pw-1") as member:
        expect(member.get_by_role("link", name="Instances")).to_be_visible()
        expect(member.get_by_role("link", name="Projects", exact=True)).to_have_count(0)
        expect(member.get_by_role("link", name="Hosts")).to_have_count(0)
        for path in ("/identity/projects", "/admin/hosts"):
            member.goto(f"{dashboard_cloud.url}/dashboard{path}")
            expect(member.locator(".banner")).to_contain_text(
                re.compile("not authorized|policy", re.I))

    page.get_by_role("button", name="Unassign role member from frank").click()
    expect(granted).to_have_count(0)
    assert admin.identity("role_assignments", **{"scope.project.id": blue["id"]}) == []

    page.get_by_role("link", name="All projects").click()
    row.get_by_role("button", name="Disable project blue").click()
    expect(row.get_by_role("button", name="Enable project blue")).to_be_visible()
    expect(row).to_contain_text("disabled")
    assert admin.identity("projects", name="blue")[0]["enabled"] is False

    page.get_by_role("link", name="Users", exact=True).click()
    user_row.get_by_role("button", name="Delete user frank").click()
    expect(user_row).to_have_count(0)
    assert admin.identity("users", name="frank") == []
    page.get_by_role("link", name="Projects", exact=True).click()
    row.get_by_role("button", name="Delete project blue").click()
    expect(row).to_have_count(0)
    assert admin.identity("projects", name="blue") == []


def test_hosts_page_shows_hypervisors_services_and_agents(dashboard_page: Any,
                                                          tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page = dashboard_page
    page.get_by_role("link", name="Hosts").click()
    expect(page.get_by_role("heading", name="Hosts", exact=True)).to_be_visible()
    hypervisor = page.locator("#hypervisors tbody tr").first
    expect(hypervisor.locator("td").first).to_have_text("up")
    compute = page.locator("#services tr", has_text="nova-compute")
    expect(compute.locator("td[data-label=State]")).to_have_text("up")
    expect(compute.locator("td[data-label=Status]")).to_have_text("enabled")
    expect(page.locator("#agents, #agents-empty")).to_be_visible()
    expect(page.locator(".error")).to_have_count(0)
    page.screenshot(path=str(tmp_path / "hosts.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: no sideways scrolling
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(tmp_path / "hosts-phone.png"), full_page=True)
