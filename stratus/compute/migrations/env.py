"""Alembic environment of compute's migration history."""

from alembic import context

from stratus.compute.models import Base
from stratus.core.db import run_migrations_online

run_migrations_online(context, Base.metadata)
