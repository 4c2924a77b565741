-- volume at 0004
-- Written by python -m tools.sqlite_heads: do not edit.
CREATE TABLE alembic_version_volume (
	version_num VARCHAR(32) NOT NULL, 
	CONSTRAINT alembic_version_volume_pkc PRIMARY KEY (version_num)
);
INSERT INTO "alembic_version_volume" VALUES('0004');
CREATE TABLE volume_attachments (
	id VARCHAR(36) NOT NULL, 
	volume_id VARCHAR(36) NOT NULL, 
	instance_uuid VARCHAR(36), 
	attached_host VARCHAR(255), 
	mountpoint VARCHAR(255), 
	attach_mode VARCHAR(8) NOT NULL, 
	attach_status VARCHAR(32) NOT NULL, 
	connector JSON, 
	connection_info JSON, 
	attach_time DATETIME, 
	detach_time DATETIME, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME, 
	deleted_at DATETIME, 
	PRIMARY KEY (id), 
	FOREIGN KEY(volume_id) REFERENCES volume_volumes (id)
);
CREATE TABLE volume_quotas (
	project_id VARCHAR(64) NOT NULL, 
	resource VARCHAR(64) NOT NULL, 
	hard_limit INTEGER NOT NULL, 
	PRIMARY KEY (project_id, resource)
);
CREATE TABLE volume_services (
	host VARCHAR(255) NOT NULL, 
	backend VARCHAR(64) NOT NULL, 
	availability_zone VARCHAR(255) NOT NULL, 
	disabled BOOLEAN NOT NULL, 
	last_seen_up DATETIME NOT NULL, 
	created_at DATETIME NOT NULL, capabilities JSON, 
	PRIMARY KEY (host)
);
CREATE TABLE volume_snapshots (
	id VARCHAR(36) NOT NULL, 
	project_id VARCHAR(64) NOT NULL, 
	user_id VARCHAR(64), 
	volume_id VARCHAR(36) NOT NULL, 
	name VARCHAR(255), 
	description TEXT, 
	size INTEGER NOT NULL, 
	status VARCHAR(32) NOT NULL, 
	metadata JSON NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME, 
	deleted_at DATETIME, 
	PRIMARY KEY (id), 
	FOREIGN KEY(volume_id) REFERENCES volume_volumes (id)
);
CREATE TABLE volume_transfers (
	id VARCHAR(36) NOT NULL, 
	volume_id VARCHAR(36) NOT NULL, 
	name VARCHAR(255), 
	salt VARCHAR(64) NOT NULL, 
	key_hash VARCHAR(128) NOT NULL, 
	source_project_id VARCHAR(64) NOT NULL, 
	destination_project_id VARCHAR(64), 
	no_snapshots BOOLEAN NOT NULL, 
	accepted BOOLEAN NOT NULL, 
	created_at DATETIME NOT NULL, 
	deleted_at DATETIME, 
	PRIMARY KEY (id), 
	FOREIGN KEY(volume_id) REFERENCES volume_volumes (id)
);
CREATE TABLE volume_types (
	id VARCHAR(36) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	description TEXT, 
	is_public BOOLEAN NOT NULL, 
	extra_specs JSON NOT NULL, 
	created_at DATETIME NOT NULL, 
	deleted_at DATETIME, 
	PRIMARY KEY (id), 
	UNIQUE (name)
);
CREATE TABLE volume_volumes (
	id VARCHAR(36) NOT NULL, 
	project_id VARCHAR(64) NOT NULL, 
	user_id VARCHAR(64), 
	name VARCHAR(255), 
	description TEXT, 
	size INTEGER NOT NULL, 
	status VARCHAR(32) NOT NULL, 
	attach_status VARCHAR(32) NOT NULL, 
	availability_zone VARCHAR(255) NOT NULL, 
	host VARCHAR(255), 
	volume_type_id VARCHAR(36), 
	snapshot_id VARCHAR(36), 
	source_volid VARCHAR(36), 
	image_id VARCHAR(36), 
	bootable BOOLEAN NOT NULL, 
	readonly BOOLEAN NOT NULL, 
	multiattach BOOLEAN NOT NULL, 
	metadata JSON NOT NULL, 
	image_metadata JSON NOT NULL, 
	error_reason TEXT, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME, 
	deleted_at DATETIME, admin_metadata JSON, 
	PRIMARY KEY (id), 
	FOREIGN KEY(volume_type_id) REFERENCES volume_types (id)
);
CREATE INDEX ix_volume_attachments_instance_uuid ON volume_attachments (instance_uuid);
CREATE INDEX ix_volume_attachments_volume_id ON volume_attachments (volume_id);
CREATE INDEX ix_volume_snapshots_project_id ON volume_snapshots (project_id);
CREATE INDEX ix_volume_snapshots_volume_id ON volume_snapshots (volume_id);
CREATE INDEX ix_volume_transfers_source_project_id ON volume_transfers (source_project_id);
CREATE INDEX ix_volume_transfers_volume_id ON volume_transfers (volume_id);
CREATE INDEX ix_volume_volumes_project_deleted ON volume_volumes (project_id, deleted_at);
