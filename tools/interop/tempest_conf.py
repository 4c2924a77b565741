"""``tempest.conf`` for a prepared Stratus cloud.

Everything the cloud can tell is read from it (the catalog, the microversion ranges its
version documents advertise, the network and volume extensions it lists, the images,
flavors and networks ``cloud.prepare`` made). What no API tells — which Compute features a
deployment switched on — is ``COMPUTE_FEATURES``: what Stratus's compute service implements
with the fake driver. Nothing here switches off a feature the cloud has to make a test skip.
"""

from __future__ import annotations

import configparser
import io
from pathlib import Path

from tools.interop.cloud import Prepared

#: Compute features Stratus serves (``[compute-feature-enabled]``), as the API implements
#: them for every virt driver; False where Stratus has no such feature.
COMPUTE_FEATURES: dict[str, bool] = {
    "resize": True,
    "snapshot": True,
    "console_output": True,
    "pause": True,
    "suspend": True,
    "rescue": True,
    "shelve": True,
    "interface_attach": True,
    "change_password": False,
    "cold_migration": False,
    "live_migration": False,
    "vnc_console": False,
    "spice_console": False,
    "serial_console": False,
    "personality": False,
    "config_drive": False,
    "attach_encrypted_volume": False,
    "swap_volume": False,
    "volume_multiattach": False,
    "metadata_service": True,
}


def render(prepared: Prepared, workspace: Path, *, isolated_networks: bool = False) -> str:
    """The configuration file's text. ``isolated_networks``: Tempest makes a network, subnet
    and router (its gateway on the external network) per test project, instead of booting
    on the shared network."""
    admin = prepared.admin
    conf = configparser.ConfigParser(interpolation=None)
    conf["DEFAULT"] = {"log_dir": str(workspace / "logs"), "log_file": "tempest.log"}
    conf["oslo_concurrency"] = {"lock_path": str(workspace / "tempest_lock")}
    conf["auth"] = {
        "use_dynamic_credentials": "true",
        "create_isolated_networks": str(isolated_networks).lower(),
        "admin_username": admin.username,
        "admin_password": admin.password,
        "admin_project_name": admin.project_name,
        "admin_domain_name": admin.domain_name,
        "admin_user_domain_name": admin.domain_name,
        "admin_project_domain_name": admin.domain_name,
    }
    conf["identity"] = {
        "uri_v3": admin.auth_url,
        "auth_version": "v3",
        "region": admin.region,
        "v3_endpoint_type": "public",
    }
    conf["identity-feature-enabled"] = {"api_v2": "false", "api_v3": "true"}
    conf["compute"] = {
        "image_ref": prepared.image_ref,
        "image_ref_alt": prepared.image_ref_alt,
        "flavor_ref": prepared.flavor_ref,
        "flavor_ref_alt": prepared.flavor_ref_alt,
        "fixed_network_name": prepared.shared_network,
        "min_microversion": prepared.compute_versions[0],
        "max_microversion": prepared.compute_versions[1],
        "endpoint_type": "publicURL",
        "region": admin.region,
        "build_timeout": "120",
    }
    conf["compute-feature-enabled"] = {k: str(v).lower() for k, v in COMPUTE_FEATURES.items()}
    conf["image"] = {"endpoint_type": "publicURL", "region": admin.region,
                     "build_timeout": "120"}
    conf["image-feature-enabled"] = {
        "api_v2": "true",
        "image_format_enforcement": str(prepared.image_format_enforcement).lower()}
    conf["network"] = {
        "public_network_id": prepared.external_network_id,
        "project_network_cidr": "10.200.0.0/16",
        "endpoint_type": "publicURL",
        "region": admin.region,
        "build_timeout": "120",
    }
    conf["network-feature-enabled"] = {
        "ipv6": "true",
        "ipv6_subnet_attributes": "true",
        "api_extensions": ",".join(prepared.network_extensions) or "None",
    }
    conf["volume"] = {
        "catalog_type": "volumev3",
        "min_microversion": prepared.volume_versions[0],
        "max_microversion": prepared.volume_versions[1],
        "endpoint_type": "publicURL",
        "region": admin.region,
        "build_timeout": "120",
    }
    volume_features = {"snapshot": "true", "clone": "true", "backup": "false"}
    if prepared.volume_extensions is not None:
        volume_features["api_extensions"] = ",".join(prepared.volume_extensions) or "None"
    conf["volume-feature-enabled"] = volume_features
    conf["service_available"] = {
        "nova": "true", "glance": "true", "neutron": "true", "cinder": "true",
        "swift": "false", "horizon": "false",
    }
    conf["validation"] = {"run_validation": "false"}
    if prepared.validation:
        # Real guests under TCG on a loaded machine: a boot takes 10-60 s, and Tempest
        # waits for SSH only after the server is ACTIVE.
        conf["validation"] = {
            "run_validation": "true", "connect_method": "floating", "auth_method": "keypair",
            "image_ssh_user": "root", "ip_version_for_ssh": "4", "ssh_timeout": "600",
            "connect_timeout": "60", "ping_timeout": "300"}
        conf["compute"]["build_timeout"] = "300"
        conf["network"]["build_timeout"] = "300"
    text = io.StringIO()
    conf.write(text)
    return text.getvalue()
