"""The image service's default policy, after Glance's defaults (secure RBAC, scope not enforced).

Targets name the image's owner as ``project_id`` (as Glance's ``ImageTarget`` does) and, for
member rules, the member project as ``member_id``. Which images a caller can *see* at all
(owner, public, community, shared with its project) is decided by the service, like Glance's
database layer does; an image the caller cannot see is a 404, never a 403.
"""

from stratus.core.policy import RuleDefault

ADMIN = "rule:context_is_admin"
OWNER_MEMBER = f"{ADMIN} or (role:member and project_id:%(project_id)s)"
READER = f"{ADMIN} or role:reader"

RULES = [
    RuleDefault("context_is_admin", "role:admin", "Sees and manages every image"),
    RuleDefault("default", ADMIN),
    RuleDefault("add_image", OWNER_MEMBER, "Create an image owned by project_id"),
    RuleDefault("get_image", READER, "Show an image the caller can see"),
    RuleDefault("get_images", READER, "List the images the caller can see"),
    RuleDefault("modify_image", OWNER_MEMBER, "Change an image's attributes and tags"),
    RuleDefault("publicize_image", "role:admin", "Make an image public"),
    RuleDefault("communitize_image", OWNER_MEMBER, "Make an image community"),
    RuleDefault("delete_image", OWNER_MEMBER),
    RuleDefault("upload_image", OWNER_MEMBER),
    RuleDefault("add_image_location", f"{OWNER_MEMBER} or role:service",
                "Give a queued image the data its store already holds (Glance 2.17's "
                "add location: services such as compute, and the owner)"),
    RuleDefault("download_image", READER, "Download the data of an image the caller can see"),
    RuleDefault("deactivate", OWNER_MEMBER),
    RuleDefault("reactivate", OWNER_MEMBER),
    RuleDefault("add_member", OWNER_MEMBER, "Share an image with a project"),
    RuleDefault("delete_member", OWNER_MEMBER),
    RuleDefault("get_member",
                f"{ADMIN} or (role:reader and (project_id:%(project_id)s"
                " or project_id:%(member_id)s))"),
    RuleDefault("get_members",
                f"{ADMIN} or (role:reader and (project_id:%(project_id)s"
                " or project_id:%(member_id)s))"),
    RuleDefault("modify_member", f"{ADMIN} or (role:member and project_id:%(member_id)s)",
                "Accept or reject a membership (the member project only)"),
    # The metadata definitions catalog: read by everyone, written by admins (as Glance).
    RuleDefault("get_metadef_namespace", READER, "Show a namespace the caller can see"),
    RuleDefault("get_metadef_namespaces", READER, "List the namespaces the caller can see"),
    RuleDefault("list_metadef_resource_types", READER),
    RuleDefault("add_metadef_namespace", ADMIN),
    RuleDefault("modify_metadef_namespace", ADMIN),
    RuleDefault("delete_metadef_namespace", ADMIN),
    *(RuleDefault(rule, ADMIN) for rule in (
        "add_metadef_property", "modify_metadef_property", "remove_metadef_property",
        "add_metadef_object", "modify_metadef_object", "delete_metadef_object",
        "add_metadef_tag", "add_metadef_tags", "modify_metadef_tag", "delete_metadef_tag",
        "delete_metadef_tags", "add_metadef_resource_type_association",
        "remove_metadef_resource_type_association")),
]
