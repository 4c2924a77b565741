"""The files of an instance's config drive, as Nova lays them out (pure: no I/O).

A config drive is the metadata service's documents on a disk the guest reads before it has a
network (cloud-init's ``ConfigDrive`` data source): an ISO 9660 file system labelled
``config-2`` (the drivers make it, ``stratus.compute.virt.config_drive``) holding

- ``openstack/<version>/`` for every dated OpenStack version and ``openstack/latest/``:
  ``meta_data.json``, ``user_data`` (when given), ``vendor_data.json`` (2013-10-17 on),
  ``network_data.json`` (2015-10-15 on) and ``vendor_data2.json`` (2016-10-06 on), as the
  metadata service serves them; never the ``password`` file (the guest posts that one);
- ``ec2/<version>/meta-data.json`` (the EC2 ``meta-data/`` tree as one JSON document) and
  ``ec2/<version>/user-data`` for the EC2 versions Nova keeps on a drive (its
  ``config_drive_skip_versions`` leave out those before 2009-04-04) and ``ec2/latest/``.

Unlike the metadata service, ``meta_data.json`` on a drive carries the administrator
password (``admin_pass``) when one was set for it: the boot's ``adminPass`` or a rescue's.
The drive holds it in clear, as Nova's does; the file is the instance's own (its directory,
mode 0600) and removed with it.
"""

from __future__ import annotations

import json
import os
from typing import Any

from stratus.compute.metadata import content
from stratus.compute.metadata.content import InstanceData, Named

#: The volume label guests look for (cloud-init's ``LABEL=config-2``).
LABEL = "config-2"
#: EC2 versions a drive carries (Nova's ``config_drive_skip_versions`` skips the older).
EC2_VERSIONS = ("2009-04-04",)


def _ec2_json(tree: dict[str, Any]) -> dict[str, Any]:
    """The EC2 tree as JSON: a named folder keeps its listing name under ``_name``."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Named):
            out[key] = {"_name": value.name, **_ec2_json(value.entries)}
        elif isinstance(value, dict):
            out[key] = _ec2_json(value)
        else:
            out[key] = value
    return out


def files(data: InstanceData, admin_pass: str | None = None) -> dict[str, bytes]:
    """The drive's files by path (``openstack/latest/meta_data.json``, ...)."""
    found: dict[str, bytes] = {}
    seed = os.urandom(512)  # one seed for the drive, in every version that has one
    user_data = data.decoded_user_data()
    for version in (*content.OPENSTACK_VERSIONS, "latest"):
        dated = content.resolve_openstack(version)
        assert dated is not None
        for name in content.openstack_tree(data, dated):
            if name == "password":
                continue
            path = f"openstack/{version}/{name}"
            if name == "meta_data.json":
                doc = content.meta_data(data, dated, random_bytes=seed)
                if admin_pass:
                    doc["admin_pass"] = admin_pass
                found[path] = json.dumps(doc).encode()
                continue
            document = content.openstack_file(data, dated, name)
            if document is not None:
                found[path] = document.body
    ec2 = json.dumps(_ec2_json(content.ec2_meta_data(data))).encode()
    for version in (*EC2_VERSIONS, "latest"):
        found[f"ec2/{version}/meta-data.json"] = ec2
        if user_data is not None:
            found[f"ec2/{version}/user-data"] = user_data
    return found
