"""Alembic environment of the network service's migration history."""

from alembic import context

from stratus.core.db import run_migrations_online
from stratus.network.models import Base

run_migrations_online(context, Base.metadata)
