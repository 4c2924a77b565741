"""Compute's default policy, after Nova's defaults (project scope, enforce_scope off)."""

from stratus.core.policy import RuleDefault

ADMIN = "rule:admin_api"
ANY = "@"

RULES = [
    RuleDefault("admin_api", "role:admin or is_admin:True"),
    RuleDefault("admin_or_owner", "rule:admin_api or user_id:%(user_id)s"),
    RuleDefault("project_member_or_admin",
                "rule:admin_api or (role:member and project_id:%(project_id)s)"),
    RuleDefault("project_reader_or_admin",
                "rule:admin_api or (role:reader and project_id:%(project_id)s)"),
    RuleDefault("os_compute_api:flavors:list", ANY),
    RuleDefault("os_compute_api:flavors:show", ANY),
    RuleDefault("os_compute_api:os-flavor-manage:create", ADMIN),
    RuleDefault("os_compute_api:os-flavor-manage:update", ADMIN),
    RuleDefault("os_compute_api:os-flavor-manage:delete", ADMIN),
    RuleDefault("os_compute_api:os-flavor-extra-specs:index", ANY),
    RuleDefault("os_compute_api:os-flavor-extra-specs:show", ANY),
    RuleDefault("os_compute_api:os-flavor-extra-specs:create", ADMIN),
    RuleDefault("os_compute_api:os-flavor-extra-specs:update", ADMIN),
    RuleDefault("os_compute_api:os-flavor-extra-specs:delete", ADMIN),
    RuleDefault("os_compute_api:os-flavor-access", ADMIN),
    RuleDefault("os_compute_api:os-flavor-access:add_tenant_access", ADMIN),
    RuleDefault("os_compute_api:os-flavor-access:remove_tenant_access", ADMIN),
    RuleDefault("os_compute_api:os-keypairs:index", "rule:admin_or_owner"),
    RuleDefault("os_compute_api:os-keypairs:show", "rule:admin_or_owner"),
    RuleDefault("os_compute_api:os-keypairs:create", "rule:admin_or_owner"),
    RuleDefault("os_compute_api:os-keypairs:delete", "rule:admin_or_owner"),
    RuleDefault("os_compute_api:servers:index", "rule:project_reader_or_admin"),
    RuleDefault("os_compute_api:servers:detail", "rule:project_reader_or_admin"),
    RuleDefault("os_compute_api:servers:index:get_all_tenants", ADMIN),
    RuleDefault("os_compute_api:servers:show", "rule:project_reader_or_admin"),
    RuleDefault("os_compute_api:servers:create", "rule:project_member_or_admin"),
    RuleDefault("os_compute_api:servers:update", "rule:project_member_or_admin"),
    RuleDefault("os_compute_api:servers:delete", "rule:project_member_or_admin"),
    RuleDefault("os_compute_api:servers:start", "rule:project_member_or_admin"),
    RuleDefault("os_compute_api:servers:stop", "rule:project_member_or_admin"),
    RuleDefault("os_compute_api:servers:reboot", "rule:project_member_or_admin"),
    RuleDefault("os_compute_api:os-console-output", "rule:project_member_or_admin"),
    RuleDefault("os_compute_api:os-instance-actions:list", "rule:project_reader_or_admin"),
    RuleDefault("os_compute_api:os-instance-actions:show", "rule:project_reader_or_admin"),
    RuleDefault("os_compute_api:os-instance-actions:events", ADMIN),
]
