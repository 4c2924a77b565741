"""The volume, snapshot and attachment status machines (the API's status strings)."""

CREATING = "creating"
AVAILABLE = "available"
RESERVED = "reserved"
ATTACHING = "attaching"
IN_USE = "in-use"
DETACHING = "detaching"
EXTENDING = "extending"
#: Being read out into a new image (``os-volume_upload_image``); back to available after.
UPLOADING = "uploading"
#: Offered to another project (``os-volume-transfer``) until accepted or withdrawn.
AWAITING_TRANSFER = "awaiting-transfer"
DELETING = "deleting"
DELETED = "deleted"
ERROR = "error"
ERROR_DELETING = "error_deleting"
ERROR_EXTENDING = "error_extending"

#: Statuses a volume may be deleted from (when nothing is attached and no snapshot is left).
DELETABLE = (AVAILABLE, ERROR, ERROR_EXTENDING, ERROR_DELETING)
#: Every status ``os-reset_status`` may set.
ALL = (CREATING, AVAILABLE, RESERVED, ATTACHING, IN_USE, DETACHING, EXTENDING, DELETING,
       ERROR, ERROR_DELETING, ERROR_EXTENDING, "maintenance", "backing-up",
       "restoring-backup", "error_restoring", "downloading", UPLOADING, "retyping",
       "error_managing", AWAITING_TRANSFER)

# A volume's ``attach_status``.
DETACHED = "detached"
ATTACHED = "attached"

# An attachment's ``attach_status``.
ATTACHMENT_RESERVED = "reserved"
ATTACHMENT_ATTACHING = "attaching"
ATTACHMENT_ATTACHED = "attached"
ATTACHMENT_DETACHED = "detached"
