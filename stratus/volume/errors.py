"""Block storage's own errors: the ones ``stratus.core.exceptions`` does not have.

Cinder answers most refusals with a 400 whose message starts "Invalid input received:" (a
plain ``BadRequest``); over quota is its own type, a 413 as in Cinder.
"""

from __future__ import annotations

from stratus.core.exceptions import PayloadTooLarge


class QuotaExceeded(PayloadTooLarge):
    pass


__all__ = ["QuotaExceeded"]
