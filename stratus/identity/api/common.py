"""Small helpers shared by identity's resource routes."""

from __future__ import annotations

from stratus.core.context import RequestContext
from stratus.identity.resources import DEFAULT_DOMAIN_ID


def default_domain(context: RequestContext, given: str | None) -> str:
    """A new resource's domain: the one given, else the caller's scope domain, else Default."""
    return given or context.domain_id or context.project_domain_id or DEFAULT_DOMAIN_ID


def text(value: str | None) -> str:
    return value or ""
