"""Policy: named rules, defaults in code per service, overridable by a YAML file.

Rules use oslo.policy's check language, so operators can reuse what they know:

* ``@`` always passes, ``!`` never does, ``""`` passes;
* ``role:admin`` passes when the caller holds the role;
* ``rule:name`` evaluates another named rule;
* ``field:%(target.path)s`` passes when the caller's ``field`` equals the target's value;
  ``field:literal`` compares with a constant (``system_scope:all``, ``is_admin:True``);
* ``and``, ``or``, ``not`` and parentheses combine checks.

We parse this small language here rather than depend on oslo.policy, which brings
oslo.config's global option registry and several other libraries with it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stratus.core.context import RequestContext
from stratus.core.exceptions import Forbidden, StratusError

LOG = logging.getLogger(__name__)

Check = Callable[[Mapping[str, Any], Mapping[str, Any], "Enforcer"], bool]

# A token is "(", ")" or a run of other non-space characters; the parentheses of a
# ``%(target.path)s`` substitution belong to the run and do not group.
_TOKEN_RE = re.compile(r"\(|\)|(?:%\([^()\s]+\)s|[^\s()])+")
_SUBST_RE = re.compile(r"%\(([^)]+)\)s")


class PolicySyntaxError(ValueError):
    pass


def _lookup(target: Mapping[str, Any], path: str) -> Any:
    if path in target:
        return target[path]
    value: Any = target
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _leaf(text: str) -> Check:
    if text in ("@", ""):
        return lambda creds, target, enforcer: True
    if text == "!":
        return lambda creds, target, enforcer: False
    kind, sep, match = text.partition(":")
    if not sep:
        raise PolicySyntaxError(f"not a check: {text!r}")
    if kind == "rule":
        return lambda creds, target, enforcer: enforcer.check(match, target, creds)
    if kind == "role":
        wanted = match.lower()
        # The substitution path is looked up as written; only role names are case-blind.
        role_subst = _SUBST_RE.fullmatch(match)

        def role_check(creds: Mapping[str, Any], target: Mapping[str, Any], _: Enforcer) -> bool:
            if role_subst:
                role = _lookup(target, role_subst.group(1))
                return role is not None and str(role).lower() in _roles(creds)
            return wanted in _roles(creds)

        return role_check

    def generic(creds: Mapping[str, Any], target: Mapping[str, Any], _: Enforcer) -> bool:
        subst = _SUBST_RE.fullmatch(match)
        if subst:
            expected = _lookup(target, subst.group(1))
            if expected is None:
                return False
        else:
            expected = match.strip("'\"")
        actual = _lookup(creds, kind)
        if actual is None:
            return False
        if isinstance(actual, bool):
            return str(actual).lower() == str(expected).lower()
        return str(actual) == str(expected)

    return generic


def _roles(creds: Mapping[str, Any]) -> set[str]:
    return {str(r).lower() for r in creds.get("roles") or ()}


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _TOKEN_RE.findall(text)
        self.pos = 0

    def parse(self) -> Check:
        if not self.tokens:
            return _leaf("")
        check = self._or()
        if self.pos != len(self.tokens):
            raise PolicySyntaxError(f"unexpected {self.tokens[self.pos]!r}")
        return check

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self) -> str:
        token = self._peek()
        if token is None:
            raise PolicySyntaxError("rule ends too early")
        self.pos += 1
        return token

    def _or(self) -> Check:
        return self._chain("or", self._and, any)

    def _and(self) -> Check:
        return self._chain("and", self._not, all)

    def _chain(self, word: str, operand: Callable[[], Check],
               combine: Callable[[Iterable[bool]], bool]) -> Check:
        """``operand (word operand)*``, its checks joined by ``combine`` (``any``/``all``)."""
        checks = [operand()]
        while self._peek() == word:
            self._take()
            checks.append(operand())
        if len(checks) == 1:
            return checks[0]
        return lambda c, t, e: combine(check(c, t, e) for check in checks)

    def _not(self) -> Check:
        if self._peek() == "not":
            self._take()
            inner = self._not()
            return lambda c, t, e: not inner(c, t, e)
        return self._atom()

    def _atom(self) -> Check:
        token = self._take()
        if token == "(":
            inner = self._or()
            if self._take() != ")":
                raise PolicySyntaxError("missing ')'")
            return inner
        if token in (")", "and", "or"):
            raise PolicySyntaxError(f"unexpected {token!r}")
        return _leaf(token)


def parse_rule(text: str) -> Check:
    return _Parser(text).parse()


@dataclass(frozen=True)
class RuleDefault:
    name: str
    check_str: str
    description: str = ""


class Enforcer:
    """Evaluates named rules: the service's defaults, overridden by the policy file."""

    def __init__(self, defaults: list[RuleDefault], policy_file: Path | None = None) -> None:
        self.defaults = {rule.name: rule for rule in defaults}
        texts = {rule.name: rule.check_str for rule in defaults}
        if policy_file is not None and policy_file.is_file():
            import yaml  # only for a policy file: most clouds have none

            overrides = yaml.safe_load(policy_file.read_text()) or {}
            if not isinstance(overrides, dict):
                raise PolicySyntaxError(f"{policy_file}: expected a mapping of rule names")
            texts.update({str(k): str(v) for k, v in overrides.items()})
        self._rules = {name: parse_rule(text) for name, text in texts.items()}
        self._texts = texts

    def rule_text(self, name: str) -> str | None:
        return self._texts.get(name)

    def check(self, name: str, target: Mapping[str, Any], creds: Mapping[str, Any]) -> bool:
        rule = self._rules.get(name)
        if rule is None:
            LOG.warning("policy rule %s is not defined; denying", name)
            return False
        return rule(creds, target, self)

    def enforce(self, name: str, target: Mapping[str, Any], creds: Mapping[str, Any]) -> None:
        """Raise ``Forbidden`` unless the rule passes."""
        if not self.check(name, target, creds):
            raise Forbidden(f"You are not authorized to perform the requested action: {name}.")

    def allowed(self, name: str, target: Mapping[str, Any] | None,
                context: RequestContext) -> bool:
        """``check`` for an API caller.

        Rules name target attributes both ways, as OpenStack's do: ``%(user_id)s`` and
        ``%(target.user.id)s``; the target is offered flat and under a "target" key.
        """
        flat = dict(target or {})
        return self.check(name, {**flat, "target": flat}, context.policy_credentials())

    def authorize(self, name: str, target: Mapping[str, Any] | None,
                  context: RequestContext) -> None:
        """``enforce`` for an API caller (see ``allowed``)."""
        if not self.allowed(name, target, context):
            raise denied(name)


