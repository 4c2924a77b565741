"""volume_services.capabilities: what each host's backend can do (image formats it can
write, host programs it lacks), so volume-api refuses what no host can do

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('volume_services', schema=None) as batch_op:
        batch_op.add_column(sa.Column('capabilities', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('volume_services', schema=None) as batch_op:
        batch_op.drop_column('capabilities')
