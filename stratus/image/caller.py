"""Who asks, and what policy lets them do: the image domain authorizes with a ``Caller``.

Every domain operation takes the caller; a rule that fails is ``Forbidden`` with Glance's
message. ``image_target`` is the policy target of one image (its owner as ``project_id``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stratus.core.context import RequestContext
from stratus.core.exceptions import Forbidden
from stratus.core.policy import Enforcer
from stratus.image.models import Image


class Caller:
    """Who asks, and what policy lets them do."""

    def __init__(self, context: RequestContext, enforcer: Enforcer) -> None:
        self.context = context
        self.enforcer = enforcer
        self.credentials = context.policy_credentials()
        self.is_admin = enforcer.check("context_is_admin", {}, self.credentials)

    @property
    def project_id(self) -> str | None:
        return self.context.project_id

    def check(self, rule: str, target: Mapping[str, Any]) -> bool:
        return self.enforcer.check(rule, {**target, "target": dict(target)}, self.credentials)

    def authorize(self, rule: str, target: Mapping[str, Any]) -> None:
        if not self.check(rule, target):
            raise Forbidden(f"You are not authorized to perform the requested action: {rule}.")


def image_target(image: Image, member_id: str | None = None) -> dict[str, Any]:
    return {"project_id": image.owner, "owner": image.owner, "visibility": image.visibility,
            "member_id": member_id, "image_id": image.id}
