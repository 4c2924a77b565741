"""JSON views of compute resources, shaped for the microversion the client asked for."""

from __future__ import annotations

from typing import Any

from stratus.compute.api.deps import Links
from stratus.compute.flavors import Flavor
from stratus.compute.keypairs import KeyPair
from stratus.core.web.microversions import APIVersion


def flavor_brief(f: Flavor, links: Links, version: APIVersion) -> dict[str, Any]:
    body: dict[str, Any] = {"id": f.id, "name": f.name, "links": links.pair(f"flavors/{f.id}")}
    if version.at_least("2.55"):
        body["description"] = f.description
    return body


def flavor(f: Flavor, links: Links, version: APIVersion, *,
           extra_specs: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        **flavor_brief(f, links, version),
        "ram": f.ram, "vcpus": f.vcpus, "disk": f.disk,
        # Nova shows "no swap" as "" until 2.75, as 0 from then on.
        "swap": f.swap if f.swap or version.at_least("2.75") else "",
        "OS-FLV-EXT-DATA:ephemeral": f.ephemeral,
        "OS-FLV-DISABLED:disabled": f.disabled,
        "rxtx_factor": f.rxtx_factor,
        "os-flavor-access:is_public": f.is_public,
    }
    if extra_specs and version.at_least("2.61"):
        body["extra_specs"] = dict(f.extra_specs or {})
    return body


def keypair(k: KeyPair, version: APIVersion, *, detail: bool = False,
            private_key: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"name": k.name, "public_key": k.public_key,
                            "fingerprint": k.fingerprint}
    if version.at_least("2.2"):
        body["type"] = k.type
    if detail:
        body.update({"user_id": k.user_id, "id": k.id, "created_at": _time(k.created_at),
                     "updated_at": None, "deleted": False, "deleted_at": None})
    if private_key is not None:
        body["private_key"] = private_key
    return body


def _time(value: Any) -> str:
    return str(value.strftime("%Y-%m-%dT%H:%M:%S.%f"))
