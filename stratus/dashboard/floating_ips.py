"""Floating IPs: the list, allocate one from an external network, associate it with a
server's port, disassociate, release.

Contracts:

* The page is one round: the project's ``floatingips``, the external networks (the pools),
  the project's ports (its servers' ones are the association choice) and the servers
  (``GET /servers``: their names); never a call per row.
* A port is offered as "server: address", the way a user knows it; the network API's
  refusals (no router to reach the port's subnet, a pool exhausted) show beside the row or
  the allocate form.
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

SERVER_PORT_PREFIX = "compute:"


def _targets(ports: list[dict[str, Any]], servers: dict[str, str]
             ) -> list[tuple[str, str]]:
    """(port id, "server: address") of every server's port with an address, by label."""
    found = []
    for port in ports:
        if not (port.get("device_owner") or "").startswith(SERVER_PORT_PREFIX):
            continue
        server = servers.get(port.get("device_id", ""), port.get("device_id", ""))
        addresses = ", ".join(ip.get("ip_address", "") for ip in port.get("fixed_ips") or [])
        if addresses:
            found.append((port["id"], f"{server}: {addresses}"))
    return sorted(found, key=lambda t: t[1])


async def _page(request: Request, page: Page, *, status_code: int = 200,
                error: Refusal | None = None) -> Response:
    project_id = page.session.project["id"]
    floating, external, ports, servers = await gather(
        page.api.get("network", "/v2.0/floatingips", params={"project_id": project_id}),
        page.api.get("network", "/v2.0/networks", params={"router:external": "true"}),
        page.api.get("network", "/v2.0/ports", params={"project_id": project_id}),
        page.api.get("compute", "/servers"))
    targets = _targets(items(ports, "ports"), names(servers, "servers"))
    pools = names(external, "networks")
    rows = sorted(items(floating, "floatingips"),
                  key=lambda f: (f.get("floating_ip_address") or "", f["id"]))
    return render(request, "floating_ips.html", status_code=status_code,
                  banners=banners(floating, external, ports, servers), floating_ips=rows,
                  listed=not isinstance(floating, ApiError), pools=pools,
                  targets=targets, target_names=dict(targets),
                  error=placed(error, ["allocate", *(f"fip-{f['id']}" for f in rows)]))


@router.get("/floating-ips")
async def floating_ips_page(request: Request, page: Page = Depends(current)) -> Response:
    return await _page(request, page)


@router.post("/floating-ips")
async def allocate(request: Request, page: Page = Depends(current)) -> Response:
    network_id = field(await form_of(request), "network")
    again = partial(_page, request, page)
    if not network_id:
        return await refuse(again, "allocate", "Choose the external network to allocate from.")
    return await submit(request, lambda: page.api.post(
        "network", "/v2.0/floatingips", {"floatingip": {"floating_network_id": network_id}}),
        where="allocate", again=again, back="/floating-ips")


async def _set_port(request: Request, page: Page, floating_id: str,
                    port_id: str | None) -> Response:
    return await submit(request, lambda: page.api.request(
        "network", "PUT", f"/v2.0/floatingips/{floating_id}",
        json={"floatingip": {"port_id": port_id}}),
        where=f"fip-{floating_id}", again=partial(_page, request, page), back="/floating-ips")


@router.post("/floating-ips/{floating_id}/associate")
async def associate(request: Request, floating_id: str,
                    page: Page = Depends(current)) -> Response:
    port_id = field(await form_of(request), "port")
    if not port_id:
        return await refuse(partial(_page, request, page), f"fip-{floating_id}",
                            "Choose the instance's port.")
    return await _set_port(request, page, floating_id, port_id)


@router.post("/floating-ips/{floating_id}/disassociate")
async def disassociate(request: Request, floating_id: str,
                       page: Page = Depends(current)) -> Response:
    return await _set_port(request, page, floating_id, None)


@router.post("/floating-ips/{floating_id}/release")
async def release(request: Request, floating_id: str,
                  page: Page = Depends(current)) -> Response:
    return await submit(request, lambda: page.api.request(
        "network", "DELETE", f"/v2.0/floatingips/{floating_id}"),
        where=f"fip-{floating_id}", again=partial(_page, request, page), back="/floating-ips")
