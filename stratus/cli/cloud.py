"""A cloud the operator's commands reach over its API, named as OpenStack's clients name it:
a cloud of ``clouds.yaml`` (``--os-cloud NAME``), looked for where
python-openstackclient looks (``$OS_CLIENT_CONFIG_FILE``, ``./clouds.yaml``,
``~/.config/openstack/clouds.yaml``, ``/etc/openstack/clouds.yaml``) and in the data
directory, where ``stratus up`` writes the cloud ``stratus``.

Password authentication only (what ``stratus up`` writes); the password and the token stay
in this process.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any

import httpx
import yaml

from stratus.core.exceptions import ServiceUnavailable
from stratus.core.http import client_verify
from stratus.core.service_auth import ServiceAuth


class CloudError(Exception):
    """The cloud is not configured, or refused or failed the request (the message says)."""


def clouds_yaml_paths(data_dir: Path) -> list[Path]:
    paths = [Path(p) for p in [os.environ.get("OS_CLIENT_CONFIG_FILE")] if p]
    return [*paths, Path.cwd() / "clouds.yaml",
            Path.home() / ".config" / "openstack" / "clouds.yaml",
            Path("/etc/openstack/clouds.yaml"), data_dir / "clouds.yaml"]


def cloud_config(name: str, data_dir: Path) -> dict[str, Any]:
    """The ``clouds.yaml`` entry of cloud ``name`` (the first file that has it)."""
    for path in clouds_yaml_paths(data_dir):
        if not path.is_file():
            continue
        clouds = (yaml.safe_load(path.read_text()) or {}).get("clouds") or {}
        if name in clouds:
            config: dict[str, Any] = clouds[name]
            return config
    raise CloudError(f"No cloud {name!r} in any clouds.yaml (looked in "
                     + ", ".join(str(p) for p in clouds_yaml_paths(data_dir)) + ").")


async def get_json(config: dict[str, Any], service_type: str, path: str, *,
                   transport: httpx.AsyncBaseTransport | None = None) -> dict[str, Any]:
    """``GET path`` of ``service_type``'s endpoint in the cloud's catalog, as the cloud's
    user; an answer other than 200 is a ``CloudError`` with the API's own message."""
    auth = config.get("auth") or {}
    missing = [k for k in ("auth_url", "username", "password", "project_name") if not auth.get(k)]
    if missing:
        raise CloudError(f"The cloud's auth lacks {', '.join(missing)} (password auth only).")
    auth_url = str(auth["auth_url"]).rstrip("/")
    if not auth_url.endswith("/v3"):
        auth_url += "/v3"
    async with httpx.AsyncClient(timeout=60, transport=transport,
                                 verify=_verify(config)) as client:
        session = ServiceAuth(auth_url, username=auth["username"], password=auth["password"],
                              project=auth["project_name"],
                              domain=auth.get("user_domain_name") or "Default", client=client)
        try:
            endpoint = await session.endpoint(service_type, config.get("interface") or "public")
            response = await client.get(f"{endpoint}{path}",
                                        headers={"X-Auth-Token": await session.token()})
        except ServiceUnavailable as exc:  # identity refused the credentials, or is down
            raise CloudError(str(exc)) from None
        except httpx.HTTPError as exc:
            raise CloudError(f"{endpoint} is unreachable: {exc}") from None
    if response.status_code != 200:
        raise CloudError(f"{response.status_code}: {_message(response)}")
    body: dict[str, Any] = response.json()
    return body


def _verify(config: dict[str, Any]) -> ssl.SSLContext | bool:
    """A cloud's ``cacert`` (``stratus up --tls`` names its CA) and ``verify: false``, read
    as the OpenStack clients read them."""
    if config.get("verify", True) is False:
        return False
    if config.get("cacert"):
        return client_verify(os.path.expanduser(str(config["cacert"])))
    return True


def _message(response: httpx.Response) -> str:
    """The message of an OpenStack error body (``{"itemNotFound": {"message": ...}}``)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        for value in body.values():
            if isinstance(value, dict) and "message" in value:
                return str(value["message"])
    return response.text[:200]