# The caller -------------------------------------------------------------------------------

#: rule name → the error a refusal raises. APIs word refusals differently and their
#: clients (and tests) read the words, so each API family passes its own.
Denial = Callable[[str], StratusError]


def denied(rule: str) -> Forbidden:
    """Nova's, Keystone's, Cinder's and Glance's refusal."""
    return Forbidden(f"You are not authorized to perform the requested action: {rule}.")


#: Roles on a service token that make the request a service's (``Caller.is_service``).
SERVICE_ROLES = frozenset({"service", "admin"})


class Caller:
    """Who asks, and what policy lets them do: the one authorization object of every API
    and domain method.

    * ``is_admin``: the policy's ``context_is_admin`` rule when the service defines one,
      else the ``admin`` role;
    * ``is_service``: a valid service token with the ``service`` or ``admin`` role came with
      the request (also offered to rules as the ``is_service`` credential);
    * ``check(rule, target)`` → bool; ``authorize(rule, target)`` raises ``denial(rule)``.

    Rules name target attributes both ways, as OpenStack's do: ``%(project_id)s`` and
    ``%(target.project_id)s``; the target is offered flat and under a "target" key.
    """

    def __init__(self, context: RequestContext, enforcer: Enforcer, *,
                 denial: Denial = denied) -> None:
        self.context = context
        self.enforcer = enforcer
        self.denial = denial
        self.is_service = bool(SERVICE_ROLES & set(context.service_roles))
        creds = context.policy_credentials()
        creds["is_service"] = self.is_service
        self.credentials = creds
        if enforcer.rule_text("context_is_admin") is not None:
            self.is_admin = enforcer.check("context_is_admin", {}, creds)
        else:
            self.is_admin = context.is_admin

    @property
    def project_id(self) -> str | None:
        return self.context.project_id

    def require_project(self) -> str:
        """The caller's project; ``Forbidden`` for a token without one."""
        return self.context.require_project()

    def check(self, rule: str, target: Mapping[str, Any] | None = None) -> bool:
        flat = dict(target or {})
        return self.enforcer.check(rule, {**flat, "target": flat}, self.credentials)

    def authorize(self, rule: str, target: Mapping[str, Any] | None = None) -> None:
        if not self.check(rule, target):
            raise self.denial(rule)
