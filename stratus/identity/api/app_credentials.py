"""``/v3/users/{user_id}/application_credentials``."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from stratus.core.exceptions import Forbidden, ValidationError
from stratus.identity.api import views
from stratus.identity.api.common import text
from stratus.identity.api.deps import BaseURL, CallerDep, Context, Reader, Service
from stratus.identity.api.schemas import AppCredentialCreateBody

router = APIRouter(prefix="/v3/users/{user_id}/application_credentials")


def _parse_expiry(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValidationError(f"Invalid input for field 'expires_at': {value!r} is not an "
                              f"ISO 8601 time.") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


@router.post("", status_code=201)
async def create(user_id: str, body: AppCredentialCreateBody, svc: Service,
                 caller: CallerDep, context: Context, base: BaseURL) -> dict[str, Any]:
    caller.authorize("identity:create_application_credential", {"user_id": user_id})
    if context.project_id is None or context.token is None:
        raise Forbidden("An application credential can only be created with a "
                        "project-scoped token.")
    if context.token.get("application_credential"):
        raise Forbidden("An application credential cannot create another one.")
    ac = body.application_credential
    cred, secret = await svc.app_credentials.create(
        user_id=user_id, project_id=context.project_id, name=ac.name,
        token_role_ids=[r["id"] for r in context.token.get("roles", [])],
        secret=ac.secret, description=text(ac.description),
        expires_at=_parse_expiry(ac.expires_at), unrestricted=ac.unrestricted,
        requested_roles=[r.model_dump(exclude_none=True) for r in ac.roles] if ac.roles else None)
    roles = await svc.app_credentials.roles(cred)
    return {"application_credential": views.application_credential(cred, roles, base, secret)}


@router.get("")
async def listing(user_id: str, svc: Reader, caller: CallerDep, base: BaseURL,
                  name: Annotated[str | None, Query()] = None) -> dict[str, Any]:
    caller.authorize("identity:list_application_credentials", {"user_id": user_id})
    await svc.users.get_user(user_id)
    creds = await svc.app_credentials.list_for_user(user_id, name=name)
    items = [views.application_credential(c, await svc.app_credentials.roles(c), base)
             for c in creds]
    return views.collection("application_credentials", items, base,
                            f"users/{user_id}/application_credentials")


@router.get("/{cred_id}")
async def show(user_id: str, cred_id: str, svc: Reader, caller: CallerDep,
               base: BaseURL) -> dict[str, Any]:
    caller.authorize("identity:get_application_credential", {"user_id": user_id})
    cred = await svc.app_credentials.get(cred_id, user_id=user_id)
    roles = await svc.app_credentials.roles(cred)
    return {"application_credential": views.application_credential(cred, roles, base)}


@router.delete("/{cred_id}", status_code=204)
async def delete(user_id: str, cred_id: str, svc: Service, caller: CallerDep) -> Response:
    caller.authorize("identity:delete_application_credential", {"user_id": user_id})
    await svc.app_credentials.delete(cred_id, user_id=user_id)
    return Response(status_code=204)
