"""subnet pools, and the pool a subnet's CIDR came from

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 22:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('network_subnetpools',
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('ip_version', sa.Integer(), nullable=False),
    sa.Column('prefixes', sa.JSON(), nullable=False),
    sa.Column('min_prefixlen', sa.Integer(), nullable=False),
    sa.Column('max_prefixlen', sa.Integer(), nullable=False),
    sa.Column('default_prefixlen', sa.Integer(), nullable=False),
    sa.Column('shared', sa.Boolean(), nullable=False),
    sa.Column('is_default', sa.Boolean(), nullable=False),
    sa.Column('default_quota', sa.Integer(), nullable=True),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('project_id', sa.String(length=64), nullable=False),
    sa.Column('description', sa.String(length=255), nullable=False),
    sa.Column('revision_number', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_network_subnetpools_project_id'), 'network_subnetpools',
                    ['project_id'], unique=False)
    op.create_index(op.f('ix_network_subnetpools_shared'), 'network_subnetpools',
                    ['shared'], unique=False)
    with op.batch_alter_table('network_subnets') as batch:
        batch.add_column(sa.Column('subnetpool_id', sa.String(length=36), nullable=True))
        batch.create_index(batch.f('ix_network_subnets_subnetpool_id'), ['subnetpool_id'],
                           unique=False)
        batch.create_foreign_key('fk_network_subnets_subnetpool_id', 'network_subnetpools',
                                 ['subnetpool_id'], ['id'])


def downgrade() -> None:
    with op.batch_alter_table('network_subnets') as batch:
        batch.drop_constraint('fk_network_subnets_subnetpool_id', type_='foreignkey')
        batch.drop_index(batch.f('ix_network_subnets_subnetpool_id'))
        batch.drop_column('subnetpool_id')
    op.drop_index(op.f('ix_network_subnetpools_shared'), table_name='network_subnetpools')
    op.drop_index(op.f('ix_network_subnetpools_project_id'),
                  table_name='network_subnetpools')
    op.drop_table('network_subnetpools')
