"""Identity's default policy, close to Keystone's defaults with enforce_scope off.

Admins may do everything. Members and readers see themselves, their own projects and
their own tokens and application credentials.
"""

from stratus.core.policy import RuleDefault

ADMIN = "rule:admin_required"

RULES = [
    RuleDefault("admin_required", "role:admin or is_admin:True"),
    RuleDefault("service_role", "role:service"),
    RuleDefault("owner", "user_id:%(user_id)s"),
    RuleDefault("admin_or_owner", "rule:admin_required or rule:owner"),
    RuleDefault("token_subject", "user_id:%(target.token.user_id)s"),
    RuleDefault("service_admin_or_token_subject",
                "rule:admin_required or rule:service_role or rule:token_subject"),
    # Tokens
    RuleDefault("identity:check_token", "rule:service_admin_or_token_subject"),
    RuleDefault("identity:validate_token", "rule:service_admin_or_token_subject"),
    RuleDefault("identity:revoke_token", "rule:service_admin_or_token_subject"),
    # Domains
    RuleDefault("identity:get_domain",
                f"{ADMIN} or project_domain_id:%(target.domain.id)s"
                " or domain_id:%(target.domain.id)s"),
    RuleDefault("identity:list_domains", ADMIN),
    RuleDefault("identity:create_domain", ADMIN),
    RuleDefault("identity:update_domain", ADMIN),
    RuleDefault("identity:delete_domain", ADMIN),
    # Projects
    RuleDefault("identity:get_project", f"{ADMIN} or project_id:%(target.project.id)s"),
    RuleDefault("identity:list_projects", ADMIN),
    RuleDefault("identity:list_user_projects", "rule:admin_or_owner"),
    RuleDefault("identity:create_project", ADMIN),
    RuleDefault("identity:update_project", ADMIN),
    RuleDefault("identity:delete_project", ADMIN),
    # Users
    RuleDefault("identity:get_user", f"{ADMIN} or user_id:%(target.user.id)s"),
    RuleDefault("identity:list_users", ADMIN),
    RuleDefault("identity:create_user", ADMIN),
    RuleDefault("identity:update_user", ADMIN),
    RuleDefault("identity:delete_user", ADMIN),
    RuleDefault("identity:change_password", "rule:owner"),
    # Groups
    RuleDefault("identity:get_group", ADMIN),
    RuleDefault("identity:list_groups", ADMIN),
    RuleDefault("identity:list_groups_for_user", "rule:admin_or_owner"),
    RuleDefault("identity:create_group", ADMIN),
    RuleDefault("identity:update_group", ADMIN),
    RuleDefault("identity:delete_group", ADMIN),
    RuleDefault("identity:list_users_in_group", ADMIN),
    RuleDefault("identity:add_user_to_group", ADMIN),
    RuleDefault("identity:check_user_in_group", ADMIN),
    RuleDefault("identity:remove_user_from_group", ADMIN),
    # Roles and grants
    RuleDefault("identity:get_role", ADMIN),
    RuleDefault("identity:list_roles", ADMIN),
    RuleDefault("identity:create_role", ADMIN),
    RuleDefault("identity:update_role", ADMIN),
    RuleDefault("identity:delete_role", ADMIN),
    RuleDefault("identity:create_grant", ADMIN),
    RuleDefault("identity:check_grant", ADMIN),
    RuleDefault("identity:list_grants", ADMIN),
    RuleDefault("identity:revoke_grant", ADMIN),
    RuleDefault("identity:list_role_assignments",
                f"{ADMIN} or user_id:%(target.user.id)s"),
    # Catalog
    RuleDefault("identity:get_region", ""),
    RuleDefault("identity:list_regions", ""),
    RuleDefault("identity:create_region", ADMIN),
    RuleDefault("identity:update_region", ADMIN),
    RuleDefault("identity:delete_region", ADMIN),
    RuleDefault("identity:get_service", ADMIN),
    RuleDefault("identity:list_services", ADMIN),
    RuleDefault("identity:create_service", ADMIN),
    RuleDefault("identity:update_service", ADMIN),
    RuleDefault("identity:delete_service", ADMIN),
    RuleDefault("identity:get_endpoint", ADMIN),
    RuleDefault("identity:list_endpoints", ADMIN),
    RuleDefault("identity:create_endpoint", ADMIN),
    RuleDefault("identity:update_endpoint", ADMIN),
    RuleDefault("identity:delete_endpoint", ADMIN),
    # Application credentials: only ever the owner's own (admins may look and delete).
    RuleDefault("identity:get_application_credential", "rule:admin_or_owner"),
    RuleDefault("identity:list_application_credentials", "rule:admin_or_owner"),
    RuleDefault("identity:create_application_credential", "rule:owner"),
    RuleDefault("identity:delete_application_credential", "rule:admin_or_owner"),
]
