"""instance passwords posted through the metadata service

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 05:05:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'instance_password',
        sa.Column('instance_uuid', sa.String(length=36), nullable=False),
        sa.Column('password', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('instance_uuid'),
    )


def downgrade() -> None:
    op.drop_table('instance_password')
