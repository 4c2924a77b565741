"""What the metadata documents are made of, read from compute's database.

``MetadataError`` carries the status the metadata API answers with (a missing or foreign
instance is a 404, a password set twice a 409).
"""

from __future__ import annotations

from sqlalchemy import select

from stratus.compute import passwords
from stratus.compute.hosts import COMPUTE_BINARY
from stratus.compute.metadata.content import InstanceData
from stratus.compute.models import ComputeServiceRecord, Instance, KeyPair
from stratus.core.db import Database


class MetadataError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class MetadataSource:
    """Reads what the documents are made of from compute's database."""

    def __init__(self, db: Database, dhcp_domain: str) -> None:
        self.db = db
        self.dhcp_domain = dhcp_domain

    async def instance(self, instance_id: str, project_id: str) -> InstanceData:
        async with self.db.session() as session:
            row = await session.get(Instance, instance_id)
            if row is None or row.deleted_at is not None or row.project_id != project_id:
                raise MetadataError(404, f"Instance {instance_id} was not found.")
            key_type = "ssh"
            if row.key_name is not None:
                pair = await session.scalar(select(KeyPair).where(
                    KeyPair.user_id == row.user_id, KeyPair.name == row.key_name))
                key_type = pair.type if pair is not None else key_type
            zone = row.availability_zone
            if not zone and row.host:
                zone = await session.scalar(select(ComputeServiceRecord.zone).where(
                    ComputeServiceRecord.host == row.host,
                    ComputeServiceRecord.binary == COMPUTE_BINARY))
            flavor = row.flavor or {}
            return InstanceData(
                uuid=row.uuid, name=row.display_name, hostname=row.hostname,
                project_id=row.project_id, launch_index=row.launch_index,
                availability_zone=zone or "nova", reservation_id=row.reservation_id,
                image_ref=row.image_ref, flavor_name=str(flavor.get("name", "")),
                ephemeral_gb=int(flavor.get("ephemeral", 0) or 0),
                swap_mb=int(flavor.get("swap", 0) or 0),
                metadata=dict(row.server_metadata or {}), key_name=row.key_name,
                key_data=row.key_data, key_type=key_type, user_data=row.user_data,
                security_groups=tuple(row.security_groups or ()),
                network_info=tuple(row.network_info or ()), dhcp_domain=self.dhcp_domain)

    async def password(self, instance_id: str) -> str:
        async with self.db.session() as session:
            return await passwords.get(session, instance_id)

    async def set_password(self, instance_id: str, password: str) -> None:
        async with self.db.transaction() as txn:  # on SQLite, in the queue of writers
            await passwords.set_once(txn.session, instance_id, password)
