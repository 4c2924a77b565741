"""network_ports: an index in the lists' default order (created_at, id)

Without it a page of ports, the first or one after a marker, read and sorted every port.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 22:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_network_ports_created', 'network_ports', ['created_at', 'id'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_network_ports_created', table_name='network_ports')
