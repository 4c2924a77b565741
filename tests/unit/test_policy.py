"""The policy language (oslo.policy's check syntax) and the enforcer with its YAML overrides."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from stratus.core.context import RequestContext
from stratus.core.exceptions import Forbidden
from stratus.core.policy import Enforcer, PolicySyntaxError, RuleDefault, parse_rule


def creds(roles: list[str] | None = None, **facts: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "user_id": "u1", "user_domain_id": "default", "project_id": "p1",
        "project_domain_id": "default", "domain_id": None, "system_scope": None,
        "roles": roles or [], "service_roles": [], "is_admin": "admin" in (roles or []),
    }
    base.update(facts)
    return base


def check(rule: str, credentials: dict[str, Any], target: dict[str, Any] | None = None,
          enforcer: Enforcer | None = None) -> bool:
    return parse_rule(rule)(credentials, target or {}, enforcer or Enforcer([]))


# Leaves -----------------------------------------------------------------------------------


def test_always_and_never_and_empty() -> None:
    assert check("@", creds()) is True
    assert check("!", creds(["admin"])) is False
    assert check("", creds()) is True


@pytest.mark.parametrize(("rule", "roles", "expected"), [
    ("role:admin", ["admin"], True),
    ("role:admin", ["member", "reader"], False),
    ("role:admin", [], False),
    ("role:Admin", ["admin"], True),   # role names are case-blind, as in Keystone
    ("role:admin", ["ADMIN"], True),
])
def test_role(rule: str, roles: list[str], expected: bool) -> None:
    assert check(rule, creds(roles)) is expected


def test_role_from_target() -> None:
    rule = "role:%(target.role.name)s"
    assert check(rule, creds(["Reader"]), {"target": {"role": {"name": "reader"}}}) is True
    assert check(rule, creds(["member"]), {"target": {"role": {"name": "reader"}}}) is False
    assert check(rule, creds(["member"]), {}) is False


def test_role_substitution_path_is_case_sensitive_but_role_is_not() -> None:
    target = {"target": {"Role": "Reader"}}
    assert check("role:%(target.Role)s", creds(["reader"]), target) is True


def test_rule_reference() -> None:
    enforcer = Enforcer([RuleDefault("admin_required", "role:admin"),
                         RuleDefault("uses_admin", "rule:admin_required")])
    assert enforcer.check("uses_admin", {}, creds(["admin"])) is True
    assert enforcer.check("uses_admin", {}, creds(["member"])) is False


def test_rule_reference_to_unknown_rule_denies() -> None:
    enforcer = Enforcer([RuleDefault("x", "rule:nowhere or role:member")])
    assert enforcer.check("x", {}, creds(["admin"])) is False
    assert enforcer.check("x", {}, creds(["member"])) is True


@pytest.mark.parametrize(("target", "expected"), [
    ({"target.project_id": "p1"}, True),                    # flat key, as oslo.policy passes it
    ({"target": {"project_id": "p1"}}, True),                # nested dicts
    ({"target": {"project_id": "p2"}}, False),
    ({"target": {}}, False),
    ({}, False),
])
def test_target_substitution(target: dict[str, Any], expected: bool) -> None:
    assert check("project_id:%(target.project_id)s", creds(), target) is expected


def test_deeply_nested_target_lookup() -> None:
    rule = "user_domain_id:%(target.user.domain.id)s"
    assert check(rule, creds(), {"target": {"user": {"domain": {"id": "default"}}}}) is True
    assert check(rule, creds(), {"target": {"user": {"domain": {"id": "other"}}}}) is False
    # A non-mapping on the way is "no value", never an error.
    assert check(rule, creds(), {"target": {"user": "default"}}) is False


def test_substitution_none_never_matches_none() -> None:
    # Caller has no domain and the target has none either: that is not a match.
    assert check("domain_id:%(target.domain_id)s", creds(domain_id=None),
                 {"target": {"domain_id": None}}) is False


def test_literal_compare() -> None:
    assert check("system_scope:all", creds(system_scope="all")) is True
    assert check("system_scope:all", creds(system_scope=None)) is False
    assert check("system_scope:all", creds(system_scope="some")) is False
    assert check("project_id:'p1'", creds()) is True


def test_is_admin_boolean() -> None:
    assert check("is_admin:True", creds(["admin"])) is True
    assert check("is_admin:True", creds(["member"])) is False
    assert check("is_admin:False", creds(["member"])) is True
    ctx = RequestContext(user_id="u", roles=["admin"])
    assert check("is_admin:True", ctx.policy_credentials()) is True


# Combinations -----------------------------------------------------------------------------


@pytest.mark.parametrize(("rule", "roles", "expected"), [
    # "and" binds tighter than "or": a or (b and c)
    ("role:a or role:b and role:c", ["a"], True),
    ("role:a or role:b and role:c", ["b"], False),
    ("role:a or role:b and role:c", ["b", "c"], True),
    ("role:b and role:c or role:a", ["a"], True),
    # parentheses override
    ("(role:a or role:b) and role:c", ["a"], False),
    ("(role:a or role:b) and role:c", ["a", "c"], True),
    # "not" binds tighter than "and": (not a) and b
    ("not role:a and role:b", ["b"], True),
    ("not role:a and role:b", ["a", "b"], False),
    ("not role:a and role:b", [], False),
    ("not (role:a and role:b)", ["a"], True),
    ("not (role:a and role:b)", ["a", "b"], False),
    ("not not role:a", ["a"], True),
    ("((role:a))", ["a"], True),
    ("role:a or not role:a", [], True),
])
def test_precedence(rule: str, roles: list[str], expected: bool) -> None:
    assert check(rule, creds(roles)) is expected


def test_keystone_style_rule() -> None:
    """A rule shaped like Keystone's identity:get_user, with substitutions inside parentheses."""
    rule = ("(role:reader and system_scope:all) or "
            "(role:reader and domain_id:%(target.user.domain_id)s) or "
            "user_id:%(target.user.id)s")
    target = {"target": {"user": {"id": "u2", "domain_id": "d1"}}}
    assert check(rule, creds(["reader"], system_scope="all"), target) is True
    assert check(rule, creds(["reader"], domain_id="d1"), target) is True
    assert check(rule, creds(["member"], domain_id="d1"), target) is False
    assert check(rule, creds(["reader"], domain_id="d2"), target) is False
    assert check(rule, creds([], user_id="u2"), target) is True
    assert check(rule, creds([], user_id="u3"), target) is False


