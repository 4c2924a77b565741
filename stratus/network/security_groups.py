"""Security groups and their rules; each project's ``default`` group, made on first use."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, bindparam, delete, false, not_, or_, select

from stratus.core.db import Txn, utcnow
from stratus.core.db.paging import Page
from stratus.core.policy import Caller
from stratus.network import filters as flt
from stratus.network import protocols
from stratus.network.common import UNSET, Unset, given, new_id, touch
from stratus.network.errors import (
    InvalidInput,
    SecurityGroupCannotRemoveDefault,
    SecurityGroupCannotUpdateDefault,
    SecurityGroupDefaultAlreadyExists,
    SecurityGroupInUse,
    SecurityGroupInvalidIcmpValue,
    SecurityGroupInvalidPortRange,
    SecurityGroupInvalidPortValue,
    SecurityGroupInvalidProtocolForPortRange,
    SecurityGroupMissingIcmpType,
    SecurityGroupNotFound,
    SecurityGroupProtocolRequiredWithPorts,
    SecurityGroupRemoteGroupAndRemoteIpPrefix,
    SecurityGroupRuleExists,
    SecurityGroupRuleInvalidProtocol,
    SecurityGroupRuleNotFound,
    SecurityGroupRuleParameterConflict,
)
from stratus.network.models import (
    DefaultSecurityGroup,
    PortSecurityGroup,
    SecurityGroup,
    SecurityGroupRule,
)
from stratus.network.notify import Notifier
from stratus.network.part import Part
from stratus.network.quotas import Quotas

#: How security groups filter and sort (``filters``).
GROUP_ATTRIBUTES = flt.Attributes(
    filters={"id": flt.text(SecurityGroup.id), "name": flt.text(SecurityGroup.name),
             "stateful": flt.boolean(SecurityGroup.stateful), "shared": flt.constant(False),
             "security_group_rules": flt.nothing, **flt.standard(SecurityGroup)},
    sort={"id": SecurityGroup.id, "name": SecurityGroup.name,
          "stateful": SecurityGroup.stateful, **flt.standard_sort(SecurityGroup)},
    default_sort=flt.BY_CREATION, id_column=SecurityGroup.id, tags=SecurityGroup.tags)


def _in_default_group(values: list[str], dialect: str) -> ColumnElement[bool]:
    wanted = {v.lower() for v in values}
    defaults = SecurityGroupRule.security_group_id.in_(
        select(DefaultSecurityGroup.security_group_id))
    return or_(defaults if "true" in wanted else false(),
               not_(defaults) if "false" in wanted else false())


_Rule = SecurityGroupRule
#: How rules filter and sort (``filters``); rules have no tags.
RULE_ATTRIBUTES = flt.Attributes(
    filters={"id": flt.text(_Rule.id), "security_group_id": flt.text(_Rule.security_group_id),
             "direction": flt.text(_Rule.direction), "ethertype": flt.text(_Rule.ethertype),
             "protocol": flt.text(_Rule.protocol),
             "port_range_min": flt.integer(_Rule.port_range_min),
             "port_range_max": flt.integer(_Rule.port_range_max),
             "remote_ip_prefix": flt.text(_Rule.remote_ip_prefix),
             "normalized_cidr": flt.text(_Rule.remote_ip_prefix),
             "remote_group_id": flt.text(_Rule.remote_group_id),
             "remote_address_group_id": flt.constant(None),
             "belongs_to_default_sg": _in_default_group, **flt.standard(_Rule)},
    sort={"id": _Rule.id, "security_group_id": _Rule.security_group_id,
          "direction": _Rule.direction, "ethertype": _Rule.ethertype,
          "protocol": _Rule.protocol, "port_range_min": _Rule.port_range_min,
          "port_range_max": _Rule.port_range_max, "remote_ip_prefix": _Rule.remote_ip_prefix,
          "remote_group_id": _Rule.remote_group_id, **flt.standard_sort(_Rule)},
    default_sort=flt.BY_CREATION, id_column=_Rule.id)


@dataclass(frozen=True)
class NewSecurityGroup:
    name: str = ""
    description: str = ""
    project_id: str | None = None
    stateful: bool = True


@dataclass(frozen=True)
class SecurityGroupUpdate:
    """Changes to a group (``UNSET``: not asked for)."""

    name: str | Unset = UNSET
    description: str | Unset = UNSET
    stateful: bool | Unset = UNSET


@dataclass(frozen=True)
class NewRule:
    """A rule as asked for; normalised and checked here (``direction`` ``None``: not
    given, which is refused)."""

    security_group_id: str = ""
    direction: str | None = None
    ethertype: str | None = None
    protocol: str | None = None
    port_range_min: int | None = None
    port_range_max: int | None = None
    remote_ip_prefix: str | None = None
    remote_group_id: str | None = None
    description: str = ""


_Owned = TypeVar("_Owned", SecurityGroup, SecurityGroupRule)


def _visible(model: type[_Owned], caller: Caller) -> Select[_Owned]:
    """Groups and rules are their project's alone: a caller sees its project's, an admin
    every project's."""
    query = select(model)
    if not caller.is_admin:
        query = query.where(model.project_id == caller.project_id)
    return query


