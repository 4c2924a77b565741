"""indexes that keep lists, quota usage and claims flat as servers grow

A project's server list is a range of ``ix_instance_project_live`` (project, deleted,
created_at, uuid: the list's default order), where before every live row of the project
was read and sorted; its vcpus and memory_mb make the quota usage an index-only sum. The allocation
index carries ``used``: a claim's provider usage and the scheduler's host states are
summed from the index alone.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 22:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_instance_project_live', 'instance',
                    ['project_id', 'deleted_at', 'created_at', 'uuid', 'vcpus',
                     'memory_mb'], unique=False)
    op.drop_index('ix_instance_project_deleted', table_name='instance')
    op.create_index('ix_allocation_provider_class_used', 'allocation',
                    ['provider_uuid', 'resource_class', 'used'], unique=False)
    op.drop_index('ix_allocation_provider_class', table_name='allocation')


def downgrade() -> None:
    op.create_index('ix_allocation_provider_class', 'allocation',
                    ['provider_uuid', 'resource_class'], unique=False)
    op.drop_index('ix_allocation_provider_class_used', table_name='allocation')
    op.create_index('ix_instance_project_deleted', 'instance', ['project_id', 'deleted_at'],
                    unique=False)
    op.drop_index('ix_instance_project_live', table_name='instance')
