"""Targets: where a message goes, and the queue and exchange names they map to.

A :class:`Target` names a *topic* (a unit's role, e.g. ``scheduler``), optionally one *server*
of that topic (e.g. the compute host ``node-1``), or every server of the topic (``fanout``).
The names below are the whole broker topology; both transports use exactly these names:

=========================================  ==================================================
``stratus.cast.<topic>[.<server>]``        durable work queue of casts (competing consumers)
``stratus.call.<topic>[.<server>]``        transient work queue of calls (their replies are
                                           awaited, so they need no durability)
``stratus.dead.<topic>``                   durable dead-letter queue of the topic's casts
``stratus.fanout.<topic>``                 fanout exchange; every live server binds its own
                                           exclusive queue to it
``stratus.reply.<id>``                     one exclusive reply queue per transport (process)
=========================================  ==================================================
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from stratus.core.bus.errors import InvalidTarget

PREFIX = "stratus"

_TOPIC = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: Host names and other server ids: dots and colons allowed (the topic cannot contain a dot,
#: so ``<topic>.<server>`` stays unambiguous).
_SERVER = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_VERSION = re.compile(r"(\d{1,4})\.(\d{1,4})")


def parse_version(version: str) -> tuple[int, int]:
    """``"1.3"`` → ``(1, 3)``; :class:`InvalidTarget` for anything else."""
    match = _VERSION.fullmatch(version)
    if match is None:
        raise InvalidTarget(f"API version {version!r} is not MAJOR.MINOR")
    return int(match.group(1)), int(match.group(2))


def version_compatible(served: str, requested: str) -> bool:
    """A server at ``served`` can handle a message sent for ``requested``: same major
    version, and the server's minor version is at least the requested one."""
    s_major, s_minor = parse_version(served)
    r_major, r_minor = parse_version(requested)
    return s_major == r_major and s_minor >= r_minor


@dataclass(frozen=True, slots=True)
class Target:
    """Where a message goes.

    ``topic`` alone: one of the topic's servers (competing consumers). ``server`` set: that
    server only. ``fanout``: every live server of the topic. ``version``: the RPC API version
    a client sends (and the highest a server serves), ``MAJOR.MINOR``.
    """

    topic: str
    server: str | None = None
    fanout: bool = False
    version: str = "1.0"

    def __post_init__(self) -> None:
        if not isinstance(self.topic, str) or not _TOPIC.fullmatch(self.topic):
            raise InvalidTarget(
                f"topic {self.topic!r} must be 1-64 letters, digits, '_' or '-'")
        if self.server is not None and not _SERVER.fullmatch(self.server):
            raise InvalidTarget(
                f"server {self.server!r} must be 1-128 letters, digits, '_', '-', '.' or ':'")
        if self.fanout and self.server is not None:
            raise InvalidTarget("a fanout target names a topic, not a server")
        parse_version(self.version)

    def replace(self, **changes: object) -> Target:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def __str__(self) -> str:
        if self.fanout:
            return f"{self.topic}(fanout)"
        return f"{self.topic}.{self.server}" if self.server else self.topic


def _scoped(kind: str, topic: str, server: str | None) -> str:
    return f"{PREFIX}.{kind}.{topic}.{server}" if server else f"{PREFIX}.{kind}.{topic}"


def cast_queue(topic: str, server: str | None = None) -> str:
    return _scoped("cast", topic, server)


def call_queue(topic: str, server: str | None = None) -> str:
    return _scoped("call", topic, server)


def dead_letter_queue(topic: str) -> str:
    return f"{PREFIX}.dead.{topic}"


def fanout_exchange(topic: str) -> str:
    return f"{PREFIX}.fanout.{topic}"


def reply_queue(identity: str) -> str:
    return f"{PREFIX}.reply.{identity}"
