"""console_auth_token: one-time console tokens (hashed) for the console proxy

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 16:55:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'console_auth_token',
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('instance_uuid', sa.String(length=36), nullable=False),
        sa.Column('console_type', sa.String(length=32), nullable=False),
        sa.Column('host', sa.String(length=255), nullable=False),
        sa.Column('port', sa.Integer(), nullable=True),
        sa.Column('internal_access_path', sa.String(length=255), nullable=True),
        sa.Column('expires_at', sa.DateTime(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('token_hash'),
    )
    op.create_index('ix_console_auth_token_instance_uuid', 'console_auth_token',
                    ['instance_uuid'])
    op.create_index('ix_console_auth_token_expires_at', 'console_auth_token', ['expires_at'])


def downgrade() -> None:
    op.drop_index('ix_console_auth_token_expires_at', table_name='console_auth_token')
    op.drop_index('ix_console_auth_token_instance_uuid', table_name='console_auth_token')
    op.drop_table('console_auth_token')
