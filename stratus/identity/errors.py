"""Identity's error types and the messages Keystone clients expect, in one place.

Contracts: every error here is a ``StratusError`` (the web layer maps it to its status)
except ``TokenDecodeError``, which never leaves the domain: validation turns it into
``TokenNotFound``. Message texts are part of the API; tests assert them.
"""

from __future__ import annotations

from stratus.core.exceptions import Conflict, NotFound, Unauthorized


class TokenDecodeError(Exception):
    """The string is not a token this cloud issued (or its key has been rotated out)."""


class TokenNotFound(NotFound):
    """Any token that is not valid: bad, expired, revoked, or its user or scope gone.

    One answer for all of them, so a caller learns nothing about why."""

    def __init__(self) -> None:
        super().__init__("Could not find token.")


class BadCredentials(Unauthorized):
    """An unknown user and a wrong secret get the same answer: say nothing about which."""

    def __init__(self) -> None:
        super().__init__("The request you have made requires authentication.")


def not_found(kind: str, key: str) -> NotFound:
    """``Could not find <kind>: <key>.``, Keystone's wording for a missing resource."""
    return NotFound(f"Could not find {kind}: {key}.")


def duplicate(action: str, kind: str, detail: str) -> Conflict:
    """Keystone's wording for a unique name taken (``action`` is "store" or "update")."""
    return Conflict(f"Conflict occurred attempting to {action} {kind} - {detail}")
