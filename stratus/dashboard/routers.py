"""Routers: the list with each one's external gateway and interfaces, create (optionally
with a gateway), set or clear the external gateway, add and remove an interface on a
subnet, delete.

Contracts:

* The page is one round: the project's ``routers``, ``networks`` (names, and the external
  ones a gateway may use), ``subnets`` (the interface choice: those of the project's own and
  shared networks) and the project's router interface ports
  (``device_owner=network:router_interface``: every router's interfaces in one call).
* The network API's refusals (a subnet already on a router, a router with interfaces
  deleted) show beside the router's row.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from stratus.dashboard.client import ApiError, gather
from stratus.dashboard.forms import (
    Refusal,
    banners,
    by_id,
    items,
    names,
    placed,
    refuse,
    submit,
)
from stratus.dashboard.networks import project_networks
from stratus.dashboard.web import Page, current, field, form_of, render

router = APIRouter()

INTERFACE_OWNER = "network:router_interface"


def _interfaces(ports: list[dict[str, Any]], subnets: dict[str, dict[str, Any]]
                ) -> dict[str, list[dict[str, str]]]:
    """Router id → its interfaces (subnet id, the subnet as shown, the router's address)."""
    found: dict[str, list[dict[str, str]]] = {}
    for port in ports:
        for ip in port.get("fixed_ips") or []:
            subnet = subnets.get(ip.get("subnet_id", ""), {})
            found.setdefault(port.get("device_id", ""), []).append({
                "subnet_id": ip.get("subnet_id", ""),
                "subnet": f"{subnet.get('name') or 'subnet'} {subnet.get('cidr', '')}".strip(),
                "ip": ip.get("ip_address", "")})
    return found


async def _page(request: Request, page: Page, *, status_code: int = 200,
                error: Refusal | None = None, values: dict[str, str] | None = None
                ) -> Response:
    project_id = page.session.project["id"]
    routers, networks, subnets, ports = await gather(
        page.api.get("network", "/v2.0/routers", params={"project_id": project_id}),
        page.api.get("network", "/v2.0/networks"),
        page.api.get("network", "/v2.0/subnets"),
        page.api.get("network", "/v2.0/ports", params={"device_owner": INTERFACE_OWNER,
                                                       "project_id": project_id}))
    network_rows = items(networks, "networks")
    subnet_rows = by_id(items(subnets, "subnets"))
    joinable = {n["id"] for n in project_networks(network_rows, project_id)
                if not n.get("router:external")}
    rows = sorted(items(routers, "routers"), key=lambda r: (r.get("name") or "", r["id"]))
    return render(request, "routers.html", status_code=status_code,
                  banners=banners(routers, networks, subnets, ports), routers=rows,
                  listed=not isinstance(routers, ApiError),
                  network_names=names(networks, "networks"),
                  external=sorted((n for n in network_rows if n.get("router:external")),
                                  key=lambda n: n.get("name") or ""),
                  subnets=sorted((s for s in subnet_rows.values()
                                  if s.get("network_id") in joinable),
                                 key=lambda s: (s.get("name") or "", s.get("cidr", ""))),
                  interfaces=_interfaces(items(ports, "ports"), subnet_rows),
                  error=placed(error, ["create", *(f"router-{r['id']}" for r in rows)]),
                  values=values or {})


@router.get("/routers")
async def routers_page(request: Request, page: Page = Depends(current)) -> Response:
    return await _page(request, page)


def _gateway(network_id: str) -> dict[str, Any]:
    return {"network_id": network_id} if network_id else {}


@router.post("/routers")
async def create(request: Request, page: Page = Depends(current)) -> Response:
    form = await form_of(request)
    values = {"name": field(form, "name"), "gateway": field(form, "gateway")}
    again = partial(_page, request, page, values=values)
    if not values["name"]:
        return await refuse(again, "create", "Give the router a name.")
    body: dict[str, Any] = {"name": values["name"]}
    if values["gateway"]:
        body["external_gateway_info"] = _gateway(values["gateway"])
    return await submit(request, lambda: page.api.post("network", "/v2.0/routers",
                                                       {"router": body}),
                        where="create", again=again, back="/routers")


@router.post("/routers/{router_id}/gateway")
async def set_gateway(request: Request, router_id: str,
                      page: Page = Depends(current)) -> Response:
    """Set the external gateway to the form's ``network``; none given: clear it."""
    network_id = field(await form_of(request), "network")
    return await submit(request, lambda: page.api.request(
        "network", "PUT", f"/v2.0/routers/{router_id}",
        json={"router": {"external_gateway_info": _gateway(network_id)}}),
        where=f"router-{router_id}", again=partial(_page, request, page), back="/routers")


@router.post("/routers/{router_id}/interfaces/{change}")
async def interface(request: Request, router_id: str, change: str,
                    page: Page = Depends(current)) -> Response:
    """``change``: ``add`` or ``remove`` the interface on the form's ``subnet``."""
    subnet_id = field(await form_of(request), "subnet")
    again = partial(_page, request, page)
    where = f"router-{router_id}"
    if change not in ("add", "remove"):
        return render(request, "message.html", status_code=404,
                      message=f"No interface change {change!r}.")
    if not subnet_id:
        return await refuse(again, where, "Choose a subnet.")
    return await submit(request, lambda: page.api.request(
        "network", "PUT", f"/v2.0/routers/{router_id}/{change}_router_interface",
        json={"subnet_id": subnet_id}), where=where, again=again, back="/routers")


@router.post("/routers/{router_id}/delete")
async def delete(request: Request, router_id: str, page: Page = Depends(current)) -> Response:
    return await submit(request, lambda: page.api.request(
        "network", "DELETE", f"/v2.0/routers/{router_id}"),
        where=f"router-{router_id}", again=partial(_page, request, page), back="/routers")
