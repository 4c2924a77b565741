"""OpenStack error bodies, one style per API family.

Identity: ``{"error": {"code", "title", "message"}}``. Compute and block storage:
``{"badRequest": {"message", "code"}}`` (the key names the error kind). Network:
``{"NeutronError": {"type", "message", "detail"}}``. Placement: ``{"errors": [{"status",
"title", "detail", "code", "request_id"}]}`` (a list, as its API-WG error guideline has it).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from starlette.responses import JSONResponse

from stratus.core.context import current_request_id

_COMPUTE_KEYS = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    406: "notAcceptable",
    409: "conflictingRequest",
    413: "overLimit",
    415: "badMediaType",
    429: "overLimit",
    501: "notImplemented",
    503: "serviceUnavailable",
}


class ErrorStyle(enum.Enum):
    IDENTITY = "identity"
    COMPUTE = "compute"
    NETWORK = "network"
    PLACEMENT = "placement"
    PLAIN = "plain"

    def body(self, status: int, message: str, *, title: str | None = None,
             type_name: str | None = None,
             extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``extra``: more fields for the error; only placement's format has room for them
        (its clients read ``max_version`` and ``min_version`` from a 406 to negotiate)."""
        phrase = title or _phrase(status)
        if self is ErrorStyle.IDENTITY:
            return {"error": {"code": status, "title": phrase, "message": message}}
        if self is ErrorStyle.COMPUTE:
            key = _COMPUTE_KEYS.get(status, "computeFault")
            return {key: {"message": message, "code": status}}
        if self is ErrorStyle.NETWORK:
            return {"NeutronError": {"type": type_name or phrase.replace(" ", ""),
                                     "message": message, "detail": ""}}
        if self is ErrorStyle.PLACEMENT:
            return {"errors": [{"status": status, "title": _phrase(status), "detail": message,
                                "code": "placement.undefined_code",
                                "request_id": current_request_id(), **(extra or {})}]}
        return {"code": status, "title": phrase, "message": message}

    def response(self, status: int, message: str, *, title: str | None = None,
                 type_name: str | None = None,
                 headers: Mapping[str, str] | None = None,
                 extra: Mapping[str, Any] | None = None) -> JSONResponse:
        return JSONResponse(
            self.body(status, message, title=title, type_name=type_name, extra=extra),
            status_code=status,
            headers=headers,
        )


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
