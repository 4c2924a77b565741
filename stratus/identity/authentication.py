"""Authentication: prove who you are, pick a scope, get a token; and token validation.

Every token's body is rebuilt from its payload and the current database, so a validated
token reflects today's roles and names, and a disabled user or project stops it at once.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any, TypeVar

from stratus.core.config import IdentitySettings
from stratus.core.db import Txn, utcnow
from stratus.core.exceptions import NotFound, Unauthorized, ValidationError
from stratus.identity.app_credentials import AppCredentials
from stratus.identity.assignments import Assignments
from stratus.identity.catalog import Catalog
from stratus.identity.errors import BadCredentials, TokenDecodeError, TokenNotFound
from stratus.identity.models import ApplicationCredential, Domain, Project, Role, User
from stratus.identity.passwords import verify_secret
from stratus.identity.resources import Resources
from stratus.identity.revocation import RevocationLog
from stratus.identity.tokens import METHODS, TokenFormatter, TokenPayload, new_audit_id
from stratus.identity.users import Users

LOG = logging.getLogger(__name__)

_Row = TypeVar("_Row")

SUPPORTED_METHODS = ("password", "token", "application_credential")


def format_time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class UserRef:
    id: str | None = None
    name: str | None = None
    domain_id: str | None = None
    domain_name: str | None = None


@dataclass
class PasswordCredentials:
    user: UserRef
    password: str = field(repr=False)


@dataclass
class AppCredentialCredentials:
    secret: str = field(repr=False)
    id: str | None = None
    name: str | None = None
    user: UserRef | None = None


@dataclass
class Scope:
    #: "project", "domain", "system" or "unscoped"; None means the default project, if usable.
    kind: str | None = None
    id: str | None = None
    name: str | None = None
    domain_id: str | None = None
    domain_name: str | None = None


@dataclass
class AuthRequest:
    methods: list[str]
    password: PasswordCredentials | None = None
    token: str | None = field(default=None, repr=False)
    application_credential: AppCredentialCredentials | None = None
    scope: Scope = field(default_factory=Scope)


@dataclass
class IssuedToken:
    token: str = field(repr=False)
    payload: TokenPayload
    body: dict[str, Any]


@dataclass
class _Subject:
    user: User
    methods: list[str]
    expires_at: dt.datetime | None = None
    audit_chain_id: str | None = None
    app_cred: ApplicationCredential | None = None


@dataclass(eq=False, kw_only=True)
class Authentication:
    """Issues and validates tokens within one transaction, reading the repositories given
    (all bound to that transaction); ``options`` gives token lifetimes."""

    txn: Txn
    resources: Resources
    users: Users
    assignments: Assignments
    catalog: Catalog
    app_credentials: AppCredentials
    revocations: RevocationLog
    formatter: TokenFormatter
    options: IdentitySettings
    # Rows read in this transaction, held so each is loaded once: the session's identity
    # map only keeps rows something else still refers to.
    _rows: dict[tuple[type[Any], str], Any] = field(default_factory=dict, init=False,
                                                    repr=False)

    async def _row(self, model: type[_Row], row_id: str) -> _Row | None:
        key = (model, row_id)
        if key not in self._rows:
            self._rows[key] = await self.txn.session.get(model, row_id)
        row: _Row | None = self._rows[key]
        return row

    # Issue --------------------------------------------------------------------------------

    async def authenticate(self, request: AuthRequest, *,
                           include_catalog: bool = True) -> IssuedToken:
        if not request.methods:
            raise ValidationError("Invalid input for field 'identity/methods': no method given.")
        for method in request.methods:
            if method not in SUPPORTED_METHODS:
                raise Unauthorized(f"Attempted to authenticate with an unsupported method: "
                                   f"{method}.")
            if getattr(request, method) is None:
                raise ValidationError(f"Invalid input for field 'identity': the '{method}' "
                                      f"method is listed but its credentials are missing.")
        subjects = []
        if "password" in request.methods:
            assert request.password is not None
            subjects.append(await self._password(request.password))
        if "token" in request.methods:
            assert request.token is not None
            subjects.append(await self._token(request.token))
        if "application_credential" in request.methods:
            assert request.application_credential is not None
            subjects.append(await self._app_credential(request.application_credential))
        user = subjects[0].user
        if any(s.user.id != user.id for s in subjects):
            raise Unauthorized("The credentials given identify different users.")
        await self._check_user_enabled(user)
        # In the order a token's method bits decode to, so validation shows the same list.
        used = {m for subject in subjects for m in subject.methods}
        methods = [m for m in METHODS if m in used]
        app_cred = next((s.app_cred for s in subjects if s.app_cred), None)
        chain = next((s.audit_chain_id for s in subjects if s.audit_chain_id), None)

        now = utcnow()
        expires_at = now + dt.timedelta(seconds=self.options.token_expiration)
        for subject in subjects:
            if subject.expires_at is not None:
                expires_at = min(expires_at, subject.expires_at)
        payload = TokenPayload(
            user_id=user.id, methods=methods, expires_at=expires_at, issued_at=now,
            audit_ids=[new_audit_id()] + ([chain] if chain else []),
            app_cred_id=app_cred.id if app_cred else None,
        )
        await self._resolve_scope(payload, user, request.scope, app_cred)
        body = await self._body(payload, user, include_catalog=include_catalog)
        return IssuedToken(token=self.formatter.encode(payload), payload=payload, body=body)

    async def _password(self, creds: PasswordCredentials) -> _Subject:
        ref = creds.user
        try:
            user = await self.users.find_user(
                user_id=ref.id, name=ref.name, domain_id=ref.domain_id,
                domain_name=ref.domain_name)
        except NotFound:
            user = None
        # Same answer for an unknown user and a wrong password: say nothing about which.
        if user is None or not await verify_secret(creds.password, user.password_hash):
            raise BadCredentials()
        return _Subject(user=user, methods=["password"])

    async def _token(self, token: str) -> _Subject:
        try:
            payload = await self.validate_payload(token)
        except NotFound as exc:
            raise Unauthorized("The token given for authentication is not valid.") from exc
        if payload.app_cred_id:
            raise Unauthorized("A token made from an application credential cannot be rescoped.")
        user = await self.users.get_user(payload.user_id)
        methods = [*payload.methods]
        if "token" not in methods:
            methods.insert(0, "token")
        return _Subject(user=user, methods=methods, expires_at=payload.expires_at,
                        audit_chain_id=payload.audit_chain_id)

    async def _app_credential(self, creds: AppCredentialCredentials) -> _Subject:
        cred: ApplicationCredential | None = None
        try:
            if creds.id:
                cred = await self.app_credentials.get(creds.id)
            elif creds.name and creds.user:
                user = await self.users.find_user(
                    user_id=creds.user.id, name=creds.user.name, domain_id=creds.user.domain_id,
                    domain_name=creds.user.domain_name)
                cred = await self.app_credentials.find(user_id=user.id, name=creds.name)
            else:
                raise ValidationError("An application credential needs an id, or a name "
                                      "and a user.")
        except NotFound:
            cred = None
        if cred is None or not await verify_secret(creds.secret, cred.secret_hash):
            raise BadCredentials()
        if cred.expires_at is not None and cred.expires_at <= utcnow():
            raise Unauthorized("The application credential has expired.")
        user = await self.users.get_user(cred.user_id)
        return _Subject(user=user, methods=["application_credential"],
                        expires_at=cred.expires_at, app_cred=cred)

    async def _check_user_enabled(self, user: User) -> None:
        domain = await self._row(Domain, user.domain_id)
        if not user.enabled or domain is None or not domain.enabled:
            raise Unauthorized("The user is disabled.")

    async def _resolve_scope(self, payload: TokenPayload, user: User, scope: Scope,
                             app_cred: ApplicationCredential | None) -> None:
        kind = scope.kind
        if app_cred is not None:
            if kind not in (None, "project"):
                raise Unauthorized("An application credential can only be scoped to its project.")
            if kind == "project":
                project = await self._scope_project(scope)
                if project.id != app_cred.project_id:
                    raise Unauthorized("An application credential can only be scoped to its "
                                       "project.")
            payload.project_id = app_cred.project_id
            await self._check_project(await self._get_project_or_401(app_cred.project_id))
        elif kind == "project":
            project = await self._scope_project(scope)
            await self._check_project(project)
            payload.project_id = project.id
        elif kind == "domain":
            try:
                domain = await self.resources.find_domain(domain_id=scope.id, name=scope.name)
            except NotFound as exc:
                raise Unauthorized(f"Could not find domain: {scope.id or scope.name}.") from exc
            if not domain.enabled:
                raise Unauthorized(f"Domain {domain.id} is disabled.")
            payload.domain_id = domain.id
        elif kind == "system":
            payload.system = "all"
        elif kind is None and user.default_project_id:
            # Keystone's rule: scope to the default project when it is usable, else unscoped.
            default = await self._row(Project, user.default_project_id)
            if default is not None and default.enabled:
                payload.project_id = default.id
                if not await self._roles(payload, None):
                    payload.project_id = None
        if payload.scope_kind and not await self._roles(payload, app_cred):
            raise Unauthorized(f"User {user.id} has no access to the requested scope.")

    async def _scope_project(self, scope: Scope) -> Project:
        try:
            return await self.resources.find_project(
                project_id=scope.id, name=scope.name, domain_id=scope.domain_id,
                domain_name=scope.domain_name)
        except NotFound as exc:
            raise Unauthorized(f"Could not find project: {scope.id or scope.name}.") from exc

    async def _get_project_or_401(self, project_id: str) -> Project:
        project = await self._row(Project, project_id)
        if project is None:
            raise Unauthorized(f"Could not find project: {project_id}.")
        return project

    async def _check_project(self, project: Project) -> None:
        domain = await self._row(Domain, project.domain_id)
        if not project.enabled or domain is None or not domain.enabled:
            raise Unauthorized(f"Project {project.id} is disabled.")

    async def _roles(self, payload: TokenPayload,
                     app_cred: ApplicationCredential | None) -> list[Role]:
        assignments = self.assignments
        if payload.project_id:
            project = await self._row(Project, payload.project_id)
            if project is None:
                return []
            roles = await assignments.effective_roles(payload.user_id, project=project)
        elif payload.domain_id:
            roles = await assignments.effective_roles(payload.user_id, domain_id=payload.domain_id)
        elif payload.system:
            roles = await assignments.effective_roles(payload.user_id, system=True)
        else:
            return []
        if app_cred is not None:
            allowed = set(app_cred.role_ids)
            roles = [r for r in roles if r.id in allowed]
        return roles

    # Validate -----------------------------------------------------------------------------

    async def validate_payload(self, token: str, *, allow_expired: bool = False) -> TokenPayload:
        """Decode and check expiry and revocation; NotFound for any token that is not valid."""
        not_found = TokenNotFound()
        try:
            payload = self.formatter.decode(token)
        except TokenDecodeError as exc:
            raise not_found from exc
        now = utcnow()
        if payload.expires_at <= now:
            window = dt.timedelta(seconds=self.options.allow_expired_window)
            if not allow_expired or payload.expires_at + window <= now:
                raise not_found
        user = await self._row(User, payload.user_id)
        if user is None or not user.enabled:
            raise not_found
        project = None
        if payload.project_id:
            project = await self._row(Project, payload.project_id)
            if project is None:
                raise not_found
        if await self.revocations.is_revoked(
                payload, user_domain_id=user.domain_id,
                project_domain_id=project.domain_id if project else None):
            raise not_found
        return payload

    async def validate(self, token: str, *, allow_expired: bool = False,
                       include_catalog: bool = True) -> tuple[TokenPayload, dict[str, Any]]:
        """The payload and body of a valid token; NotFound otherwise."""
        payload = await self.validate_payload(token, allow_expired=allow_expired)
        user = await self._row(User, payload.user_id)
        if user is None:
            raise TokenNotFound()
        try:
            await self._check_user_enabled(user)
            if payload.project_id:
                await self._check_project(await self._get_project_or_401(payload.project_id))
            if payload.domain_id:
                domain = await self._row(Domain, payload.domain_id)
                if domain is None or not domain.enabled:
                    raise Unauthorized()
        except Unauthorized as exc:
            raise TokenNotFound() from exc
        body = await self._body(payload, user, include_catalog=include_catalog)
        if payload.scope_kind and not body["roles"]:
            raise TokenNotFound()
        return payload, body

    async def revoke(self, token: str) -> None:
        payload = await self.validate_payload(token)
        await self.revocations.revoke(audit_id=payload.audit_id)

    # Token body ---------------------------------------------------------------------------

    async def _domain_ref(self, domain_id: str) -> dict[str, str]:
        domain = await self._row(Domain, domain_id)
        return {"id": domain_id, "name": domain.name if domain else domain_id}

    async def _body(self, payload: TokenPayload, user: User, *,
                    include_catalog: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "methods": list(payload.methods),
            "user": {
                "id": user.id, "name": user.name,
                "domain": await self._domain_ref(user.domain_id),
                "password_expires_at": None,
            },
            "audit_ids": list(payload.audit_ids),
            "expires_at": format_time(payload.expires_at),
            "issued_at": format_time(payload.issued_at),
        }
        if not payload.scope_kind:
            return body
        app_cred = None
        if payload.app_cred_id:
            app_cred = await self._row(ApplicationCredential, payload.app_cred_id)
            if app_cred is None or (app_cred.expires_at is not None
                                    and app_cred.expires_at <= utcnow()):
                raise TokenNotFound()
            body["application_credential"] = {
                "id": app_cred.id, "name": app_cred.name, "restricted": not app_cred.unrestricted}
        if payload.project_id:
            project = await self._row(Project, payload.project_id)
            if project is None:
                raise TokenNotFound()
            body["project"] = {"id": project.id, "name": project.name,
                               "domain": await self._domain_ref(project.domain_id)}
            body["is_domain"] = False
        elif payload.domain_id:
            body["domain"] = await self._domain_ref(payload.domain_id)
        elif payload.system:
            body["system"] = {"all": True}
        body["roles"] = [{"id": r.id, "name": r.name}
                         for r in await self._roles(payload, app_cred)]
        if include_catalog:
            body["catalog"] = await self.catalog.catalog(payload.project_id)
        return body
