"""Compute's error types, in one place.

The ``StratusError`` ones reach clients with their status (``QuotaExceeded`` 403,
``UnexpectedTaskState`` 409); the others are control flow between the scheduler, the
conductor and placement, and never leave the process.
"""

from __future__ import annotations

from stratus.core.exceptions import Conflict, Forbidden


class QuotaExceeded(Forbidden):
    """A project (or server, or server group) would go over one of its quotas."""


class UnexpectedTaskState(Conflict):
    """The instance is not in the task state the caller expected."""


class GuestAgentNotEnabled(Conflict):
    """The guest cannot take a password: no guest agent runs in it (libvirt's answer)."""


class ClaimConflict(Exception):
    """The provider changed between reading it and claiming on it: read again and retry."""


class InsufficientResources(Exception):
    """The provider cannot hold the request."""


#: The scheduler's decision span's record of a "No valid host": ``NoValidHost.evidence``.
FILTER_EVIDENCE_ATTRIBUTE = "stratus.scheduler.filter_results"


class NoValidHost(Exception):
    """No host can take the request; the message says which filter removed how many, and
    ``evidence`` (for operators: the fault's details, the decision span) each filter's
    count and the hosts it removed, with why."""

    def __init__(self, message: str, evidence: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.evidence = evidence


class InstanceGone(Exception):
    """The instance was deleted (or left ``scheduling``) before it could be placed."""


class AlreadyPlaced(Exception):
    """A redelivered request: the instance was placed (and claimed for) already."""

    def __init__(self, host: str) -> None:
        super().__init__(host)
        self.host = host
