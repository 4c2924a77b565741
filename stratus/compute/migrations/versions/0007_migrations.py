"""migration: the moves of servers between hosts (os-migrations)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 15:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'migration',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('uuid', sa.String(length=36), nullable=False),
        sa.Column('instance_uuid', sa.String(length=36), nullable=False),
        sa.Column('migration_type', sa.String(length=32), nullable=False),
        sa.Column('status', sa.String(length=32), nullable=False),
        sa.Column('source_compute', sa.String(length=255), nullable=True),
        sa.Column('source_node', sa.String(length=255), nullable=True),
        sa.Column('dest_compute', sa.String(length=255), nullable=True),
        sa.Column('dest_node', sa.String(length=255), nullable=True),
        sa.Column('dest_host', sa.String(length=255), nullable=True),
        sa.Column('old_flavor', sa.JSON(), nullable=False),
        sa.Column('new_flavor', sa.JSON(), nullable=False),
        sa.Column('old_vm_state', sa.String(length=32), nullable=False),
        sa.Column('project_id', sa.String(length=64), nullable=False),
        sa.Column('user_id', sa.String(length=64), nullable=False),
        sa.Column('memory_total', sa.Integer(), nullable=True),
        sa.Column('memory_processed', sa.Integer(), nullable=True),
        sa.Column('memory_remaining', sa.Integer(), nullable=True),
        sa.Column('disk_total', sa.Integer(), nullable=True),
        sa.Column('disk_processed', sa.Integer(), nullable=True),
        sa.Column('disk_remaining', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('uuid'),
    )
    op.create_index('ix_migration_instance_status', 'migration',
                    ['instance_uuid', 'status'], unique=False)
    op.create_index('ix_migration_updated', 'migration', ['updated_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_migration_updated', table_name='migration')
    op.drop_index('ix_migration_instance_status', table_name='migration')
    op.drop_table('migration')
