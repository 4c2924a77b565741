"""the project's live servers in the lists' order, an index PostgreSQL can page from

``ix_instance_project_live`` (project, deleted, created_at, uuid, ...) gives SQLite the
lists' order after ``project_id = ? AND deleted_at IS NULL``, but not PostgreSQL: its
planner takes only an equality as fixing an index column for the order, and ``IS NULL`` is
not one, so it read every live server of the project and sorted them for each page. The
rows of this partial index are only the live servers, so (project, created_at, uuid) read
backwards is the default order (created_at, uuid, desc): a page, the first or one after a
marker, is a range of it. PostgreSQL only: SQLite's planner pages off
``ix_instance_project_live`` and never reads this one, which each boot and delete would
still have written (a database made by the first form of this revision drops it in 0013).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 10:55:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LIVE = sa.text('deleted_at IS NULL')


def _on_postgresql() -> bool:
    return op.get_bind().dialect.name == 'postgresql'


def upgrade() -> None:
    if _on_postgresql():
        op.create_index('ix_instance_project_live_order', 'instance',
                        ['project_id', 'created_at', 'uuid'], unique=False,
                        postgresql_where=_LIVE)


def downgrade() -> None:
    if _on_postgresql():
        op.drop_index('ix_instance_project_live_order', table_name='instance')
