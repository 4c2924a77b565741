"""volume_volumes.admin_metadata: the keys an admin action sets (``readonly``), which Cinder shows
in the volume's metadata but users cannot change

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 19:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('volume_volumes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('admin_metadata', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('volume_volumes', schema=None) as batch_op:
        batch_op.drop_column('admin_metadata')
