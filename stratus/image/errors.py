"""The image service's own errors: the ones ``stratus.core.exceptions`` does not have.

``Gone`` (410) is an image deleted while its data was uploading; ``RangeNotSatisfiable`` (416)
carries the data's size so the API can answer with ``Content-Range: bytes */<size>``.
"""

from __future__ import annotations

from http import HTTPStatus

from stratus.core.exceptions import StratusError


class Gone(StratusError):
    status = HTTPStatus.GONE


class RangeNotSatisfiable(StratusError):
    status = HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE

    def __init__(self, size: int) -> None:
        super().__init__(f"The requested range is not satisfiable (the data has {size} "
                         "bytes).")
        self.size = size


__all__ = ["Gone", "RangeNotSatisfiable"]
