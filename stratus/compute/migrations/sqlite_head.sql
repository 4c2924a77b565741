-- compute at 0014
-- Written by python -m tools.sqlite_heads: do not edit.
CREATE TABLE alembic_version_compute (
	version_num VARCHAR(32) NOT NULL, 
	CONSTRAINT alembic_version_compute_pkc PRIMARY KEY (version_num)
);
INSERT INTO "alembic_version_compute" VALUES('0014');
CREATE TABLE allocation (
	consumer_uuid VARCHAR(36) NOT NULL, 
	provider_uuid VARCHAR(36) NOT NULL, 
	resource_class VARCHAR(32) NOT NULL, 
	used INTEGER NOT NULL, 
	PRIMARY KEY (consumer_uuid, provider_uuid, resource_class), 
	FOREIGN KEY(provider_uuid) REFERENCES resource_provider (uuid) ON DELETE CASCADE
);
CREATE TABLE compute_aggregate (
	id INTEGER NOT NULL, 
	uuid VARCHAR(36) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	hosts JSON NOT NULL, 
	metadata JSON NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME, 
	PRIMARY KEY (id), 
	UNIQUE (name), 
	UNIQUE (uuid)
);
CREATE TABLE compute_service (
	id INTEGER NOT NULL, 
	uuid VARCHAR(36) NOT NULL, 
	host VARCHAR(255) NOT NULL, 
	binary VARCHAR(64) NOT NULL, 
	topic VARCHAR(255) NOT NULL, 
	zone VARCHAR(255) NOT NULL, 
	disabled BOOLEAN NOT NULL, 
	disabled_reason VARCHAR(255), 
	forced_down BOOLEAN NOT NULL, 
	report_count INTEGER NOT NULL, 
	last_seen_up DATETIME, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME, 
	PRIMARY KEY (id), 
	UNIQUE (host, binary), 
	UNIQUE (uuid)
);
CREATE TABLE console_auth_token (
	token_hash VARCHAR(64) NOT NULL, 
	instance_uuid VARCHAR(36) NOT NULL, 
	console_type VARCHAR(32) NOT NULL, 
	host VARCHAR(255) NOT NULL, 
	port INTEGER, 
	internal_access_path VARCHAR(255), 
	expires_at DATETIME NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (token_hash)
);
CREATE TABLE flavor (
	id VARCHAR(255) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	vcpus INTEGER NOT NULL, 
	ram INTEGER NOT NULL, 
	disk INTEGER NOT NULL, 
	swap INTEGER NOT NULL, 
	ephemeral INTEGER NOT NULL, 
	rxtx_factor FLOAT NOT NULL, 
	is_public BOOLEAN NOT NULL, 
	disabled BOOLEAN NOT NULL, 
	description TEXT, 
	extra_specs JSON NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (name)
);
CREATE TABLE flavor_access (
	flavor_id VARCHAR(255) NOT NULL, 
	project_id VARCHAR(64) NOT NULL, 
	PRIMARY KEY (flavor_id, project_id), 
	FOREIGN KEY(flavor_id) REFERENCES flavor (id) ON DELETE CASCADE
);
CREATE TABLE instance (
	uuid VARCHAR(36) NOT NULL, 
	display_name VARCHAR(255) NOT NULL, 
	display_description TEXT, 
	hostname VARCHAR(255) NOT NULL, 
	project_id VARCHAR(64) NOT NULL, 
	user_id VARCHAR(64) NOT NULL, 
	reservation_id VARCHAR(64) NOT NULL, 
	launch_index INTEGER NOT NULL, 
	image_ref VARCHAR(255) NOT NULL, 
	flavor_id VARCHAR(255) NOT NULL, 
	flavor JSON NOT NULL, 
	key_name VARCHAR(255), 
	key_data TEXT, 
	user_data TEXT, 
	server_metadata JSON NOT NULL, 
	tags JSON NOT NULL, 
	availability_zone VARCHAR(255), 
	requested_networks JSON, 
	security_groups JSON NOT NULL, 
	network_info JSON NOT NULL, 
	config_drive VARCHAR(8) NOT NULL, 
	access_ip_v4 VARCHAR(64), 
	access_ip_v6 VARCHAR(64), 
	vm_state VARCHAR(32) NOT NULL, 
	task_state VARCHAR(64), 
	power_state INTEGER NOT NULL, 
	progress INTEGER NOT NULL, 
	host VARCHAR(255), 
	node VARCHAR(255), 
	locked BOOLEAN NOT NULL, 
	locked_reason TEXT, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME, 
	launched_at DATETIME, 
	terminated_at DATETIME, 
	deleted_at DATETIME, vcpus INTEGER DEFAULT '0' NOT NULL, memory_mb INTEGER DEFAULT '0' NOT NULL, locked_by VARCHAR(16), system_metadata JSON DEFAULT '{}' NOT NULL, block_device_mapping JSON DEFAULT '[]' NOT NULL, 
	PRIMARY KEY (uuid)
);
CREATE TABLE instance_action (
	id INTEGER NOT NULL, 
	instance_uuid VARCHAR(36) NOT NULL, 
	request_id VARCHAR(64) NOT NULL, 
	action VARCHAR(64) NOT NULL, 
	project_id VARCHAR(64) NOT NULL, 
	user_id VARCHAR(64) NOT NULL, 
	message VARCHAR(255), 
	start_time DATETIME NOT NULL, 
	finish_time DATETIME, 
	updated_at DATETIME, 
	PRIMARY KEY (id), 
	UNIQUE (instance_uuid, request_id)
);
CREATE TABLE instance_action_event (
	id INTEGER NOT NULL, 
	action_id INTEGER NOT NULL, 
	event VARCHAR(255) NOT NULL, 
	host VARCHAR(255), 
	result VARCHAR(32), 
	details TEXT, 
	start_time DATETIME NOT NULL, 
	finish_time DATETIME, 
	PRIMARY KEY (id), 
	FOREIGN KEY(action_id) REFERENCES instance_action (id) ON DELETE CASCADE
);
CREATE TABLE instance_fault (
	id INTEGER NOT NULL, 
	instance_uuid VARCHAR(36) NOT NULL, 
	code INTEGER NOT NULL, 
	message VARCHAR(255) NOT NULL, 
	details TEXT NOT NULL, 
	host VARCHAR(255), 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(instance_uuid) REFERENCES instance (uuid) ON DELETE CASCADE
);
CREATE TABLE instance_password (
	instance_uuid VARCHAR(36) NOT NULL, 
	password TEXT NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (instance_uuid)
);
CREATE TABLE inventory (
	provider_uuid VARCHAR(36) NOT NULL, 
	resource_class VARCHAR(32) NOT NULL, 
	total INTEGER NOT NULL, 
	reserved INTEGER NOT NULL, 
	allocation_ratio FLOAT NOT NULL, 
	max_unit INTEGER NOT NULL, 
	PRIMARY KEY (provider_uuid, resource_class), 
	FOREIGN KEY(provider_uuid) REFERENCES resource_provider (uuid) ON DELETE CASCADE
);
CREATE TABLE key_pair (
	id INTEGER NOT NULL, 
	user_id VARCHAR(64) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	type VARCHAR(8) NOT NULL, 
	public_key TEXT NOT NULL, 
	fingerprint VARCHAR(64) NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (user_id, name)
);
CREATE TABLE migration (
	id INTEGER NOT NULL, 
	uuid VARCHAR(36) NOT NULL, 
	instance_uuid VARCHAR(36) NOT NULL, 
	migration_type VARCHAR(32) NOT NULL, 
	status VARCHAR(32) NOT NULL, 
	source_compute VARCHAR(255), 
	source_node VARCHAR(255), 
	dest_compute VARCHAR(255), 
	dest_node VARCHAR(255), 
	dest_host VARCHAR(255), 
	old_flavor JSON NOT NULL, 
	new_flavor JSON NOT NULL, 
	old_vm_state VARCHAR(32) NOT NULL, 
	project_id VARCHAR(64) NOT NULL, 
	user_id VARCHAR(64) NOT NULL, 
	memory_total INTEGER, 
	memory_processed INTEGER, 
	memory_remaining INTEGER, 
	disk_total INTEGER, 
	disk_processed INTEGER, 
	disk_remaining INTEGER, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME, 
	PRIMARY KEY (id), 
	UNIQUE (uuid)
);
CREATE TABLE quota_limit (
	project_id VARCHAR(64) NOT NULL, 
	resource VARCHAR(64) NOT NULL, 
	hard_limit INTEGER NOT NULL, 
	PRIMARY KEY (project_id, resource)
);
CREATE TABLE resource_provider (
	uuid VARCHAR(36) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	generation INTEGER NOT NULL, 
	hypervisor_type VARCHAR(64) NOT NULL, 
	cpu_arch VARCHAR(32) NOT NULL, 
	aggregate_metadata JSON NOT NULL, 
	updated_at DATETIME, 
	PRIMARY KEY (uuid), 
	UNIQUE (name)
);
CREATE TABLE server_group (
	uuid VARCHAR(36) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	policy VARCHAR(32) NOT NULL, 
	rules JSON NOT NULL, 
	project_id VARCHAR(64) NOT NULL, 
	user_id VARCHAR(64) NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (uuid)
);
CREATE TABLE server_group_member (
	group_uuid VARCHAR(36) NOT NULL, 
	instance_uuid VARCHAR(36) NOT NULL, 
	PRIMARY KEY (group_uuid, instance_uuid), 
	FOREIGN KEY(group_uuid) REFERENCES server_group (uuid) ON DELETE CASCADE
);
CREATE INDEX ix_allocation_provider_class_used ON allocation (provider_uuid, resource_class, used);
CREATE INDEX ix_console_auth_token_expires_at ON console_auth_token (expires_at);
CREATE INDEX ix_console_auth_token_instance_uuid ON console_auth_token (instance_uuid);
CREATE INDEX ix_flavor_access_project_id ON flavor_access (project_id);
CREATE INDEX ix_instance_action_event_action_id ON instance_action_event (action_id);
CREATE INDEX ix_instance_action_instance_uuid ON instance_action (instance_uuid);
CREATE INDEX ix_instance_fault_instance_uuid ON instance_fault (instance_uuid);
CREATE INDEX ix_instance_host ON instance (host);
CREATE INDEX ix_instance_project_live ON instance (project_id, deleted_at, created_at, uuid, vcpus, memory_mb);
CREATE INDEX ix_instance_reservation_id ON instance (reservation_id);
CREATE INDEX ix_key_pair_user_id ON key_pair (user_id);
CREATE INDEX ix_migration_instance_status ON migration (instance_uuid, status);
CREATE INDEX ix_migration_updated ON migration (updated_at);
CREATE INDEX ix_server_group_member_instance_uuid ON server_group_member (instance_uuid);
CREATE INDEX ix_server_group_project_id ON server_group (project_id);
