"""Alembic environment of block storage's migration history."""

from alembic import context

from stratus.core.db import run_migrations_online
from stratus.volume.models import Base

run_migrations_online(context, Base.metadata)
