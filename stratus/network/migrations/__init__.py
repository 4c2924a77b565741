"""The network service's schema history (Alembic, version table ``alembic_version_network``)."""

#: The newest revision; a test keeps it equal to the history's head.
HEAD = "0006"

#: Where the history lives, and the table that records how far a database is.
SCRIPT_LOCATION = "stratus.network:migrations"
VERSION_TABLE = "alembic_version_network"
