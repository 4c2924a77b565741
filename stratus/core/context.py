"""The request context: who is asking, under which request id.

One ``RequestContext`` is built per API request (and, later, per bus message). It is
kept in a context variable so log lines and spans can name the request without it being
passed down every call.
"""

from __future__ import annotations

import contextvars
import uuid
from dataclasses import dataclass, field
from typing import Any

from stratus.core.exceptions import Forbidden

#: The project of contexts built by ``RequestContext.for_service``.
SERVICE_PROJECT = "service"

_current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "stratus_request_id", default=None
)


#: The instance (server) the current request or message is about, where one is known: log
#: lines name it (``stratus.core.logging``).
_current_instance: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "stratus_instance", default=None
)


#: The variables themselves, for tracing's hot path (a ``get`` without a call around it).
REQUEST_ID_VARIABLE = _current_request_id
INSTANCE_VARIABLE = _current_instance


def generate_request_id() -> str:
    return f"req-{uuid.uuid4()}"


def is_request_id(value: str | None) -> bool:
    """True for ``req-<uuid>``, the only form accepted from callers as a global request id."""
    if not value or not value.startswith("req-"):
        return False
    try:
        uuid.UUID(value[4:])
    except ValueError:
        return False
    return True


def current_request_id() -> str | None:
    return _current_request_id.get()


def set_request_id(request_id: str | None) -> contextvars.Token[str | None]:
    return _current_request_id.set(request_id)


def reset_request_id(token: contextvars.Token[str | None]) -> None:
    _current_request_id.reset(token)


def current_instance() -> str | None:
    return _current_instance.get()


def set_instance(instance_uuid: str | None) -> contextvars.Token[str | None]:
    """Name the instance the current request or message is about (None: none known)."""
    return _current_instance.set(instance_uuid)


def reset_instance(token: contextvars.Token[str | None]) -> None:
    _current_instance.reset(token)


@dataclass
class RequestContext:
    """Caller identity and request ids; built from a validated token."""

    request_id: str = field(default_factory=generate_request_id)
    global_request_id: str | None = None
    user_id: str | None = None
    user_name: str | None = None
    user_domain_id: str | None = None
    project_id: str | None = None
    project_name: str | None = None
    project_domain_id: str | None = None
    domain_id: str | None = None
    system_scope: str | None = None
    roles: list[str] = field(default_factory=list)
    #: Roles carried by a valid X-Service-Token, if one was sent.
    service_roles: list[str] = field(default_factory=list)
    service_user_id: str | None = None
    auth_token: str | None = field(default=None, repr=False)
    service_token: str | None = field(default=None, repr=False)
    #: The validated token body, for APIs that need more than the fields above.
    token: dict[str, Any] | None = field(default=None, repr=False)

    @classmethod
    def for_service(cls, name: str, *, request_id: str | None = None) -> RequestContext:
        """The context a service acts under on its own behalf (an agent's periodic task, a
        manager's clean-up): user ``name``, the ``service`` project and role. ``request_id``:
        the id of the request it acts for (its calls are logged under it); None, a new one."""
        if request_id is None:
            return cls(user_id=name, project_id=SERVICE_PROJECT, roles=["service"])
        return cls(request_id=request_id, user_id=name, project_id=SERVICE_PROJECT,
                   roles=["service"])

    def require_project(self) -> str:
        """The project this request is scoped to; ``Forbidden`` when it has none (an
        unscoped or domain-scoped token reached a project's API)."""
        if self.project_id is None:
            raise Forbidden("This request needs a token scoped to a project.")
        return self.project_id

    @property
    def is_authenticated(self) -> bool:
        return self.user_id is not None

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    def policy_credentials(self) -> dict[str, Any]:
        """The facts about the caller that policy rules may test."""
        return {
            "user_id": self.user_id,
            "user_domain_id": self.user_domain_id,
            "project_id": self.project_id,
            "project_domain_id": self.project_domain_id,
            "domain_id": self.domain_id,
            "system_scope": self.system_scope,
            "roles": list(self.roles),
            "service_roles": list(self.service_roles),
            "is_admin": self.is_admin,
        }

    def to_dict(self) -> dict[str, Any]:
        """A serialisable form without secrets (for logs and bus envelopes)."""
        return {
            "request_id": self.request_id,
            "global_request_id": self.global_request_id,
            "user_id": self.user_id,
            "project_id": self.project_id,
            "domain_id": self.domain_id,
            "system_scope": self.system_scope,
            "roles": list(self.roles),
            "service_roles": list(self.service_roles),
        }
