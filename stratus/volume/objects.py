"""What travels on the bus between volume-api and volume-managers."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class Connector(BaseModel, extra="allow"):
    """A compute host's description of itself (os-brick's connector: host, initiator...)."""

    host: str | None = None


class ConnectionInfo(BaseModel):
    driver_volume_type: str
    data: dict[str, Any]
