"""What a compute host says about a guest's console, and the error when it has none.

Shared by the virt drivers (which know where a guest's VNC server or serial port is), the
agent that answers ``get_console`` over the bus, and the API that mints tokens for them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from stratus.core.exceptions import Conflict

#: The kinds of console a host can be asked for.
ConsoleKind = Literal["vnc", "serial"]


class ConsoleEndpoint(BaseModel):
    """Where a guest's console is on its host: a TCP ``port`` (VNC) on ``host``, or a
    character device at ``path`` (the serial port's pty)."""

    model_config = ConfigDict(extra="forbid")

    kind: ConsoleKind
    host: str
    port: int | None = None
    path: str | None = None


class ConsoleUnavailable(Conflict):
    """The guest has no console of that kind (its driver cannot have one, or it is not
    running): Nova's 409."""
