"""network_ip_allocations, network_port_allowed_address_pairs: indexes on ip_address

The l2-agents ask which of some addresses are members of a group after every burst of port
creates in it; without these the question read every member of the group (the group's
links, then each port's addresses) instead of the addresses asked about.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 07:45:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_network_ip_allocations_ip_address', 'network_ip_allocations',
                    ['ip_address'], unique=False)
    op.create_index('ix_network_port_allowed_address_pairs_ip_address',
                    'network_port_allowed_address_pairs', ['ip_address'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_network_port_allowed_address_pairs_ip_address',
                  table_name='network_port_allowed_address_pairs')
    op.drop_index('ix_network_ip_allocations_ip_address', table_name='network_ip_allocations')
