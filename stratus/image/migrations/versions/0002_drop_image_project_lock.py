"""drop image_project_lock: the project's quota lock is core's Txn.lock

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 19:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_table('image_project_lock')


def downgrade() -> None:
    op.create_table('image_project_lock',
    sa.Column('project_id', sa.String(length=64), nullable=False),
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('project_id')
    )
