"""HTTP building blocks shared by every API: app factory, errors, middleware, versions."""

from stratus.core.web.app import create_app
from stratus.core.web.errors import ErrorStyle

__all__ = ["ErrorStyle", "create_app"]
