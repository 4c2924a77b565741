"""What the bus raises. Every error here derives from :class:`MessagingError`.

A ``call`` whose handler raised fails with :class:`RemoteError` (type name and message).
When the type is on the client's allow-list (``RPCAPI.ERRORS``; the bus's own
``InvalidMessage``, ``UnknownMethod`` and ``UnsupportedVersion`` always), the error raised is
also of that type — ``remote_error`` builds a class deriving from both — so callers write
``except UnexpectedTaskState:`` rather than compare ``exc_type`` strings, and code that
catches ``RemoteError`` still catches it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


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


#: The bus's own refusals, typed on every client.
BUS_ERRORS: tuple[type[Exception], ...] = (InvalidMessage, UnknownMethod, UnsupportedVersion)

_typed: dict[type[Exception], type[RemoteError]] = {}


def allow_list(errors: Iterable[type[Exception]]) -> dict[str, type[Exception]]:
    """Type name → type for a client: ``errors`` and ``BUS_ERRORS``. Two allowed types of
    one name could not be told apart on the wire, so that is refused."""
    allowed: dict[str, type[Exception]] = {}
    for kind in (*BUS_ERRORS, *errors):
        if allowed.get(kind.__name__, kind) is not kind:
            raise ValueError(f"two remote error types are named {kind.__name__}")
        allowed[kind.__name__] = kind
    return allowed


def remote_class(kind: type[Exception]) -> type[RemoteError]:
    """``kind`` as a call raises it: a subclass of both ``kind`` and ``RemoteError``, of the
    same name (so it crosses a second hop under it)."""
    typed = _typed.get(kind)
    if typed is None:
        typed = type(kind.__name__, (kind, RemoteError), {
            "__module__": kind.__module__, "__qualname__": kind.__qualname__,
            "__doc__": f"{kind.__name__} raised by the handler of a bus call.",
            # ``kind``'s own constructor may take other arguments (``NotFound(id)``).
            "__init__": RemoteError.__init__,
        })
        _typed[kind] = typed
    return typed


def remote_error(exc_type: str, message: str,
                 allowed: Mapping[str, type[Exception]]) -> RemoteError:
    """The error a call raises for the remote ``exc_type: message``."""
    kind = allowed.get(exc_type)
    if kind is None:
        return RemoteError(exc_type, message)
    return remote_class(kind)(exc_type, message)
