"""Alembic environment of block storage's migration history."""

from alembic import context

from stratus.core.db import run_migrations_online

run_migrations_online(context, "stratus.volume.models")
