"""metadef_namespace: the metadata definitions catalog, with the namespaces Stratus ships

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 01:40:00

The seeded namespaces describe the image properties Stratus itself acts on (the scheduler's
architecture and hypervisor filters) and the common descriptive ones clients show. They are
protected and public; an admin may unprotect and delete them like any other.
"""

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_IMAGE = {"name": "OS::Glance::Image"}
#: A volume made from an image keeps the image's properties as its image metadata.
_VOLUME = {"name": "OS::Cinder::Volume", "properties_target": "image"}

SEEDED: list[dict[str, Any]] = [
    {
        "namespace": "OS::Compute::Architecture",
        "display_name": "CPU Architecture",
        "description": "The CPU architecture the guest's software is built for. The "
                       "scheduler places a server booted from the image only on a host of "
                       "that architecture.",
        "associations": [_IMAGE, _VOLUME],
        "properties": {
            "hw_architecture": {
                "title": "Architecture", "type": "string",
                "description": "The architecture the image needs, as the kernel names it "
                               "(uname -m).",
                "enum": ["x86_64", "aarch64", "i686", "ppc64le", "s390x", "riscv64"],
            },
        },
    },
    {
        "namespace": "OS::Compute::Hypervisor",
        "display_name": "Hypervisor Type",
        "description": "The hypervisor the image is made for. The scheduler places a "
                       "server booted from the image only on hosts of that hypervisor type "
                       "(as the hypervisors list shows it).",
        "associations": [_IMAGE],
        "properties": {
            "img_hv_type": {
                "title": "Hypervisor Type", "type": "string",
                "description": "The hypervisor type a host must have: QEMU for the libvirt "
                               "driver, fake for the test driver.",
                "enum": ["QEMU", "fake"],
            },
        },
    },
    {
        "namespace": "OS::Glance::CommonImageProperties",
        "display_name": "Common Image Properties",
        "description": "Descriptive properties many clients show and filter by; the cloud "
                       "stores them but does not act on them.",
        "associations": [_IMAGE, _VOLUME],
        "properties": {
            "os_distro": {
                "title": "OS Distro", "type": "string",
                "description": "The operating system distribution, in lower case (for "
                               "example debian, ubuntu, fedora, centos, windows).",
            },
            "os_version": {
                "title": "OS Version", "type": "string",
                "description": "The distribution's version (for example 12 or 24.04).",
            },
            "os_admin_user": {
                "title": "Admin User", "type": "string",
                "description": "The user name of the guest's administrative account.",
            },
        },
    },
]


def upgrade() -> None:
    table = op.create_table('metadef_namespace',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('namespace', sa.String(length=80), nullable=False),
    sa.Column('display_name', sa.String(length=80), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('visibility', sa.String(length=20), nullable=False),
    sa.Column('protected', sa.Boolean(), nullable=False),
    sa.Column('owner', sa.String(length=64), nullable=True),
    sa.Column('resource_type_associations', sa.JSON(), nullable=False),
    sa.Column('properties', sa.JSON(), nullable=False),
    sa.Column('objects', sa.JSON(), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('namespace')
    )
    with op.batch_alter_table('metadef_namespace', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_metadef_namespace_created_at'), ['created_at'],
                              unique=False)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    op.bulk_insert(table, [{
        "id": str(uuid.uuid4()), "namespace": seed["namespace"],
        "display_name": seed["display_name"], "description": seed["description"],
        "visibility": "public", "protected": True, "owner": None,
        "resource_type_associations": [{**a, "created_at": stamp, "updated_at": stamp}
                                       for a in seed["associations"]],
        "properties": seed["properties"], "objects": [], "tags": [],
        "created_at": now, "updated_at": now,
    } for seed in SEEDED])


def downgrade() -> None:
    with op.batch_alter_table('metadef_namespace', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_metadef_namespace_created_at'))
    op.drop_table('metadef_namespace')
