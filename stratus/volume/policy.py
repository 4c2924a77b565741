"""Block storage's default policy, after Cinder's defaults (project scope)."""

from stratus.core.policy import RuleDefault

ADMIN = "rule:admin_api"
MEMBER = "rule:project_member_or_admin"
READER = "rule:project_reader_or_admin"

RULES = [
    RuleDefault("admin_api", "role:admin or is_admin:True"),
    RuleDefault("project_member_or_admin",
                "rule:admin_api or (role:member and project_id:%(project_id)s)"),
    RuleDefault("project_reader_or_admin",
                "rule:admin_api or (role:reader and project_id:%(project_id)s)"),
    RuleDefault("volume:create", MEMBER),
    RuleDefault("volume:get", READER),
    RuleDefault("volume:get_all", READER),
    RuleDefault("volume:get_all_tenants", ADMIN),
    RuleDefault("volume:update", MEMBER),
    RuleDefault("volume:delete", MEMBER),
    RuleDefault("volume:force_delete", ADMIN),
    RuleDefault("volume:extend", MEMBER),
    RuleDefault("volume:update_volume_metadata", MEMBER),
    RuleDefault("volume_extension:volume_actions:set_bootable", MEMBER),
    RuleDefault("volume_extension:volume_actions:update_readonly_flag", MEMBER),
    RuleDefault("volume_extension:volume_actions:upload_image", MEMBER),
    RuleDefault("volume_extension:volume_actions:upload_public", ADMIN),
    RuleDefault("volume_extension:volume_admin_actions:reset_status", ADMIN),
    RuleDefault("volume:create_snapshot", MEMBER),
    RuleDefault("volume:get_snapshot", READER),
    RuleDefault("volume:get_all_snapshots", READER),
    RuleDefault("volume:update_snapshot", MEMBER),
    RuleDefault("volume:delete_snapshot", MEMBER),
    RuleDefault("volume:get_snapshot_metadata", READER),
    RuleDefault("volume:update_snapshot_metadata", MEMBER),
    RuleDefault("volume:delete_snapshot_metadata", MEMBER),
    RuleDefault("volume_extension:types_manage", ADMIN),
    RuleDefault("volume_extension:type_get", "@"),
    RuleDefault("volume_extension:type_get_all", "@"),
    RuleDefault("volume:attachment_create", MEMBER),
    RuleDefault("volume:attachment_update", MEMBER),
    RuleDefault("volume:attachment_complete", MEMBER),
    RuleDefault("volume:attachment_delete", MEMBER),
    RuleDefault("volume:attachment_get", READER),
    RuleDefault("volume_extension:quotas:show", READER),
    RuleDefault("volume_extension:quotas:update", ADMIN),
    RuleDefault("volume_extension:quotas:delete", ADMIN),
    RuleDefault("limits_extension:used_limits", READER),
    RuleDefault("volume_extension:services:index", ADMIN),
    RuleDefault("volume_extension:availability_zone_list", "@"),
    RuleDefault("volume_extension:extensions", "@"),
]
