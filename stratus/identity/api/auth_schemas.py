"""The auth request's body (``POST /v3/auth/tokens``), validated strictly as Keystone's JSON
schema does: an unknown scope or a mistyped key is a 400.

Apart from the resources' bodies (``schemas``): a start builds the token routes before it
serves (its first token needs them) and the rest of the API on its first request, and
these ~13 models are all the token routes need; the resources' ~38 were a tenth of a
second of a start's CPU, building pydantic validators nobody had asked for yet.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class DomainRef(_Strict):
    id: str | None = None
    name: str | None = None


class DomainScopedRef(_Strict):
    """A reference by ``id``, or by ``name`` within a ``domain`` (itself an id or a name)."""

    id: str | None = None
    name: str | None = None
    domain: DomainRef | None = None


class UserRef(DomainScopedRef):
    password: str | None = Field(default=None, repr=False)


class PasswordMethod(_Strict):
    user: UserRef


class TokenMethod(_Strict):
    id: str = Field(repr=False)


class AppCredentialMethod(_Strict):
    id: str | None = None
    name: str | None = None
    secret: str = Field(repr=False)
    user: UserRef | None = None


class Identity(_Strict):
    methods: list[str] = Field(min_length=1)
    password: PasswordMethod | None = None
    token: TokenMethod | None = None
    application_credential: AppCredentialMethod | None = None


class ProjectScope(DomainScopedRef):
    """The project a token is scoped to."""


class SystemScope(_Strict):
    all: bool


class ScopeBody(_Strict):
    project: ProjectScope | None = None
    domain: DomainRef | None = None
    system: SystemScope | None = None


class AuthBody(_Strict):
    identity: Identity
    scope: ScopeBody | Literal["unscoped"] | None = None


class AuthRequestBody(_Strict):
    auth: AuthBody
