-- network at 0006
-- Written by python -m tools.sqlite_heads: do not edit.
CREATE TABLE alembic_version_network (
	version_num VARCHAR(32) NOT NULL, 
	CONSTRAINT alembic_version_network_pkc PRIMARY KEY (version_num)
);
INSERT INTO "alembic_version_network" VALUES('0006');
CREATE TABLE network_agents (
	id VARCHAR(36) NOT NULL, 
	agent_type VARCHAR(255) NOT NULL, 
	binary VARCHAR(255) NOT NULL, 
	topic VARCHAR(255) NOT NULL, 
	host VARCHAR(255) NOT NULL, 
	availability_zone VARCHAR(255), 
	admin_state_up BOOLEAN NOT NULL, 
	description VARCHAR(255) NOT NULL, 
	configurations JSON NOT NULL, 
	created_at DATETIME NOT NULL, 
	started_at DATETIME NOT NULL, 
	heartbeat_timestamp DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_network_agents_type_host UNIQUE (agent_type, host)
);
CREATE TABLE network_default_security_groups (
	project_id VARCHAR(64) NOT NULL, 
	security_group_id VARCHAR(36) NOT NULL, 
	PRIMARY KEY (project_id), 
	FOREIGN KEY(security_group_id) REFERENCES network_security_groups (id) ON DELETE CASCADE
);
CREATE TABLE network_floatingips (
	floating_ip_address VARCHAR(64) NOT NULL, 
	floating_network_id VARCHAR(36) NOT NULL, 
	floating_port_id VARCHAR(36) NOT NULL, 
	fixed_port_id VARCHAR(36), 
	fixed_ip_address VARCHAR(64), 
	router_id VARCHAR(36), 
	status VARCHAR(16) NOT NULL, 
	tags JSON NOT NULL, 
	id VARCHAR(36) NOT NULL, 
	project_id VARCHAR(64) NOT NULL, 
	description VARCHAR(255) NOT NULL, 
	revision_number INTEGER NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(fixed_port_id) REFERENCES network_ports (id) ON DELETE SET NULL, 
	FOREIGN KEY(floating_network_id) REFERENCES network_networks (id), 
	FOREIGN KEY(floating_port_id) REFERENCES network_ports (id) ON DELETE CASCADE, 
	FOREIGN KEY(router_id) REFERENCES network_routers (id) ON DELETE SET NULL, 
	CONSTRAINT uq_network_floatingips_fixed UNIQUE (floating_network_id, fixed_port_id, fixed_ip_address), 
	UNIQUE (floating_port_id)
);
CREATE TABLE network_ip_allocations (
	subnet_id VARCHAR(36) NOT NULL, 
	ip_address VARCHAR(64) NOT NULL, 
	port_id VARCHAR(36) NOT NULL, 
	network_id VARCHAR(36) NOT NULL, 
	position INTEGER NOT NULL, 
	PRIMARY KEY (subnet_id, ip_address), 
	FOREIGN KEY(port_id) REFERENCES network_ports (id) ON DELETE CASCADE, 
	FOREIGN KEY(subnet_id) REFERENCES network_subnets (id) ON DELETE CASCADE
);
CREATE TABLE network_networks (
	id VARCHAR(36) NOT NULL, 
	project_id VARCHAR(64) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	description VARCHAR(255) NOT NULL, 
	admin_state_up BOOLEAN NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	shared BOOLEAN NOT NULL, 
	router_external BOOLEAN NOT NULL, 
	port_security_enabled BOOLEAN NOT NULL, 
	mtu INTEGER NOT NULL, 
	network_type VARCHAR(32) NOT NULL, 
	physical_network VARCHAR(64), 
	segmentation_id INTEGER, 
	availability_zone_hints JSON NOT NULL, 
	tags JSON NOT NULL, 
	revision_number INTEGER NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (id)
);
CREATE TABLE network_port_allowed_address_pairs (
	port_id VARCHAR(36) NOT NULL, 
	mac_address VARCHAR(32) NOT NULL, 
	ip_address VARCHAR(64) NOT NULL, 
	position INTEGER NOT NULL, 
	PRIMARY KEY (port_id, mac_address, ip_address), 
	FOREIGN KEY(port_id) REFERENCES network_ports (id) ON DELETE CASCADE
);
CREATE TABLE network_port_security_groups (
	port_id VARCHAR(36) NOT NULL, 
	security_group_id VARCHAR(36) NOT NULL, 
	PRIMARY KEY (port_id, security_group_id), 
	FOREIGN KEY(port_id) REFERENCES network_ports (id) ON DELETE CASCADE, 
	FOREIGN KEY(security_group_id) REFERENCES network_security_groups (id) ON DELETE RESTRICT
);
CREATE TABLE network_ports (
	id VARCHAR(36) NOT NULL, 
	network_id VARCHAR(36) NOT NULL, 
	project_id VARCHAR(64) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	description VARCHAR(255) NOT NULL, 
	mac_address VARCHAR(32) NOT NULL, 
	admin_state_up BOOLEAN NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	device_id VARCHAR(255) NOT NULL, 
	device_owner VARCHAR(255) NOT NULL, 
	binding_host_id VARCHAR(255) NOT NULL, 
	binding_vnic_type VARCHAR(32) NOT NULL, 
	binding_profile JSON NOT NULL, 
	dns_name VARCHAR(255) NOT NULL, 
	port_security_enabled BOOLEAN NOT NULL, 
	tags JSON NOT NULL, 
	revision_number INTEGER NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(network_id) REFERENCES network_networks (id) ON DELETE CASCADE, 
	CONSTRAINT uq_network_ports_network_mac UNIQUE (network_id, mac_address)
);
CREATE TABLE network_quotas (
	project_id VARCHAR(64) NOT NULL, 
	resource VARCHAR(64) NOT NULL, 
	hard_limit INTEGER NOT NULL, 
	PRIMARY KEY (project_id, resource)
);
CREATE TABLE network_router_routes (
	router_id VARCHAR(36) NOT NULL, 
	destination VARCHAR(64) NOT NULL, 
	nexthop VARCHAR(64) NOT NULL, 
	position INTEGER NOT NULL, 
	PRIMARY KEY (router_id, destination, nexthop), 
	FOREIGN KEY(router_id) REFERENCES network_routers (id) ON DELETE CASCADE
);
CREATE TABLE network_routers (
	name VARCHAR(255) NOT NULL, 
	admin_state_up BOOLEAN NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	enable_snat BOOLEAN NOT NULL, 
	gw_port_id VARCHAR(36), 
	l3_agent_host VARCHAR(255) NOT NULL, 
	availability_zone_hints JSON NOT NULL, 
	tags JSON NOT NULL, 
	id VARCHAR(36) NOT NULL, 
	project_id VARCHAR(64) NOT NULL, 
	description VARCHAR(255) NOT NULL, 
	revision_number INTEGER NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(gw_port_id) REFERENCES network_ports (id) ON DELETE SET NULL
);
CREATE TABLE network_security_group_rules (
	id VARCHAR(36) NOT NULL, 
	security_group_id VARCHAR(36) NOT NULL, 
	project_id VARCHAR(64) NOT NULL, 
	direction VARCHAR(16) NOT NULL, 
	ethertype VARCHAR(8) NOT NULL, 
	protocol VARCHAR(40), 
	port_range_min INTEGER, 
	port_range_max INTEGER, 
	remote_ip_prefix VARCHAR(64), 
	remote_group_id VARCHAR(36), 
	description VARCHAR(255) NOT NULL, 
	fingerprint VARCHAR(512) NOT NULL, 
	revision_number INTEGER NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(security_group_id) REFERENCES network_security_groups (id) ON DELETE CASCADE, 
	CONSTRAINT uq_network_sg_rules_fingerprint UNIQUE (security_group_id, fingerprint)
);
CREATE TABLE network_security_groups (
	id VARCHAR(36) NOT NULL, 
	project_id VARCHAR(64) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	description VARCHAR(255) NOT NULL, 
	stateful BOOLEAN NOT NULL, 
	tags JSON NOT NULL, 
	revision_number INTEGER NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (id)
);
CREATE TABLE network_subnetpools (
	name VARCHAR(255) NOT NULL, 
	ip_version INTEGER NOT NULL, 
	prefixes JSON NOT NULL, 
	min_prefixlen INTEGER NOT NULL, 
	max_prefixlen INTEGER NOT NULL, 
	default_prefixlen INTEGER NOT NULL, 
	shared BOOLEAN NOT NULL, 
	is_default BOOLEAN NOT NULL, 
	default_quota INTEGER, 
	tags JSON NOT NULL, 
	id VARCHAR(36) NOT NULL, 
	project_id VARCHAR(64) NOT NULL, 
	description VARCHAR(255) NOT NULL, 
	revision_number INTEGER NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (id)
);
CREATE TABLE "network_subnets" (
	id VARCHAR(36) NOT NULL, 
	network_id VARCHAR(36) NOT NULL, 
	project_id VARCHAR(64) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	description VARCHAR(255) NOT NULL, 
	ip_version INTEGER NOT NULL, 
	cidr VARCHAR(64) NOT NULL, 
	gateway_ip VARCHAR(64), 
	enable_dhcp BOOLEAN NOT NULL, 
	dns_nameservers JSON NOT NULL, 
	host_routes JSON NOT NULL, 
	allocation_pools JSON NOT NULL, 
	tags JSON NOT NULL, 
	revision_number INTEGER NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	subnetpool_id VARCHAR(36), 
	PRIMARY KEY (id), 
	CONSTRAINT fk_network_subnets_subnetpool_id FOREIGN KEY(subnetpool_id) REFERENCES network_subnetpools (id), 
	FOREIGN KEY(network_id) REFERENCES network_networks (id) ON DELETE CASCADE
);
CREATE INDEX ix_network_agents_host ON network_agents (host);
CREATE INDEX ix_network_floatingips_fixed_port_id ON network_floatingips (fixed_port_id);
CREATE INDEX ix_network_floatingips_floating_ip_address ON network_floatingips (floating_ip_address);
CREATE INDEX ix_network_floatingips_floating_network_id ON network_floatingips (floating_network_id);
CREATE INDEX ix_network_floatingips_project_id ON network_floatingips (project_id);
CREATE INDEX ix_network_floatingips_router_id ON network_floatingips (router_id);
CREATE INDEX ix_network_ip_allocations_ip_address ON network_ip_allocations (ip_address);
CREATE INDEX ix_network_ip_allocations_network_id ON network_ip_allocations (network_id);
CREATE INDEX ix_network_ip_allocations_port_id ON network_ip_allocations (port_id);
CREATE INDEX ix_network_networks_name ON network_networks (name);
CREATE INDEX ix_network_networks_project_id ON network_networks (project_id);
CREATE INDEX ix_network_networks_shared ON network_networks (shared);
CREATE INDEX ix_network_port_allowed_address_pairs_ip_address ON network_port_allowed_address_pairs (ip_address);
CREATE INDEX ix_network_port_security_groups_security_group_id ON network_port_security_groups (security_group_id);
CREATE INDEX ix_network_ports_binding_host_id ON network_ports (binding_host_id);
CREATE INDEX ix_network_ports_created ON network_ports (created_at, id);
CREATE INDEX ix_network_ports_device_id ON network_ports (device_id);
CREATE INDEX ix_network_ports_device_owner ON network_ports (device_owner);
CREATE INDEX ix_network_ports_network_id ON network_ports (network_id);
CREATE INDEX ix_network_ports_project_id ON network_ports (project_id);
CREATE INDEX ix_network_routers_gw_port_id ON network_routers (gw_port_id);
CREATE INDEX ix_network_routers_l3_agent_host ON network_routers (l3_agent_host);
CREATE INDEX ix_network_routers_name ON network_routers (name);
CREATE INDEX ix_network_routers_project_id ON network_routers (project_id);
CREATE INDEX ix_network_security_group_rules_project_id ON network_security_group_rules (project_id);
CREATE INDEX ix_network_security_group_rules_security_group_id ON network_security_group_rules (security_group_id);
CREATE INDEX ix_network_security_groups_name ON network_security_groups (name);
CREATE INDEX ix_network_security_groups_project_id ON network_security_groups (project_id);
CREATE INDEX ix_network_subnetpools_project_id ON network_subnetpools (project_id);
CREATE INDEX ix_network_subnetpools_shared ON network_subnetpools (shared);
CREATE INDEX ix_network_subnets_network_id ON network_subnets (network_id);
CREATE INDEX ix_network_subnets_project_id ON network_subnets (project_id);
CREATE INDEX ix_network_subnets_subnetpool_id ON network_subnets (subnetpool_id);
