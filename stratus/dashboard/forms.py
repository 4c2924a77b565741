"""What the resource pages (volumes, networks, routers, floating IPs, security groups)
share: a form's call, and the page shown again with the API's refusal where it belongs.

Contracts:

* ``submit`` makes one call for a form or a row's button. Done: back to the list (a 303).
  Refused: the same page again, with the status the API answered, the values given, and a
  ``Refusal`` naming where its message goes (a form, or ``<kind>-<id>`` for a row); a 4xx
  says the API's own message, a 5xx or an unreachable service says which service.
  ``placed`` moves it to the top of the page (``page``) when its row is not on the page
  (gone meanwhile, or never there), so no refusal goes unsaid.
* ``items`` and ``banners`` read one ``gather`` round: a failed call is an empty list on
  the page and a banner above it, so the rest of the page renders.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from stratus.dashboard.client import ApiError
from stratus.dashboard.web import redirect


@dataclass(frozen=True)
class Refusal:
    """Why a form or row action did not happen, and where the page says so."""

    where: str
    message: str

    @classmethod
    def of(cls, where: str, exc: ApiError) -> Refusal:
        return cls(where, exc.message if exc.is_client_error else exc.banner)


#: The page again: ``again(status_code=..., error=Refusal)``.
Again = Callable[..., Awaitable[Response]]


async def submit(request: Request, call: Callable[[], Awaitable[Any]], *, where: str,
                 again: Again, back: str) -> Response:
    """Make ``call()``; done: to ``back``; refused: ``again`` with the message at ``where``."""
    try:
        await call()
    except ApiError as exc:
        return await again(status_code=exc.status, error=Refusal.of(where, exc))
    return redirect(request, back)


async def refuse(again: Again, where: str, message: str) -> Response:
    """The page again with a message of the dashboard's own (a field left empty)."""
    return await again(status_code=400, error=Refusal(where, message))


def placed(error: Refusal | None, places: Iterable[str]) -> Refusal | None:
    """``error`` where the page can show it: its own place if drawn, else the page's top."""
    if error is None or error.where in set(places):
        return error
    return Refusal("page", error.message)


def items(result: Any, key: str) -> list[dict[str, Any]]:
    """The list under ``key`` of one call's answer; none when the call failed."""
    if isinstance(result, ApiError) or not isinstance(result, dict):
        return []
    return list(result.get(key) or [])


def banners(*results: Any) -> list[str]:
    return [result.banner for result in results if isinstance(result, ApiError)]


def names(result: Any, key: str) -> dict[str, str]:
    """Id → name (the id when it has none) of the list under ``key``."""
    return {row["id"]: row.get("name") or row["id"] for row in items(result, key) if "id" in row}


def by_id(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["id"]: row for row in rows if "id" in row}
