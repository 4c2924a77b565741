-- identity at 0001
-- Written by python -m tools.sqlite_heads: do not edit.
CREATE TABLE alembic_version_identity (
	version_num VARCHAR(32) NOT NULL, 
	CONSTRAINT alembic_version_identity_pkc PRIMARY KEY (version_num)
);
INSERT INTO "alembic_version_identity" VALUES('0001');
CREATE TABLE application_credential (
	id VARCHAR(64) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	user_id VARCHAR(64) NOT NULL, 
	project_id VARCHAR(64) NOT NULL, 
	secret_hash VARCHAR(128) NOT NULL, 
	description TEXT NOT NULL, 
	expires_at DATETIME, 
	unrestricted BOOLEAN NOT NULL, 
	role_ids JSON NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(user_id) REFERENCES user (id) ON DELETE CASCADE, 
	UNIQUE (user_id, name)
);
CREATE TABLE assignment (
	type VARCHAR(16) NOT NULL, 
	actor_id VARCHAR(64) NOT NULL, 
	target_id VARCHAR(64) NOT NULL, 
	role_id VARCHAR(64) NOT NULL, 
	inherited BOOLEAN NOT NULL, 
	PRIMARY KEY (type, actor_id, target_id, role_id, inherited), 
	FOREIGN KEY(role_id) REFERENCES role (id) ON DELETE CASCADE
);
CREATE TABLE domain (
	id VARCHAR(64) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	description TEXT NOT NULL, 
	enabled BOOLEAN NOT NULL, 
	extra JSON NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (name)
);
CREATE TABLE endpoint (
	id VARCHAR(64) NOT NULL, 
	service_id VARCHAR(64) NOT NULL, 
	interface VARCHAR(8) NOT NULL, 
	region_id VARCHAR(255), 
	url TEXT NOT NULL, 
	enabled BOOLEAN NOT NULL, 
	extra JSON NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(region_id) REFERENCES region (id), 
	FOREIGN KEY(service_id) REFERENCES service (id) ON DELETE CASCADE
);
CREATE TABLE "group" (
	id VARCHAR(64) NOT NULL, 
	name VARCHAR(64) NOT NULL, 
	domain_id VARCHAR(64) NOT NULL, 
	description TEXT NOT NULL, 
	extra JSON NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(domain_id) REFERENCES domain (id), 
	UNIQUE (domain_id, name)
);
CREATE TABLE implied_role (
	prior_role_id VARCHAR(64) NOT NULL, 
	implied_role_id VARCHAR(64) NOT NULL, 
	PRIMARY KEY (prior_role_id, implied_role_id), 
	FOREIGN KEY(implied_role_id) REFERENCES role (id) ON DELETE CASCADE, 
	FOREIGN KEY(prior_role_id) REFERENCES role (id) ON DELETE CASCADE
);
CREATE TABLE project (
	id VARCHAR(64) NOT NULL, 
	name VARCHAR(64) NOT NULL, 
	domain_id VARCHAR(64) NOT NULL, 
	parent_id VARCHAR(64), 
	description TEXT NOT NULL, 
	enabled BOOLEAN NOT NULL, 
	tags JSON NOT NULL, 
	extra JSON NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(domain_id) REFERENCES domain (id), 
	FOREIGN KEY(parent_id) REFERENCES project (id), 
	UNIQUE (domain_id, name)
);
CREATE TABLE region (
	id VARCHAR(255) NOT NULL, 
	description TEXT NOT NULL, 
	parent_region_id VARCHAR(255), 
	extra JSON NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(parent_region_id) REFERENCES region (id)
);
CREATE TABLE revocation_event (
	id INTEGER NOT NULL, 
	user_id VARCHAR(64), 
	project_id VARCHAR(64), 
	domain_id VARCHAR(64), 
	audit_id VARCHAR(32), 
	audit_chain_id VARCHAR(32), 
	issued_before DATETIME NOT NULL, 
	revoked_at DATETIME NOT NULL, 
	PRIMARY KEY (id)
);
CREATE TABLE role (
	id VARCHAR(64) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	domain_id VARCHAR(64) NOT NULL, 
	description TEXT NOT NULL, 
	extra JSON NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (domain_id, name)
);
CREATE TABLE service (
	id VARCHAR(64) NOT NULL, 
	type VARCHAR(255) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	description TEXT NOT NULL, 
	enabled BOOLEAN NOT NULL, 
	extra JSON NOT NULL, 
	PRIMARY KEY (id)
);
CREATE TABLE user (
	id VARCHAR(64) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	domain_id VARCHAR(64) NOT NULL, 
	enabled BOOLEAN NOT NULL, 
	password_hash VARCHAR(128), 
	password_created_at DATETIME, 
	default_project_id VARCHAR(64), 
	description TEXT NOT NULL, 
	extra JSON NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(domain_id) REFERENCES domain (id), 
	UNIQUE (domain_id, name)
);
CREATE TABLE user_group_membership (
	user_id VARCHAR(64) NOT NULL, 
	group_id VARCHAR(64) NOT NULL, 
	PRIMARY KEY (user_id, group_id), 
	FOREIGN KEY(group_id) REFERENCES "group" (id) ON DELETE CASCADE, 
	FOREIGN KEY(user_id) REFERENCES user (id) ON DELETE CASCADE
);
CREATE INDEX ix_application_credential_user_id ON application_credential (user_id);
CREATE INDEX ix_assignment_actor_id ON assignment (actor_id);
CREATE INDEX ix_assignment_role_id ON assignment (role_id);
CREATE INDEX ix_assignment_target ON assignment (target_id);
CREATE INDEX ix_endpoint_service_id ON endpoint (service_id);
CREATE INDEX ix_group_domain_id ON "group" (domain_id);
CREATE INDEX ix_project_domain_id ON project (domain_id);
CREATE INDEX ix_project_parent_id ON project (parent_id);
CREATE INDEX ix_revocation_event_audit_chain_id ON revocation_event (audit_chain_id);
CREATE INDEX ix_revocation_event_audit_id ON revocation_event (audit_id);
CREATE INDEX ix_revocation_event_domain_id ON revocation_event (domain_id);
CREATE INDEX ix_revocation_event_project_id ON revocation_event (project_id);
CREATE INDEX ix_revocation_event_revoked_at ON revocation_event (revoked_at);
CREATE INDEX ix_revocation_event_user_id ON revocation_event (user_id);
CREATE INDEX ix_service_type ON service (type);
CREATE INDEX ix_user_domain_id ON user (domain_id);
CREATE INDEX ix_user_group_membership_group_id ON user_group_membership (group_id);
