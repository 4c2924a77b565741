"""Domain errors. Service logic raises these; the web layer turns them into HTTP answers.

Nothing here knows of HTTP beyond the status number each error kind maps to.
"""

from __future__ import annotations


class StratusError(Exception):
    """Base of every error the APIs turn into a 4xx answer."""

    status = 500
    title = "Internal Server Error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.title)
        self.message = message or self.title


class BadRequest(StratusError):
    status = 400
    title = "Bad Request"


class ValidationError(BadRequest):
    """The request is well formed but a value in it is not acceptable."""


class Unauthorized(StratusError):
    status = 401
    title = "Unauthorized"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or "The request you have made requires authentication.")


class Forbidden(StratusError):
    status = 403
    title = "Forbidden"


class NotFound(StratusError):
    status = 404
    title = "Not Found"


class MethodNotAllowed(StratusError):
    status = 405
    title = "Method Not Allowed"


class NotAcceptable(StratusError):
    status = 406
    title = "Not Acceptable"


class Conflict(StratusError):
    status = 409
    title = "Conflict"


class PayloadTooLarge(StratusError):
    status = 413
    title = "Request Entity Too Large"


class UnsupportedMediaType(StratusError):
    status = 415
    title = "Unsupported Media Type"


class ServiceUnavailable(StratusError):
    status = 503
    title = "Service Unavailable"


class MarkerNotFound(BadRequest):
    """A paging marker names no row the caller can see (``core.db.paging``).

    A 400 by default, as Glance, Nova and Cinder answer; an API whose dialect says 404
    (Neutron) catches it and raises its own error.
    """

    def __init__(self, marker: str, message: str | None = None) -> None:
        super().__init__(message or f"Marker {marker} could not be found.")
        self.marker = marker
