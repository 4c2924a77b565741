"""The network service's callers: core's ``Caller`` refusing with Neutron's
``PolicyNotAuthorized``; the policy target of a network."""

from __future__ import annotations

from typing import Any

from stratus.core.context import RequestContext
from stratus.core.policy import Caller, Enforcer
from stratus.network.errors import PolicyNotAuthorized
from stratus.network.models import Network


def denial(rule: str) -> PolicyNotAuthorized:
    """Neutron's 403 for a rule the caller does not pass."""
    return PolicyNotAuthorized(f"(rule:{rule}) is disallowed by policy")


def network_caller(context: RequestContext, enforcer: Enforcer) -> Caller:
    return Caller(context, enforcer, denial=denial)


def network_target(net: Network) -> dict[str, Any]:
    return {"project_id": net.project_id, "tenant_id": net.project_id, "shared": net.shared,
            "network_id": net.id}
