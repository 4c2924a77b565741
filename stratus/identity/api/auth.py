"""``/v3/auth``: issue, validate and revoke tokens; what the caller's token can reach."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.responses import JSONResponse

from stratus.core.exceptions import ValidationError
from stratus.core.web import params
from stratus.identity import authentication as authn
from stratus.identity.api import views
from stratus.identity.api.auth_schemas import AuthBody, AuthRequestBody, DomainRef
from stratus.identity.api.auth_schemas import UserRef as UserRefBody
from stratus.identity.api.deps import BaseURL, CallerDep, Context, Reader, Service

router = APIRouter(prefix="/v3/auth")

Flag = Annotated[str | None, Query()]


async def _nocatalog(nocatalog: Flag = None) -> bool:
    return params.KEYSTONE_FLAG.flag("nocatalog", nocatalog)


async def _allow_expired(allow_expired: Flag = None) -> bool:
    return params.KEYSTONE_FLAG.flag("allow_expired", allow_expired)


NoCatalog = Annotated[bool, Depends(_nocatalog)]
AllowExpired = Annotated[bool, Depends(_allow_expired)]
SubjectToken = Annotated[str, Header(alias="X-Subject-Token")]


def _user_ref(body: UserRefBody) -> authn.UserRef:
    domain = body.domain or DomainRef()
    if body.id is None and (body.name is None or (domain.id is None and domain.name is None)):
        raise ValidationError("Invalid input for field 'identity/password/user': give the "
                              "user's id, or its name and domain.")
    return authn.UserRef(id=body.id, name=body.name, domain_id=domain.id, domain_name=domain.name)


def _scope(auth: AuthBody) -> authn.Scope:
    scope = auth.scope
    if scope is None:
        return authn.Scope()
    if scope == "unscoped":
        return authn.Scope(kind="unscoped")
    given = [k for k in ("project", "domain", "system") if getattr(scope, k) is not None]
    if len(given) > 1:
        raise ValidationError("Specify one of domain, project or system as the scope.")
    if scope.project is not None:
        p = scope.project
        domain = p.domain or DomainRef()
        if p.id is None and (p.name is None or (domain.id is None and domain.name is None)):
            raise ValidationError("Invalid input for field 'scope/project': give the project's "
                                  "id, or its name and domain.")
        return authn.Scope(kind="project", id=p.id, name=p.name, domain_id=domain.id,
                           domain_name=domain.name)
    if scope.domain is not None:
        if scope.domain.id is None and scope.domain.name is None:
            raise ValidationError("Invalid input for field 'scope/domain': give an id or name.")
        return authn.Scope(kind="domain", id=scope.domain.id, name=scope.domain.name)
    if scope.system is not None:
        if not scope.system.all:
            raise ValidationError("Only the system scope 'all' is supported.")
        return authn.Scope(kind="system")
    return authn.Scope(kind="unscoped")


def to_auth_request(body: AuthRequestBody) -> authn.AuthRequest:
    identity = body.auth.identity
    request = authn.AuthRequest(methods=list(identity.methods), scope=_scope(body.auth))
    if identity.password is not None:
        if identity.password.user.password is None:
            raise ValidationError("Invalid input for field 'identity/password/user/password': "
                                  "a password is required.")
        request.password = authn.PasswordCredentials(user=_user_ref(identity.password.user),
                                                     password=identity.password.user.password)
    if identity.token is not None:
        request.token = identity.token.id
    if identity.application_credential is not None:
        ac = identity.application_credential
        request.application_credential = authn.AppCredentialCredentials(
            secret=ac.secret, id=ac.id, name=ac.name,
            user=_user_ref(ac.user) if ac.user is not None else None)
    return request


@router.post("/tokens", status_code=201)
async def issue_token(body: AuthRequestBody, svc: Reader, nocatalog: NoCatalog) -> JSONResponse:
    issued = await svc.auth.authenticate(to_auth_request(body),
                                         include_catalog=not nocatalog)
    return JSONResponse({"token": issued.body}, status_code=201,
                        headers={"X-Subject-Token": issued.token})


@router.get("/tokens")
async def validate_token(svc: Reader, caller: CallerDep, subject: SubjectToken,
                         nocatalog: NoCatalog, allow_expired: AllowExpired) -> JSONResponse:
    _, body = await svc.auth.validate(subject, allow_expired=allow_expired,
                                      include_catalog=not nocatalog)
    caller.authorize("identity:validate_token", {"token": {"user_id": body["user"]["id"]}})
    return JSONResponse({"token": body}, headers={"X-Subject-Token": subject})


@router.head("/tokens")
async def check_token(svc: Reader, caller: CallerDep, subject: SubjectToken,
                      allow_expired: AllowExpired) -> Response:
    payload = await svc.auth.validate_payload(subject, allow_expired=allow_expired)
    caller.authorize("identity:check_token", {"token": {"user_id": payload.user_id}})
    await svc.auth.validate(subject, allow_expired=allow_expired, include_catalog=False)
    return Response(status_code=200, headers={"X-Subject-Token": subject})


@router.delete("/tokens", status_code=204)
async def revoke_token(svc: Service, caller: CallerDep, subject: SubjectToken) -> Response:
    payload = await svc.auth.validate_payload(subject)
    caller.authorize("identity:revoke_token", {"token": {"user_id": payload.user_id}})
    await svc.auth.revoke(subject)
    return Response(status_code=204)


@router.get("/catalog")
async def catalog(svc: Reader, context: Context, base: BaseURL) -> dict[str, Any]:
    return {"catalog": await svc.catalog.catalog(context.project_id),
            "links": {"self": f"{base}/v3/auth/catalog", "previous": None, "next": None}}


async def _user_id(context: Context) -> str:
    """The caller's user: every token names one (the validator checked it)."""
    assert context.user_id is not None
    return context.user_id


UserId = Annotated[str, Depends(_user_id)]


@router.get("/projects")
async def auth_projects(svc: Reader, user_id: UserId, base: BaseURL) -> dict[str, Any]:
    ids = await svc.assignments.project_ids_for_user(user_id)
    projects = await svc.resources.list_projects(ids=ids, enabled=True)
    return views.collection_of("projects", views.project, projects, base, "auth/projects")


@router.get("/domains")
async def auth_domains(svc: Reader, user_id: UserId, base: BaseURL) -> dict[str, Any]:
    domains = await svc.resources.list_domains(
        enabled=True, ids=await svc.assignments.domain_ids_for_user(user_id))
    return views.collection_of("domains", views.domain, domains, base, "auth/domains")


@router.get("/system")
async def auth_system(svc: Reader, user_id: UserId, base: BaseURL) -> dict[str, Any]:
    system = [{"all": True}] if await svc.assignments.has_system_role(user_id) else []
    return {"system": system,
            "links": {"self": f"{base}/v3/auth/system", "previous": None, "next": None}}
