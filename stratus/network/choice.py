"""Which network backend a process runs (``settings.network.backend``, or the automatic
choice), apart from the backends themselves: a process deciding whether its network agents
can run (``stratus.network.units.agents_unavailable``, before any unit starts) has no use
for the backends' modules yet."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from stratus.core import hosttools
from stratus.core.config import Settings

BACKENDS = ("linuxbridge", "noop")


@dataclass(frozen=True)
class BackendChoice:
    """The backend this process runs, and why (shown on start-up and by ``stratus doctor``)."""

    name: str
    reason: str


def backend_choice(settings: Settings) -> BackendChoice:
    """The configured backend, or the automatic choice: linuxbridge when this process is
    root and dnsmasq is found, else noop, with what is missing and how to add it."""
    chosen = settings.network.backend
    if chosen is not None:
        if chosen not in BACKENDS:
            raise ValueError(f"network backend {chosen!r} is unknown; use one of "
                             f"{', '.join(BACKENDS)}")
        return BackendChoice(chosen, "configured")
    lacking = []
    if os.geteuid() != 0:
        lacking.append("not root (bridges, namespaces and DHCP need root)")
    if shutil.which(settings.network.dnsmasq) is None:
        lacking.append(hosttools.missing(settings.network.dnsmasq))
    if lacking:
        return BackendChoice("noop", "; ".join(lacking))
    return BackendChoice("linuxbridge", "root, dnsmasq found")
