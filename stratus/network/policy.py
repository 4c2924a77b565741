"""The network service's default policy, after Neutron's defaults (scope not enforced).

Targets carry the resource's owner as ``project_id``. Attribute rules are named
``<action>_<resource>:<attribute>`` as in Neutron (``create_port:binding:host_id``); they are
checked only when the request sets (or the answer would show) that attribute.

``is_service`` is true for a request that carries a valid ``X-Service-Token`` with the
``service`` or ``admin`` role: the compute host binds the ports it creates with the user's
token plus its own service token.

Which resources a caller can *see* (its project's, shared networks, everything for admins)
is decided by the service; what it cannot see is a 404, never a 403. The check language
compares the caller's facts with the target's, so "the network is shared" is decided by the
service too, not by a rule.
"""

from stratus.core.policy import RuleDefault

ADMIN = "rule:context_is_admin"
OWNER = "project_id:%(project_id)s"
ADMIN_OR_OWNER = f"{ADMIN} or {OWNER}"
MEMBER = f"{ADMIN} or (role:member and {OWNER})"
READER = f"{ADMIN} or (role:reader and {OWNER})"
SERVICE = f"{ADMIN} or is_service:True"



def _owned(resource: str,
           actions: tuple[str, ...] = ("create", "get", "update", "delete")) -> list[RuleDefault]:
    """The rules of a resource a project owns: its readers see it (``get``), its members
    make and change it."""
    return [RuleDefault(f"{action}_{resource}", READER if action == "get" else MEMBER)
            for action in actions]


RULES = [
    RuleDefault("context_is_admin", "role:admin", "Sees and manages every resource"),
    RuleDefault("admin_only", ADMIN),
    RuleDefault("default", ADMIN_OR_OWNER),
    # Networks.
    *_owned("network"),
    RuleDefault("create_network:shared", ADMIN, "Make a network shared with every project"),
    RuleDefault("create_network:router:external", ADMIN),
    RuleDefault("create_network:provider", ADMIN, "Set provider:* attributes"),
    RuleDefault("get_network:provider", ADMIN, "See provider:* attributes"),
    RuleDefault("update_network:shared", ADMIN),
    RuleDefault("update_network:router:external", ADMIN),
    RuleDefault("update_network:provider", ADMIN),
    # Subnets: on one's own network, or any as admin.
    *_owned("subnet"),
    # Subnet pools: a project's own; shared and default ones are an admin's to make.
    *_owned("subnetpool"),
    RuleDefault("create_subnetpool:shared", ADMIN, "Make a subnet pool shared with every "
                "project"),
    RuleDefault("create_subnetpool:is_default", ADMIN, "Make the default subnet pool"),
    RuleDefault("update_subnetpool:is_default", ADMIN),
    # Ports: on one's own network or a shared one.
    RuleDefault("create_port", MEMBER, "Create a port of one's own project (on a network "
                "the caller can see: its own, or a shared one)"),
    *_owned("port", ("get", "update", "delete")),
    RuleDefault("create_port:mac_address", f"{SERVICE} or project_id:%(network_owner)s"),
    RuleDefault("create_port:fixed_ips:ip_address",
                f"{SERVICE} or project_id:%(network_owner)s",
                "Choose an address (on a shared network anyone may: the service checks that)"),
    RuleDefault("create_port:binding", SERVICE, "Set binding:* attributes"),
    RuleDefault("get_port:binding", SERVICE, "See binding:* attributes"),
    RuleDefault("update_port:binding", SERVICE),
    RuleDefault("update_port:mac_address", ADMIN),
    # Security groups and rules.
    *_owned("security_group"),
    *_owned("security_group_rule", ("create", "get", "delete")),
    # Routers and floating IPs (the L3 service).
    *_owned("router"),
    RuleDefault("add_router_interface", MEMBER),
    RuleDefault("remove_router_interface", MEMBER),
    RuleDefault("create_router:external_gateway_info:enable_snat", ADMIN,
                "Choose whether a new router's gateway translates addresses"),
    RuleDefault("create_router:external_gateway_info:external_fixed_ips", ADMIN,
                "Choose a new router's gateway addresses"),
    RuleDefault("update_router:external_gateway_info:enable_snat", ADMIN),
    RuleDefault("update_router:external_gateway_info:external_fixed_ips", ADMIN),
    *_owned("floatingip"),
    RuleDefault("create_floatingip:floating_ip_address", ADMIN,
                "Choose a floating IP's address"),
    # Quotas and agents: operators'.
    RuleDefault("get_quota", READER),
    RuleDefault("get_quotas", ADMIN, "List every project's non-default quotas"),
    RuleDefault("update_quota", ADMIN),
    RuleDefault("delete_quota", ADMIN),
    RuleDefault("get_agent", ADMIN),
    RuleDefault("update_agent", ADMIN),
    RuleDefault("delete_agent", ADMIN),
    RuleDefault("get_availability_zone", "role:reader or rule:context_is_admin"),
]
