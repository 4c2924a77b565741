"""instance vcpus and memory_mb columns, for quota usage summed in SQL

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 05:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('instance', schema=None) as batch_op:
        batch_op.add_column(sa.Column('vcpus', sa.Integer(), nullable=False,
                                      server_default='0'))
        batch_op.add_column(sa.Column('memory_mb', sa.Integer(), nullable=False,
                                      server_default='0'))
    # Rows from before: copy the numbers out of the flavor each instance was booted with.
    instance = sa.table('instance', sa.column('uuid', sa.String), sa.column('flavor', sa.JSON),
                        sa.column('vcpus', sa.Integer), sa.column('memory_mb', sa.Integer))
    bind = op.get_bind()
    for uuid, flavor in bind.execute(sa.select(instance.c.uuid, instance.c.flavor)).all():
        flavor = flavor or {}
        bind.execute(instance.update().where(instance.c.uuid == uuid).values(
            vcpus=int(flavor.get('vcpus', 0)), memory_mb=int(flavor.get('ram', 0))))


def downgrade() -> None:
    with op.batch_alter_table('instance', schema=None) as batch_op:
        batch_op.drop_column('memory_mb')
        batch_op.drop_column('vcpus')
