"""The one ``Caller`` (``stratus.core.policy``), its FastAPI dependency, and
``RequestContext.for_service`` / ``require_project``."""

from __future__ import annotations

from typing import Annotated

import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient

from stratus.core.context import RequestContext
from stratus.core.exceptions import Forbidden
from stratus.core.policy import Caller, Enforcer, RuleDefault, denied
from stratus.core.web.deps import caller_dependency

RULES = [
    RuleDefault("context_is_admin", "role:admin or role:cloud_admin"),
    RuleDefault("owner", "project_id:%(project_id)s"),
    RuleDefault("nested", "project_id:%(target.project_id)s"),
    RuleDefault("service_only", "is_service:True"),
]


#: Module level: FastAPI resolves the (postponed) annotation in the module's namespace.
CallerDep = Annotated[Caller, Depends(caller_dependency(lambda r: r.app.state.enforcer))]


def ctx(roles: list[str] | None = None, service_roles: list[str] | None = None,
        project_id: str | None = "p1") -> RequestContext:
    return RequestContext(user_id="u1", project_id=project_id, roles=roles or ["member"],
                          service_roles=service_roles or [])


def test_check_and_authorize_offer_the_target_flat_and_nested() -> None:
    caller = Caller(ctx(), Enforcer(RULES))
    assert caller.check("owner", {"project_id": "p1"})
    assert caller.check("nested", {"project_id": "p1"})
    assert not caller.check("owner", {"project_id": "p2"})
    assert not caller.check("owner")
    caller.authorize("owner", {"project_id": "p1"})
    with pytest.raises(Forbidden) as caught:
        caller.authorize("owner", {"project_id": "p2"})
    assert str(caught.value) == "You are not authorized to perform the requested action: owner."


def test_denial_is_the_api_familys() -> None:
    class PolicyNotAuthorized(Forbidden):
        pass

    caller = Caller(ctx(), Enforcer(RULES),
                    denial=lambda rule: PolicyNotAuthorized(f"(rule:{rule}) is disallowed by "
                                                            "policy"))
    with pytest.raises(PolicyNotAuthorized) as caught:
        caller.authorize("owner", {"project_id": "p2"})
    assert str(caught.value) == "(rule:owner) is disallowed by policy"
    assert caught.value.status == 403


def test_is_admin_follows_the_context_is_admin_rule_when_defined() -> None:
    assert Caller(ctx(["cloud_admin"]), Enforcer(RULES)).is_admin
    assert not Caller(ctx(["member"]), Enforcer(RULES)).is_admin
    # Without the rule, the admin role decides (as RequestContext.is_admin).
    assert Caller(ctx(["admin"]), Enforcer([])).is_admin
    assert not Caller(ctx(["cloud_admin"]), Enforcer([])).is_admin


@pytest.mark.parametrize(("service_roles", "expected"), [
    ([], False), (["member"], False), (["service"], True), (["admin"], True),
])
def test_is_service_needs_a_service_token_with_service_or_admin(
        service_roles: list[str], expected: bool) -> None:
    caller = Caller(ctx(["service"], service_roles), Enforcer(RULES))
    assert caller.is_service is expected
    assert caller.check("service_only") is expected


def test_project_id_and_require_project() -> None:
    assert Caller(ctx(), Enforcer(RULES)).require_project() == "p1"
    unscoped = Caller(ctx(project_id=None), Enforcer(RULES))
    assert unscoped.project_id is None
    with pytest.raises(Forbidden, match="scoped to a project"):
        unscoped.require_project()


def test_caller_dependency_builds_one_per_request() -> None:
    enforcer = Enforcer(RULES)
    app = FastAPI()
    app.state.enforcer = enforcer
    @app.middleware("http")
    async def fake_auth(request: Request, call_next):  # type: ignore[no-untyped-def]
        request.state.context = ctx(["admin"])
        return await call_next(request)

    @app.get("/who")
    def who(caller: CallerDep) -> dict[str, object]:
        return {"admin": caller.is_admin, "project": caller.project_id,
                "same_enforcer": caller.enforcer is enforcer}

    with TestClient(app) as client:
        answer = client.get("/who")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"admin": True, "project": "p1", "same_enforcer": True}


def test_for_service() -> None:
    agent = RequestContext.for_service("compute-agent")
    assert (agent.user_id, agent.project_id, agent.roles) == ("compute-agent", "service",
                                                               ["service"])
    assert agent.require_project() == "service"
    assert agent.request_id != RequestContext.for_service("compute-agent").request_id
    assert not agent.is_admin


def test_default_denial_text() -> None:
    assert str(denied("x:y")) == "You are not authorized to perform the requested action: x:y."
