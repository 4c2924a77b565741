"""What the bus raises. Every error here derives from :class:`MessagingError`."""

from __future__ import annotations


class MessagingError(Exception):
    """Base of every bus error."""


class InvalidTarget(MessagingError, ValueError):
    """A topic, server or version that cannot name a queue."""


class InvalidTransportURL(MessagingError, ValueError):
    """A bus URL that cannot be parsed, or names an unknown transport or option."""


class TransportClosed(MessagingError):
    """The transport was closed (or never started) by this process."""


class BusUnavailable(MessagingError):
    """No broker of the URL could be reached in time."""


class DeliveryFailed(MessagingError):
    """A message could not be handed to the broker (and confirmed, for casts) in time.

    Raised instead of dropping a message: the caller learns that the message did not go out.
    """


class MessagingTimeout(MessagingError, TimeoutError):
    """A ``call`` got no reply within its timeout."""


class RemoteError(MessagingError):
    """A ``call``'s handler raised. Carries the remote exception's type name and message.

    No remote traceback travels: the server logs it, the caller sees only type and message.
    """

    def __init__(self, exc_type: str, message: str) -> None:
        super().__init__(f"{exc_type}: {message}" if message else exc_type)
        self.exc_type = exc_type
        self.message = message


class InvalidMessage(MessagingError):
    """A received message whose envelope or arguments fail validation. Never retried."""


class UnknownMethod(MessagingError):
    """A message names a method the server does not expose. Never retried."""


class UnsupportedVersion(MessagingError):
    """A message asks for an API version the server cannot serve. Never retried."""
