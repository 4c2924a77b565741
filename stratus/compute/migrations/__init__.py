"""Compute's schema history (Alembic, version table ``alembic_version_compute``)."""

#: The newest revision; a test keeps it equal to the history's head.
HEAD = "0014"

#: Where the history lives, and the table that records how far a database is.
SCRIPT_LOCATION = "stratus.compute:migrations"
VERSION_TABLE = "alembic_version_compute"
