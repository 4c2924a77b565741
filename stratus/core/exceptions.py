"""Domain errors. Service logic raises these; the web layer turns them into HTTP answers.

Nothing here knows of HTTP beyond the status each error kind maps to.
"""

from __future__ import annotations

from http import HTTPStatus


class StratusError(Exception):
    """Base of every error the APIs turn into a 4xx answer.

    A subclass names its ``status``; its ``title`` is the status's standard phrase.
    """

    status: int = HTTPStatus.INTERNAL_SERVER_ERROR
    title = HTTPStatus.INTERNAL_SERVER_ERROR.phrase

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "title" not in cls.__dict__:
            cls.title = HTTPStatus(cls.status).phrase

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.title)
        self.message = message or self.title


class BadRequest(StratusError):
    status = HTTPStatus.BAD_REQUEST


class ValidationError(BadRequest):
    """The request is well formed but a value in it is not acceptable."""


class Unauthorized(StratusError):
    status = HTTPStatus.UNAUTHORIZED

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or "The request you have made requires authentication.")


class Forbidden(StratusError):
    status = HTTPStatus.FORBIDDEN


class NotFound(StratusError):
    status = HTTPStatus.NOT_FOUND


class MethodNotAllowed(StratusError):
    status = HTTPStatus.METHOD_NOT_ALLOWED


class NotAcceptable(StratusError):
    status = HTTPStatus.NOT_ACCEPTABLE


class Conflict(StratusError):
    status = HTTPStatus.CONFLICT


class PayloadTooLarge(StratusError):
    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class UnsupportedMediaType(StratusError):
    status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE


class ServiceUnavailable(StratusError):
    status = HTTPStatus.SERVICE_UNAVAILABLE


class MarkerNotFound(BadRequest):
    """A paging marker names no row the caller can see (``core.db.paging``).

    A 400 by default, as Glance, Nova and Cinder answer; an API whose dialect says 404
    (Neutron) catches it and raises its own error.
    """

    def __init__(self, marker: str, message: str | None = None) -> None:
        super().__init__(message or f"Marker {marker} could not be found.")
        self.marker = marker
