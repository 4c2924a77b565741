"""no ``ix_instance_project_live_order`` on SQLite

0012 first made that partial index on SQLite too, where the planner never uses it (the
lists page off ``ix_instance_project_live``) while every boot and delete writes an entry
to it. 0012 now makes it on PostgreSQL only; this drops it from a SQLite database the
first form of 0012 made. Nothing changes on PostgreSQL.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 14:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        op.execute('DROP INDEX IF EXISTS ix_instance_project_live_order')


def downgrade() -> None:
    pass  # 0012 no longer makes it on SQLite either
