"""Who asks, and what the network policy lets them do (``Caller``); the policy target of
a network."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stratus.core.context import RequestContext
from stratus.core.policy import Enforcer
from stratus.network.errors import PolicyNotAuthorized
from stratus.network.models import Network


class Caller:
    """Who asks, and what policy lets them do. ``is_service``: a valid service token with
    the ``service`` or ``admin`` role came with the request."""

    def __init__(self, context: RequestContext, enforcer: Enforcer) -> None:
        self.context = context
        self.enforcer = enforcer
        creds = context.policy_credentials()
        creds["is_service"] = bool({"service", "admin"} & set(context.service_roles))
        self.credentials = creds
        self.is_admin = enforcer.check("context_is_admin", {}, creds)

    @property
    def project_id(self) -> str:
        return self.context.project_id or ""

    def check(self, rule: str, target: Mapping[str, Any] | None = None) -> bool:
        flat = dict(target or {})
        return self.enforcer.check(rule, {**flat, "target": flat}, self.credentials)

    def authorize(self, rule: str, target: Mapping[str, Any] | None = None) -> None:
        if not self.check(rule, target):
            raise PolicyNotAuthorized(f"(rule:{rule}) is disallowed by policy")


def network_target(net: Network) -> dict[str, Any]:
    return {"project_id": net.project_id, "tenant_id": net.project_id, "shared": net.shared,
            "network_id": net.id}
