"""Reading the Network API's request bodies: JSON, then the resource's model
(``schemas``); a create takes one item or a bulk list."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from stratus.network.api.schemas import Model, parse
from stratus.network.errors import InvalidInput


async def json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw or b"null")
    except ValueError as exc:
        raise InvalidInput("Malformed request body: the body is not valid JSON.") from exc


async def single_or_bulk(request: Request, singular: str, plural: str,
                         model: type[Model]) -> tuple[list[Model], bool]:
    """The items of a create body, ``{singular: {...}}`` or ``{plural: [...]}`` (bulk),
    each checked against ``model``."""
    body = await json_body(request)
    if isinstance(body, dict) and set(body) == {singular}:
        return [parse(model, body[singular], singular)], False
    if isinstance(body, dict) and set(body) == {plural} and isinstance(body[plural], list):
        if not body[plural]:
            raise InvalidInput(f"Invalid input: '{plural}' is empty.")
        return [parse(model, item, singular) for item in body[plural]], True
    raise InvalidInput(f"Unable to find '{singular}' in request body")


async def update_body(request: Request, singular: str, model: type[Model]) -> Model:
    body = await json_body(request)
    if not isinstance(body, dict) or set(body) != {singular}:
        raise InvalidInput(f"Unable to find '{singular}' in request body")
    return parse(model, body[singular], singular)
