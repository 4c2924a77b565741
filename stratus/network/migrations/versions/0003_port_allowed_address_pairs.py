"""allowed address pairs of ports (the firewall's anti-spoofing lets them through)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 15:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('network_port_allowed_address_pairs',
    sa.Column('port_id', sa.String(length=36), nullable=False),
    sa.Column('mac_address', sa.String(length=32), nullable=False),
    sa.Column('ip_address', sa.String(length=64), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['port_id'], ['network_ports.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('port_id', 'mac_address', 'ip_address')
    )


def downgrade() -> None:
    op.drop_table('network_port_allowed_address_pairs')