def test_parenthesised_substitution_without_spaces() -> None:
    rule = "(project_id:%(target.project_id)s)and(role:member)"
    assert check(rule, creds(["member"]), {"target.project_id": "p1"}) is True
    assert check(rule, creds(["member"]), {"target.project_id": "p9"}) is False


# Syntax errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("rule", [
    "role:a and",
    "role:a or",
    "not",
    "(role:a",
    "role:a)",
    "()",
    "and role:a",
    "or role:a",
    "role:a role:b",
    "admin",
    "role:a and or role:b",
])
def test_syntax_errors(rule: str) -> None:
    with pytest.raises(PolicySyntaxError):
        parse_rule(rule)


def test_syntax_error_in_default_fails_at_construction() -> None:
    with pytest.raises(PolicySyntaxError):
        Enforcer([RuleDefault("bad", "role:a and (role:b")])


# Enforcer ---------------------------------------------------------------------------------

DEFAULTS = [
    RuleDefault("admin_required", "role:admin"),
    RuleDefault("identity:get_project", "rule:admin_required or project_id:%(target.project.id)s"),
    RuleDefault("identity:list_users", "rule:admin_required"),
]


def test_defaults_apply_without_file(tmp_path: Path) -> None:
    enforcer = Enforcer(DEFAULTS, tmp_path / "missing.yaml")
    assert enforcer.check("identity:list_users", {}, creds(["admin"])) is True
    assert enforcer.check("identity:list_users", {}, creds(["member"])) is False
    target = {"target": {"project": {"id": "p1"}}}
    assert enforcer.check("identity:get_project", target, creds(["member"])) is True
    assert enforcer.rule_text("identity:list_users") == "rule:admin_required"


def test_yaml_override_replaces_default(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text('"identity:list_users": "role:reader"\n'
                      '"admin_required": "role:admin or role:superuser"\n')
    enforcer = Enforcer(DEFAULTS, policy)
    assert enforcer.rule_text("identity:list_users") == "role:reader"
    # replaced, not combined with the default: admin alone no longer passes
    assert enforcer.check("identity:list_users", {}, creds(["admin"])) is False
    assert enforcer.check("identity:list_users", {}, creds(["reader"])) is True
    # an overridden rule is what other rules reference
    assert enforcer.check("identity:get_project", {}, creds(["superuser"])) is True
    # untouched defaults remain
    assert enforcer.rule_text("identity:get_project") == DEFAULTS[1].check_str


def test_yaml_override_can_add_rules_and_open_them(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text('"identity:list_users": ""\n"custom:thing": "role:member"\n')
    enforcer = Enforcer(DEFAULTS, policy)
    assert enforcer.check("identity:list_users", {}, creds([])) is True
    assert enforcer.check("custom:thing", {}, creds(["member"])) is True


def test_yaml_override_with_bad_syntax_raises(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text('"identity:list_users": "role:reader and"\n')
    with pytest.raises(PolicySyntaxError):
        Enforcer(DEFAULTS, policy)


def test_yaml_override_not_a_mapping_raises(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("- role:admin\n")
    with pytest.raises(PolicySyntaxError):
        Enforcer(DEFAULTS, policy)


def test_empty_yaml_file_keeps_defaults(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("")
    enforcer = Enforcer(DEFAULTS, policy)
    assert enforcer.check("identity:list_users", {}, creds(["admin"])) is True


def test_unknown_rule_denies_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    enforcer = Enforcer(DEFAULTS)
    with caplog.at_level(logging.WARNING, logger="stratus.core.policy"):
        assert enforcer.check("identity:no_such_rule", {}, creds(["admin"])) is False
    assert "identity:no_such_rule" in caplog.text
    with pytest.raises(Forbidden):
        enforcer.enforce("identity:no_such_rule", {}, creds(["admin"]))


def test_enforce_raises_forbidden() -> None:
    enforcer = Enforcer(DEFAULTS)
    enforcer.enforce("identity:list_users", {}, creds(["admin"]))  # passes silently
    with pytest.raises(Forbidden) as info:
        enforcer.enforce("identity:list_users", {}, creds(["member"]))
    assert info.value.status == 403
    assert "identity:list_users" in info.value.message
