"""``POST .../action`` bodies: the one action a body names and its argument."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from stratus.core.exceptions import BadRequest


async def one_action(request: Request, invalid: str = "Invalid input") -> tuple[str, Any]:
    """The action the body names and its argument. A body that is not JSON, or names no
    action or several, is a 400; ``invalid`` begins the message, in the API's words
    (Cinder's "Invalid input received")."""
    try:
        body = await request.json()
    except ValueError:
        raise BadRequest("Malformed request body: the body is not valid JSON.") from None
    if not isinstance(body, dict) or len(body) != 1:
        raise BadRequest(f"{invalid}: an action body names one action.")
    ((name, args),) = body.items()
    return str(name), args
