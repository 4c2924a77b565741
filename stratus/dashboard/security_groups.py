"""Security groups: the project's groups, create, delete, and a group's rules (add,
remove).

Contracts:

* The list is one call (``security-groups`` of the project: each group carries its rules);
  a group's page is one round (the group, and the project's groups to name a rule's remote
  group).
* A rule is given as a person thinks of it (direction, protocol, a port or range, from a
  CIDR or another group); what the network API refuses (a bad CIDR, a rule that exists)
  shows at the rule form.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from stratus.dashboard.client import ApiError, gather
from stratus.dashboard.forms import Refusal, banners, items, names, placed, refuse, submit
from stratus.dashboard.web import Page, current, field, form_of, render

router = APIRouter()

PROTOCOLS = ("tcp", "udp", "icmp", "any")


async def _list(request: Request, page: Page, *, status_code: int = 200,
                error: Refusal | None = None, values: dict[str, str] | None = None
                ) -> Response:
    (groups,) = await gather(page.api.get(
        "network", "/v2.0/security-groups", params={"project_id": page.session.project["id"]}))
    rows = sorted(items(groups, "security_groups"), key=lambda g: (g.get("name") or "", g["id"]))
    return render(request, "security_groups.html", status_code=status_code,
                  banners=banners(groups), groups=rows, listed=not isinstance(groups, ApiError),
                  error=placed(error, ["create", *(f"group-{g['id']}" for g in rows)]),
                  values=values or {})


@router.get("/security-groups")
async def groups_page(request: Request, page: Page = Depends(current)) -> Response:
    return await _list(request, page)


@router.post("/security-groups")
async def create(request: Request, page: Page = Depends(current)) -> Response:
    form = await form_of(request)
    values = {"name": field(form, "name"), "description": field(form, "description")}
    again = partial(_list, request, page, values=values)
    if not values["name"]:
        return await refuse(again, "create", "Give the security group a name.")
    return await submit(request, lambda: page.api.post(
        "network", "/v2.0/security-groups", {"security_group": values}),
        where="create", again=again, back="/security-groups")


@router.post("/security-groups/{group_id}/delete")
async def delete(request: Request, group_id: str, page: Page = Depends(current)) -> Response:
    return await submit(request, lambda: page.api.request(
        "network", "DELETE", f"/v2.0/security-groups/{group_id}"),
        where=f"group-{group_id}", again=partial(_list, request, page),
        back="/security-groups")


# A group's rules ----------------------------------------------------------------------------


async def _group(request: Request, page: Page, group_id: str, *, status_code: int = 200,
                 error: Refusal | None = None, values: dict[str, str] | None = None
                 ) -> Response:
    group, groups = await gather(
        page.api.get("network", f"/v2.0/security-groups/{group_id}"),
        page.api.get("network", "/v2.0/security-groups",
                     params={"project_id": page.session.project["id"]}))
    if isinstance(group, ApiError):
        return render(request, "message.html", status_code=group.status,
                      message=group.banner)
    rules = sorted(group["security_group"].get("security_group_rules") or [], key=lambda r: (
        r.get("direction", ""), r.get("ethertype", ""), r.get("protocol") or "",
        r.get("port_range_min") or 0))
    return render(request, "security_group.html", status_code=status_code,
                  banners=banners(groups), group=group["security_group"], rules=rules,
                  group_names=names(groups, "security_groups"),
                  protocols=PROTOCOLS,
                  error=placed(error, ["rule", *(f"rule-{r['id']}" for r in rules)]),
                  values=values or {"direction": "ingress", "ethertype": "IPv4",
                                    "protocol": "tcp"})


@router.get("/security-groups/{group_id}")
async def group_page(request: Request, group_id: str, page: Page = Depends(current)) -> Response:
    return await _group(request, page, group_id)


def _rule(group_id: str, values: dict[str, str]) -> dict[str, Any] | str:
    """The rule's body, or what is wrong with the form."""
    rule: dict[str, Any] = {"security_group_id": group_id,
                            "direction": values["direction"] or "ingress",
                            "ethertype": values["ethertype"] or "IPv4"}
    if values["protocol"] and values["protocol"] != "any":
        rule["protocol"] = values["protocol"]
    for key in ("port_range_min", "port_range_max"):
        if values[key]:
            try:
                rule[key] = int(values[key])
            except ValueError:
                return "Ports: whole numbers (ICMP: the type and code)."
    if "port_range_min" in rule and "port_range_max" not in rule \
            and values["protocol"] in ("tcp", "udp"):
        rule["port_range_max"] = rule["port_range_min"]  # one port
    if values["remote_group"]:
        rule["remote_group_id"] = values["remote_group"]
    elif values["remote_ip_prefix"]:
        rule["remote_ip_prefix"] = values["remote_ip_prefix"]
    return rule


@router.post("/security-groups/{group_id}/rules")
async def add_rule(request: Request, group_id: str, page: Page = Depends(current)) -> Response:
    form = await form_of(request)
    values = {key: field(form, key) for key in (
        "direction", "ethertype", "protocol", "port_range_min", "port_range_max",
        "remote_ip_prefix", "remote_group")}
    again = partial(_group, request, page, group_id, values=values)
    rule = _rule(group_id, values)
    if isinstance(rule, str):
        return await refuse(again, "rule", rule)
    return await submit(request, lambda: page.api.post(
        "network", "/v2.0/security-group-rules", {"security_group_rule": rule}),
        where="rule", again=again, back=f"/security-groups/{group_id}")


@router.post("/security-groups/{group_id}/rules/{rule_id}/delete")
async def delete_rule(request: Request, group_id: str, rule_id: str,
                      page: Page = Depends(current)) -> Response:
    return await submit(request, lambda: page.api.request(
        "network", "DELETE", f"/v2.0/security-group-rules/{rule_id}"),
        where=f"rule-{rule_id}", again=partial(_group, request, page, group_id),
        back=f"/security-groups/{group_id}")
