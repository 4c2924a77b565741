"""Compute's schema history (Alembic, version table ``alembic_version_compute``)."""

#: The newest revision; a test keeps it equal to the history's head.
HEAD = "0004"
