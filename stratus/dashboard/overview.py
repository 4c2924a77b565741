"""The overview: the project's quota and usage as bars, compute, network and volume.

One parallel round of three calls (compute ``os-quota-sets/{p}/detail``, network
``quotas/{p}/details``, block storage ``os-quota-sets/{p}?usage=true``); a service that
fails is a banner naming it and the others still show. The bars are drawn here, as SVG
with their widths as attributes (the CSP allows no inline style), each with its numbers in
words beside it, so nothing depends on colour. Usage is never cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from stratus.dashboard.client import ApiError, gather
from stratus.dashboard.web import Page, current, render

router = APIRouter()

#: Per service: (the key in its quota body, the label, the unit shown after numbers).
#: (Key pairs are not shown: they count per user, and the project's detail says 0 in use.)
COMPUTE = (("instances", "Instances", ""), ("cores", "vCPUs", ""), ("ram", "RAM", "MiB"),
           ("server_groups", "Server groups", ""))
NETWORK = (("network", "Networks", ""), ("subnet", "Subnets", ""), ("port", "Ports", ""),
           ("router", "Routers", ""), ("floatingip", "Floating IPs", ""),
           ("security_group", "Security groups", ""))
VOLUME = (("volumes", "Volumes", ""), ("gigabytes", "Volume storage", "GB"),
          ("snapshots", "Snapshots", ""), ("backups", "Backups", ""))


@dataclass
class Bar:
    """One quota: how much is used of how much (``limit`` < 0: no limit)."""

    label: str
    used: int
    limit: int
    unit: str = ""

    @property
    def limited(self) -> bool:
        return self.limit >= 0

    @property
    def percent(self) -> int:
        """Share used, 0-100 (a full bar when over a lowered limit or the limit is 0)."""
        if not self.limited:
            return 0
        if self.limit == 0:
            return 100 if self.used else 0
        return min(100, round(100 * self.used / self.limit))

    @property
    def level(self) -> str:
        """``low``, ``high`` (≥ 80%) or ``full``: a class for the bar's colour."""
        if self.limited and self.used >= self.limit:
            return "full"
        return "high" if self.percent >= 80 else "low"

    @property
    def text(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        if not self.limited:
            return f"{self.used}{unit} used, no limit"
        return f"{self.used} of {self.limit}{unit} used ({self.percent}%)"


def _bars(body: Any, root: str, fields: tuple[tuple[str, str, str], ...],
          used_key: str) -> list[Bar]:
    quotas = body.get(root, {}) if isinstance(body, dict) else {}
    bars = []
    for key, label, unit in fields:
        entry = quotas.get(key)
        if not isinstance(entry, dict):
            continue
        bars.append(Bar(label, int(entry.get(used_key) or 0), int(entry.get("limit", -1)),
                        unit))
    return bars


@router.get("/overview")
async def overview(request: Request, page: Page = Depends(current)) -> Response:
    project_id = page.session.project["id"]
    compute, network, volume = await gather(
        page.api.get("compute", f"/os-quota-sets/{project_id}/detail"),
        page.api.get("network", f"/v2.0/quotas/{project_id}/details"),
        page.api.get("block-storage", f"/os-quota-sets/{project_id}",
                     params={"usage": "true"}))
    sections = [
        ("Compute", "compute", None if isinstance(compute, ApiError)
         else _bars(compute, "quota_set", COMPUTE, "in_use")),
        ("Network", "network", None if isinstance(network, ApiError)
         else _bars(network, "quota", NETWORK, "used")),
        ("Volume", "volume", None if isinstance(volume, ApiError)
         else _bars(volume, "quota_set", VOLUME, "in_use")),
    ]
    banners = [r.banner for r in (compute, network, volume) if isinstance(r, ApiError)]
    return render(request, "overview.html", sections=sections, banners=banners)
