"""Server tags (``/servers/{id}/tags``, 2.26+): Nova's rules on them.

A tag is a string of 1 to 60 characters without ``/`` or ``,`` (they would break the
``tags``/``not-tags`` list filters); a server holds at most 50, each once, in the order
they were added. Changes are allowed while the server is at rest in one of Nova's states
(active, paused, suspended, stopped), else 409; reads always.
"""

from __future__ import annotations

from typing import Any

from stratus.compute import states
from stratus.compute.models import Instance
from stratus.core.exceptions import BadRequest, Conflict, NotFound

MAX_TAGS = 50
MAX_TAG_LENGTH = 60
#: vm_states in which a server's tags may change (Nova's list).
TAGGABLE_STATES = (states.ACTIVE, states.PAUSED, states.SUSPENDED, states.STOPPED)


def check_tag(tag: Any) -> str:
    """``tag`` if it is one, else ``BadRequest`` saying why."""
    if (not isinstance(tag, str) or not 1 <= len(tag) <= MAX_TAG_LENGTH
            or "/" in tag or "," in tag):
        raise BadRequest(f"Tag '{tag}' is invalid. It must be a non empty string of at most "
                         f"{MAX_TAG_LENGTH} characters without characters '/' and ','.")
    return tag


def check_tags(tags: Any) -> list[str]:
    """A whole list of tags, checked and without repeats (the first of each kept)."""
    if not isinstance(tags, list):
        raise BadRequest("Invalid input for field 'tags': it must be a list of strings.")
    unique = list(dict.fromkeys(check_tag(t) for t in tags))
    if len(unique) > MAX_TAGS:
        raise BadRequest(f"The number of tags exceeded the per-server limit {MAX_TAGS}")
    return unique


def check_taggable(instance: Instance, action: str) -> None:
    if instance.vm_state not in TAGGABLE_STATES:
        raise Conflict(f"Cannot '{action}' instance {instance.uuid} while it is in vm_state "
                       f"{instance.vm_state}")


def tags_of(instance: Instance) -> list[str]:
    return list(instance.tags or [])


def has_tag(instance: Instance, tag: str) -> None:
    """Nothing if the server has ``tag``; else ``NotFound`` in Nova's words."""
    if tag not in tags_of(instance):
        raise NotFound(f"Server {instance.uuid} has no tag '{tag}'")


def add_tag(instance: Instance, tag: str) -> bool:
    """Add ``tag``; False when the server had it already (nothing changes)."""
    check_taggable(instance, "update tag")
    check_tag(tag)
    current = tags_of(instance)
    if tag in current:
        return False
    if len(current) >= MAX_TAGS:
        raise BadRequest(f"The number of tags exceeded the per-server limit {MAX_TAGS}")
    instance.tags = [*current, tag]  # a new list, so the JSON column sees the change
    return True


def replace_tags(instance: Instance, tags: list[str]) -> list[str]:
    check_taggable(instance, "update tags")
    instance.tags = check_tags(tags)
    return tags_of(instance)


def delete_tag(instance: Instance, tag: str) -> None:
    check_taggable(instance, "delete tag")
    has_tag(instance, tag)
    instance.tags = [t for t in tags_of(instance) if t != tag]


def delete_tags(instance: Instance) -> None:
    check_taggable(instance, "delete tags")
    instance.tags = []
