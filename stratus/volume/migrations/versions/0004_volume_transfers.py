"""volume_transfers: volumes offered to another project (os-volume-transfer)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 22:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('volume_transfers',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('volume_id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=True),
    sa.Column('salt', sa.String(length=64), nullable=False),
    sa.Column('key_hash', sa.String(length=128), nullable=False),
    sa.Column('source_project_id', sa.String(length=64), nullable=False),
    sa.Column('destination_project_id', sa.String(length=64), nullable=True),
    sa.Column('no_snapshots', sa.Boolean(), nullable=False),
    sa.Column('accepted', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('deleted_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['volume_id'], ['volume_volumes.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('volume_transfers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_volume_transfers_volume_id'), ['volume_id'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_volume_transfers_source_project_id'),
                              ['source_project_id'], unique=False)


def downgrade() -> None:
    op.drop_table('volume_transfers')
