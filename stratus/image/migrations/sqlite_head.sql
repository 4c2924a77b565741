-- image at 0003
-- Written by python -m tools.sqlite_heads: do not edit.
CREATE TABLE alembic_version_image (
	version_num VARCHAR(32) NOT NULL, 
	CONSTRAINT alembic_version_image_pkc PRIMARY KEY (version_num)
);
INSERT INTO "alembic_version_image" VALUES('0003');
CREATE TABLE image (
	id VARCHAR(36) NOT NULL, 
	name VARCHAR(255), 
	owner VARCHAR(64), 
	status VARCHAR(30) NOT NULL, 
	visibility VARCHAR(20) NOT NULL, 
	protected BOOLEAN NOT NULL, 
	os_hidden BOOLEAN NOT NULL, 
	disk_format VARCHAR(20), 
	container_format VARCHAR(20), 
	size BIGINT, 
	virtual_size BIGINT, 
	checksum VARCHAR(32), 
	os_hash_algo VARCHAR(64), 
	os_hash_value VARCHAR(128), 
	min_disk INTEGER NOT NULL, 
	min_ram INTEGER NOT NULL, 
	location TEXT, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (id)
);
CREATE TABLE image_member (
	image_id VARCHAR(36) NOT NULL, 
	member VARCHAR(64) NOT NULL, 
	status VARCHAR(20) NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (image_id, member), 
	FOREIGN KEY(image_id) REFERENCES image (id) ON DELETE CASCADE
);
CREATE TABLE image_property (
	image_id VARCHAR(36) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	value TEXT NOT NULL, 
	PRIMARY KEY (image_id, name), 
	FOREIGN KEY(image_id) REFERENCES image (id) ON DELETE CASCADE
);
CREATE TABLE image_tag (
	image_id VARCHAR(36) NOT NULL, 
	value VARCHAR(255) NOT NULL, 
	PRIMARY KEY (image_id, value), 
	FOREIGN KEY(image_id) REFERENCES image (id) ON DELETE CASCADE
);
CREATE TABLE metadef_namespace (
	id VARCHAR(36) NOT NULL, 
	namespace VARCHAR(80) NOT NULL, 
	display_name VARCHAR(80), 
	description TEXT, 
	visibility VARCHAR(20) NOT NULL, 
	protected BOOLEAN NOT NULL, 
	owner VARCHAR(64), 
	resource_type_associations JSON NOT NULL, 
	properties JSON NOT NULL, 
	objects JSON NOT NULL, 
	tags JSON NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (namespace)
);
INSERT INTO "metadef_namespace" VALUES('@@uuid:1@@','OS::Compute::Architecture','CPU Architecture','The CPU architecture the guest''s software is built for. The scheduler places a server booted from the image only on a host of that architecture.','public',1,NULL,'[{"name": "OS::Glance::Image", "created_at": "@@now|%Y-%m-%dT%H:%M:%SZ@@", "updated_at": "@@now|%Y-%m-%dT%H:%M:%SZ@@"}, {"name": "OS::Cinder::Volume", "properties_target": "image", "created_at": "@@now|%Y-%m-%dT%H:%M:%SZ@@", "updated_at": "@@now|%Y-%m-%dT%H:%M:%SZ@@"}]','{"hw_architecture": {"title": "Architecture", "type": "string", "description": "The architecture the image needs, as the kernel names it (uname -m).", "enum": ["x86_64", "aarch64", "i686", "ppc64le", "s390x", "riscv64"]}}','[]','[]','@@now|%Y-%m-%d %H:%M:%S.000000@@','@@now|%Y-%m-%d %H:%M:%S.000000@@');
INSERT INTO "metadef_namespace" VALUES('@@uuid:2@@','OS::Compute::Hypervisor','Hypervisor Type','The hypervisor the image is made for. The scheduler places a server booted from the image only on hosts of that hypervisor type (as the hypervisors list shows it).','public',1,NULL,'[{"name": "OS::Glance::Image", "created_at": "@@now|%Y-%m-%dT%H:%M:%SZ@@", "updated_at": "@@now|%Y-%m-%dT%H:%M:%SZ@@"}]','{"img_hv_type": {"title": "Hypervisor Type", "type": "string", "description": "The hypervisor type a host must have: QEMU for the libvirt driver, fake for the test driver.", "enum": ["QEMU", "fake"]}}','[]','[]','@@now|%Y-%m-%d %H:%M:%S.000000@@','@@now|%Y-%m-%d %H:%M:%S.000000@@');
INSERT INTO "metadef_namespace" VALUES('@@uuid:3@@','OS::Glance::CommonImageProperties','Common Image Properties','Descriptive properties many clients show and filter by; the cloud stores them but does not act on them.','public',1,NULL,'[{"name": "OS::Glance::Image", "created_at": "@@now|%Y-%m-%dT%H:%M:%SZ@@", "updated_at": "@@now|%Y-%m-%dT%H:%M:%SZ@@"}, {"name": "OS::Cinder::Volume", "properties_target": "image", "created_at": "@@now|%Y-%m-%dT%H:%M:%SZ@@", "updated_at": "@@now|%Y-%m-%dT%H:%M:%SZ@@"}]','{"os_distro": {"title": "OS Distro", "type": "string", "description": "The operating system distribution, in lower case (for example debian, ubuntu, fedora, centos, windows)."}, "os_version": {"title": "OS Version", "type": "string", "description": "The distribution''s version (for example 12 or 24.04)."}, "os_admin_user": {"title": "Admin User", "type": "string", "description": "The user name of the guest''s administrative account."}}','[]','[]','@@now|%Y-%m-%d %H:%M:%S.000000@@','@@now|%Y-%m-%d %H:%M:%S.000000@@');
CREATE INDEX ix_image_created_at ON image (created_at);
CREATE INDEX ix_image_member_member ON image_member (member);
CREATE INDEX ix_image_name ON image (name);
CREATE INDEX ix_image_os_hash_value ON image (os_hash_value);
CREATE INDEX ix_image_owner ON image (owner);
CREATE INDEX ix_image_status ON image (status);
CREATE INDEX ix_image_tag_value ON image_tag (value);
CREATE INDEX ix_image_updated_at ON image (updated_at);
CREATE INDEX ix_image_visibility ON image (visibility);
CREATE INDEX ix_metadef_namespace_created_at ON metadef_namespace (created_at);
