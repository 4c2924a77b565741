"""Instance states as Nova names them, and the API ``status`` they show as."""

from __future__ import annotations

# vm_state: what the instance is.
ACTIVE = "active"
BUILDING = "building"
PAUSED = "paused"
SUSPENDED = "suspended"
STOPPED = "stopped"
RESCUED = "rescued"
RESIZED = "resized"
SOFT_DELETED = "soft-delete"
DELETED = "deleted"
ERROR = "error"
SHELVED = "shelved"
SHELVED_OFFLOADED = "shelved_offloaded"

# task_state: what is being done to it.
SCHEDULING = "scheduling"
NETWORKING = "networking"
BLOCK_DEVICE_MAPPING = "block_device_mapping"
SPAWNING = "spawning"
POWERING_OFF = "powering-off"
POWERING_ON = "powering-on"
REBOOTING = "rebooting"
REBOOT_PENDING = "reboot_pending"
REBOOT_STARTED = "reboot_started"
REBOOTING_HARD = "rebooting_hard"
REBOOT_PENDING_HARD = "reboot_pending_hard"
REBOOT_STARTED_HARD = "reboot_started_hard"
DELETING = "deleting"
# Moves between hosts (resize, migrations, evacuation).
RESIZE_PREP = "resize_prep"
RESIZE_MIGRATING = "resize_migrating"
RESIZE_MIGRATED = "resize_migrated"
RESIZE_FINISH = "resize_finish"
RESIZE_REVERTING = "resize_reverting"
MIGRATING = "migrating"
REBUILDING = "rebuilding"
REBUILD_SPAWNING = "rebuild_spawning"

PAUSING = "pausing"
UNPAUSING = "unpausing"
SUSPENDING = "suspending"
RESUMING = "resuming"
RESCUING = "rescuing"
UNRESCUING = "unrescuing"
UPDATING_PASSWORD = "updating_password"

# createImage, rebuild, shelve (stratus.compute.snapshots, .rebuild, .shelve)
IMAGE_SNAPSHOT = "image_snapshot"
IMAGE_PENDING_UPLOAD = "image_pending_upload"
IMAGE_UPLOADING = "image_uploading"
REBUILD_BLOCK_DEVICE_MAPPING = "rebuild_block_device_mapping"
SHELVING = "shelving"
SHELVING_IMAGE_PENDING_UPLOAD = "shelving_image_pending_upload"
SHELVING_IMAGE_UPLOADING = "shelving_image_uploading"
SHELVING_OFFLOADING = "shelving_offloading"
UNSHELVING = "unshelving"

_SOFT_REBOOT = {REBOOTING, REBOOT_PENDING, REBOOT_STARTED}
_HARD_REBOOT = {REBOOTING_HARD, REBOOT_PENDING_HARD, REBOOT_STARTED_HARD}

_DEFAULT_STATUS = {
    BUILDING: "BUILD", ACTIVE: "ACTIVE", STOPPED: "SHUTOFF", RESIZED: "VERIFY_RESIZE",
    PAUSED: "PAUSED", SUSPENDED: "SUSPENDED", RESCUED: "RESCUE", ERROR: "ERROR",
    DELETED: "DELETED", SOFT_DELETED: "SOFT_DELETED", SHELVED: "SHELVED",
    SHELVED_OFFLOADED: "SHELVED_OFFLOADED",
}


#: The vm_states a task state can show as another status than their own (``status``).
_BY_TASK = {"REBUILD": {ACTIVE, STOPPED, ERROR}, "RESIZE": {ACTIVE, STOPPED},
            "REBOOT": {ACTIVE}, "HARD_REBOOT": {ACTIVE}, "PASSWORD": {ACTIVE},
            "MIGRATING": {ACTIVE}, "REVERT_RESIZE": {RESIZED}}


def vm_states_showing(wanted: str) -> set[str] | None:
    """Every vm_state whose servers may show ``wanted`` as their ``status`` (a superset:
    ``status`` decides per row), so that a status filter reads only those rows; None
    for ``UNKNOWN``, which any unmapped vm_state shows."""
    if wanted == "UNKNOWN":
        return None
    return {vm for vm, shown in _DEFAULT_STATUS.items() if shown == wanted} | \
        _BY_TASK.get(wanted, set())


def status(vm_state: str, task_state: str | None) -> str:
    """The API's ``status`` for a (vm_state, task_state) pair; ``UNKNOWN`` if unmapped."""
    task = task_state or ""
    if vm_state in (ACTIVE, STOPPED, ERROR) and task.startswith("rebuild"):
        return "REBUILD"
    if vm_state in (ACTIVE, STOPPED) and task.startswith("resize"):
        return "RESIZE"
    if vm_state == ACTIVE:
        if task in _SOFT_REBOOT:
            return "REBOOT"
        if task in _HARD_REBOOT:
            return "HARD_REBOOT"
        if task == UPDATING_PASSWORD:
            return "PASSWORD"
        if task == "migrating":
            return "MIGRATING"
    if vm_state == RESIZED and task == "resize_reverting":
        return "REVERT_RESIZE"
    return _DEFAULT_STATUS.get(vm_state, "UNKNOWN")
