"""Networks: the list with their subnets, create (a network and, if a CIDR is given, its
subnet), delete, and a network's detail with its subnets and ports.

Contracts:

* The list is one round (``networks``, ``subnets``); the detail one round (the network,
  its subnets, its ports), never a call per row.
* An admin's token lists every project's networks: the page keeps the project's own, the
  shared and the external ones (what a launch or a router of the project can use), as
  Horizon's project view does, without a second call.
* Create with a subnet is two calls; when the subnet is refused the network just made is
  deleted again (nothing half-made is left) and the subnet's message shows at the form.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from stratus.dashboard.client import ApiError, gather
from stratus.dashboard.forms import Refusal, banners, items, placed, refuse, submit
from stratus.dashboard.web import Page, current, field, form_of, redirect, render

router = APIRouter()


def project_networks(networks: list[dict[str, Any]], project_id: str
                     ) -> list[dict[str, Any]]:
    """The networks the project uses: its own, the shared and the external ones."""
    return [n for n in networks if n.get("project_id") == project_id or n.get("shared")
            or n.get("router:external")]


def subnets_by_network(subnets: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for subnet in subnets:
        grouped.setdefault(subnet.get("network_id", ""), []).append(subnet)
    return grouped


async def _page(request: Request, page: Page, *, status_code: int = 200,
                error: Refusal | None = None, values: dict[str, str] | None = None
                ) -> Response:
    networks, subnets = await gather(page.api.get("network", "/v2.0/networks"),
                                     page.api.get("network", "/v2.0/subnets"))
    rows = sorted(project_networks(items(networks, "networks"), page.session.project["id"]),
                  key=lambda n: (
        bool(n.get("router:external")), n.get("name") or "", n["id"]))
    return render(request, "networks.html", status_code=status_code,
                  banners=banners(networks, subnets), networks=rows,
                  subnets=subnets_by_network(items(subnets, "subnets")),
                  listed=not isinstance(networks, ApiError),
                  error=placed(error, ["create", *(f"network-{n['id']}" for n in rows)]),
                  values=values or {"ip_version": "4", "dhcp": "on"})


@router.get("/networks")
async def networks_page(request: Request, page: Page = Depends(current)) -> Response:
    return await _page(request, page)


@router.post("/networks")
async def create(request: Request, page: Page = Depends(current)) -> Response:
    form = await form_of(request)
    values = {key: field(form, key) for key in ("name", "subnet_name", "cidr", "gateway_ip",
                                                "ip_version", "dhcp")}
    again = partial(_page, request, page, values=values)
    if not values["name"]:
        return await refuse(again, "create", "Give the network a name.")
    try:
        network = (await page.api.post("network", "/v2.0/networks", {
            "network": {"name": values["name"]}}))["network"]
    except ApiError as exc:
        return await again(status_code=exc.status, error=Refusal.of("create", exc))
    if not values["cidr"]:
        return redirect(request, "/networks")
    subnet: dict[str, Any] = {
        "network_id": network["id"], "name": values["subnet_name"], "cidr": values["cidr"],
        "ip_version": 6 if values["ip_version"] == "6" else 4,
        "enable_dhcp": values["dhcp"] == "on"}
    if values["gateway_ip"]:
        subnet["gateway_ip"] = values["gateway_ip"]
    try:
        await page.api.post("network", "/v2.0/subnets", {"subnet": subnet})
    except ApiError as exc:
        try:  # the network without its subnet is not what was asked for
            await page.api.request("network", "DELETE", f"/v2.0/networks/{network['id']}")
        except ApiError:
            pass  # the list will show it; the subnet's refusal is the message that matters
        return await again(status_code=exc.status, error=Refusal.of("create", exc))
    return redirect(request, "/networks")


@router.post("/networks/{network_id}/delete")
async def delete(request: Request, network_id: str, page: Page = Depends(current)) -> Response:
    return await submit(request, lambda: page.api.request(
        "network", "DELETE", f"/v2.0/networks/{network_id}"),
        where=f"network-{network_id}", again=partial(_page, request, page), back="/networks")


@router.get("/networks/{network_id}")
async def detail(request: Request, network_id: str, page: Page = Depends(current)) -> Response:
    network, subnets, ports = await gather(
        page.api.get("network", f"/v2.0/networks/{network_id}"),
        page.api.get("network", "/v2.0/subnets", params={"network_id": network_id}),
        page.api.get("network", "/v2.0/ports", params={"network_id": network_id}))
    if isinstance(network, ApiError):
        return render(request, "message.html", status_code=network.status,
                      message=network.banner)
    return render(request, "network.html", network=network["network"],
                  banners=banners(subnets, ports), subnets=items(subnets, "subnets"),
                  ports=sorted(items(ports, "ports"), key=lambda p: (
                      p.get("device_owner") or "", p.get("name") or "", p["id"])))