#: The project's default group: asked by every port create, so built once, and of the
#: table's columns (a Core select: no ORM compile step for one string).
_DEFAULT_GROUP = select(DefaultSecurityGroup.__table__.c.security_group_id).where(
    DefaultSecurityGroup.__table__.c.project_id == bindparam("project_id"))


@dataclass
class SecurityGroups(Part):
    """Security groups and rules within one transaction. Rules are told apart by their
    shape (``fingerprint``), so a duplicate is a 409 even when two requests race."""

    quotas: Quotas
    #: Tells the l2-agents of rule changes (None: nobody to tell).
    notifier: Notifier | None = None

    def _rules_changed(self, group_id: str) -> None:
        if self.notifier is not None:
            self.notifier.security_groups_changed([group_id])

    async def default_security_group(self, project_id: str) -> str:
        """The project's ``default`` group, made with its default rules on first use; two
        first uses racing end with one group (the row in network_default_security_groups
        decides)."""
        existing = await self.session.scalar(_DEFAULT_GROUP, {"project_id": project_id})
        if existing is not None:
            return existing
        await self.txn.lock("default-sg", project_id)
        existing = await self.session.scalar(select(DefaultSecurityGroup.security_group_id)
                                             .where(DefaultSecurityGroup.project_id
                                                    == project_id))
        if existing is not None:
            return existing
        now = utcnow()
        group = SecurityGroup(id=new_id(), project_id=project_id, name="default",
                              description="Default security group", stateful=True, tags=[],
                              revision_number=1, created_at=now, updated_at=now)
        group.rules = []
        self.session.add(group)
        await self.session.flush()
        result = await self.session.execute(self.txn.insert_ignore(
            DefaultSecurityGroup.__table__).values(project_id=project_id,
                                                   security_group_id=group.id))
        if Txn.rowcount(result) != 1:  # another process made it first
            await self.session.delete(group)
            await self.session.flush()
            chosen = await self.session.scalar(select(DefaultSecurityGroup.security_group_id)
                                               .where(DefaultSecurityGroup.project_id
                                                      == project_id))
            assert chosen is not None
            return chosen
        for ethertype in ("IPv4", "IPv6"):
            self._add_rule(group, {"direction": "egress", "ethertype": ethertype})
            self._add_rule(group, {"direction": "ingress", "ethertype": ethertype,
                                   "remote_group_id": group.id})
        await self.session.flush()
        return group.id

    async def get_security_group(self, caller: Caller, group_id: str) -> SecurityGroup:
        return await self._one(_visible(SecurityGroup, caller).where(
            SecurityGroup.id == group_id), SecurityGroupNotFound(group_id))

    async def list_security_groups(self, caller: Caller, query: flt.ListQuery) -> Page:
        return await self._page(caller, GROUP_ATTRIBUTES, SecurityGroup, query)

    async def _page(self, caller: Caller, attributes: flt.Attributes, model: type[_Owned],
                    query: flt.ListQuery) -> Page:
        # A project's listing shows its default group (and the group's rules): make it first.
        if caller.project_id:
            await self.default_security_group(caller.project_id)
        return await self._list_page(caller, attributes, _visible(model, caller), query)

    async def is_default_group(self, group_id: str) -> bool:
        return await self.session.scalar(select(DefaultSecurityGroup.project_id).where(
            DefaultSecurityGroup.security_group_id == group_id)) is not None

    async def create_security_group(self, caller: Caller,
                                    new: NewSecurityGroup) -> SecurityGroup:
        project_id = new.project_id or caller.require_project()
        caller.authorize("create_security_group", {"project_id": project_id})
        name = new.name
        if name == "default":
            raise SecurityGroupDefaultAlreadyExists()
        await self.default_security_group(project_id)
        await self.quotas.check(project_id, "security_group")
        now = utcnow()
        group = SecurityGroup(id=new_id(), project_id=project_id, name=name,
                              description=new.description, stateful=new.stateful, tags=[],
                              revision_number=1, created_at=now, updated_at=now)
        group.rules = []
        self.session.add(group)
        for ethertype in ("IPv4", "IPv6"):
            self._add_rule(group, {"direction": "egress", "ethertype": ethertype})
        await self.session.flush()
        return await self._reload_group(group.id)

    async def _reload_group(self, group_id: str) -> SecurityGroup:
        group = await self.session.scalar(select(SecurityGroup).where(
            SecurityGroup.id == group_id).execution_options(populate_existing=True))
        assert group is not None
        return group

    async def update_security_group(self, caller: Caller, group_id: str,
                                    change: SecurityGroupUpdate) -> SecurityGroup:
        group = await self.get_security_group(caller, group_id)
        caller.authorize("update_security_group", {"project_id": group.project_id})
        if change.name == "default" and group.name != "default":
            raise SecurityGroupDefaultAlreadyExists()
        if change.name is not UNSET and change.name != group.name and \
                await self.is_default_group(group.id):
            raise SecurityGroupCannotUpdateDefault()
        # Neutron: statefulness changes only while no port uses the group (the ports'
        # firewalls, and the connections they track, were made for the old one).
        if change.stateful is not UNSET and change.stateful != group.stateful and \
                await self._in_use(group.id):
            raise SecurityGroupInUse(group.id)
        for column, value in given(change).items():
            setattr(group, column, value)
        touch(group)
        await self.session.flush()
        return group

    async def _in_use(self, group_id: str) -> bool:
        """Whether a port has the group."""
        return await self.session.scalar(select(PortSecurityGroup.port_id).where(
            PortSecurityGroup.security_group_id == group_id).limit(1)) is not None

    async def delete_security_group(self, caller: Caller, group_id: str) -> None:
        group = await self.get_security_group(caller, group_id)
        caller.authorize("delete_security_group", {"project_id": group.project_id})
        if await self.is_default_group(group.id) and not caller.is_admin:
            raise SecurityGroupCannotRemoveDefault()
        if await self._in_use(group.id):
            raise SecurityGroupInUse(group.id)
        await self.session.execute(delete(DefaultSecurityGroup).where(
            DefaultSecurityGroup.security_group_id == group.id))
        await self.session.delete(group)
        # Rules of other groups may name it as their remote group.
        self._rules_changed(group.id)

    @staticmethod
    def _fingerprint(r: Mapping[str, Any]) -> str:
        """The rule's shape; a protocol by name or by number is the same protocol."""
        number = protocols.protocol_number(r.get("protocol"), r.get("ethertype") or "IPv4")
        return "|".join(str(v) for v in (
            r.get("direction"), r.get("ethertype") or "IPv4", number, r.get("port_range_min"),
            r.get("port_range_max"), r.get("remote_ip_prefix"), r.get("remote_group_id")))

    def _add_rule(self, group: SecurityGroup, r: dict[str, Any]) -> SecurityGroupRule:
        now = utcnow()
        rule = SecurityGroupRule(
            id=new_id(), security_group_id=group.id, project_id=group.project_id,
            direction=r["direction"], ethertype=r.get("ethertype") or "IPv4",
            protocol=r.get("protocol"), port_range_min=r.get("port_range_min"),
            port_range_max=r.get("port_range_max"),
            remote_ip_prefix=r.get("remote_ip_prefix"),
            remote_group_id=r.get("remote_group_id"), description=r.get("description") or "",
            fingerprint=self._fingerprint(r), revision_number=0, created_at=now,
            updated_at=now)
        self.session.add(rule)
        return rule

    def _normalise_rule(self, new: NewRule) -> dict[str, Any]:
        r = asdict(new)
        if r.get("direction") not in ("ingress", "egress"):
            raise InvalidInput(f"Invalid input for direction: '{r.get('direction')}' is not "
                               "in ['ingress', 'egress'].")
        ethertype = r.get("ethertype") or "IPv4"
        if ethertype.lower() not in ("ipv4", "ipv6"):
            raise InvalidInput(f"Invalid input for ethertype: '{ethertype}' is not in "
                               "['IPv4', 'IPv6'].")
        r["ethertype"] = "IPv4" if ethertype.lower() == "ipv4" else "IPv6"
        protocol = r.get("protocol")
        if protocol is not None:
            protocol = str(protocol).lower()
            if not protocols.is_valid_protocol(protocol):
                raise SecurityGroupRuleInvalidProtocol(protocol, protocols.known_names())
            if protocol in protocols.ANY:
                protocol = None
        r["protocol"] = protocol
        number = protocols.protocol_number(protocol, r["ethertype"])
        if number == protocols.ICMPV6 and r["ethertype"] == "IPv4":
            raise InvalidInput(f"Security group rule for ethertype 'IPv4' not supported. "
                               f"Allowed ethertypes for protocol {protocol} are IPv6.")
        self._check_port_range(protocol, number, r.get("port_range_min"),
                               r.get("port_range_max"))
        if r.get("remote_ip_prefix") and r.get("remote_group_id"):
            raise SecurityGroupRemoteGroupAndRemoteIpPrefix()
        prefix = r.get("remote_ip_prefix")
        if prefix:
            try:
                net = ipaddress.ip_network(str(prefix), strict=False)
            except ValueError as exc:
                raise InvalidInput(f"Invalid input for remote_ip_prefix: '{prefix}' is not a "
                                   "valid CIDR.") from exc
            if (net.version == 4) != (r["ethertype"] == "IPv4"):
                raise SecurityGroupRuleParameterConflict(r["ethertype"], str(prefix))
            r["remote_ip_prefix"] = str(net)
        return r

    @staticmethod
    def _check_port_range(protocol: str | None, number: int | None, low: Any,
                          high: Any) -> None:
        """Neutron's checks of ``port_range_min``/``max``: ports for the protocols that
        have them, ICMP type and code for ICMP."""
        for name, value in (("port_range_min", low), ("port_range_max", high)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise InvalidInput(f"Invalid input for {name}: '{value}' is not an integer.")
        if low is None and high is None:
            return
        if number is None:
            raise SecurityGroupProtocolRequiredWithPorts()
        if number in protocols.PORT_PROTOCOLS:
            for value in (low, high):
                if value is not None and not 1 <= value <= 65535:
                    raise SecurityGroupInvalidPortValue(value)
            if low is None or high is None or low > high:
                raise SecurityGroupInvalidPortRange()
        elif number in (protocols.ICMP, protocols.ICMPV6):
            for field, attribute, value in (("type", "port_range_min", low),
                                            ("code", "port_range_max", high)):
                if value is not None and not 0 <= value <= 255:
                    raise SecurityGroupInvalidIcmpValue(field, attribute, value)
            if low is None and high is not None:
                raise SecurityGroupMissingIcmpType(high)
        else:
            raise SecurityGroupInvalidProtocolForPortRange(str(protocol))

    async def create_security_group_rule(self, caller: Caller,
                                         new: NewRule) -> SecurityGroupRule:
        if not new.security_group_id:
            raise InvalidInput("Invalid input for operation: security_group_id is required.")
        group = await self.get_security_group(caller, new.security_group_id)
        caller.authorize("create_security_group_rule", {"project_id": group.project_id})
        r = self._normalise_rule(new)
        if r.get("remote_group_id"):
            await self.get_security_group(caller, str(r["remote_group_id"]))
        await self.quotas.check(group.project_id, "security_group_rule")
        fingerprint = self._fingerprint(r)
        for existing in group.rules:
            if self._fingerprint(vars(existing)) == fingerprint:
                raise SecurityGroupRuleExists(existing.id)
        rule = self._add_rule(group, r)
        # A duplicate made concurrently trips the unique key at flush: a 409 all the same.
        await self.session.flush()
        touch(group)
        self._rules_changed(group.id)
        return rule

    async def get_security_group_rule(self, caller: Caller, rule_id: str) -> SecurityGroupRule:
        return await self._one(_visible(SecurityGroupRule, caller).where(
            SecurityGroupRule.id == rule_id), SecurityGroupRuleNotFound(rule_id))

    async def list_security_group_rules(self, caller: Caller, query: flt.ListQuery) -> Page:
        return await self._page(caller, RULE_ATTRIBUTES, SecurityGroupRule, query)

    async def delete_security_group_rule(self, caller: Caller, rule_id: str) -> None:
        rule = await self.get_security_group_rule(caller, rule_id)
        caller.authorize("delete_security_group_rule", {"project_id": rule.project_id})
        await self.session.delete(rule)
        self._rules_changed(rule.security_group_id)

    async def default_group_ids(self, group_ids: Iterable[str]) -> set[str]:
        ids = list(group_ids)
        if not ids:
            return set()
        return set(await self.session.scalars(select(
            DefaultSecurityGroup.security_group_id).where(
            DefaultSecurityGroup.security_group_id.in_(ids))))
