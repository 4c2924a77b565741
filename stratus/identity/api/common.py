"""Small helpers shared by identity's resource routes."""

from __future__ import annotations

from stratus.core.context import RequestContext
from stratus.core.exceptions import ValidationError
from stratus.identity.resources import DEFAULT_DOMAIN_ID

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def bool_filter(name: str, value: str | None) -> bool | None:
    """Parse a boolean query filter (``?enabled=false``); None when absent."""
    if value is None:
        return None
    if value.lower() in _TRUE or value == "":
        return True
    if value.lower() in _FALSE:
        return False
    raise ValidationError(f"Invalid value for the filter '{name}': {value!r} is not a boolean.")


def default_domain(context: RequestContext, given: str | None) -> str:
    """A new resource's domain: the one given, else the caller's scope domain, else Default."""
    return given or context.domain_id or context.project_domain_id or DEFAULT_DOMAIN_ID


def text(value: str | None) -> str:
    return value or ""
