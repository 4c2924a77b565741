"""Block storage's units: ``volume-api`` and one ``volume-manager`` per host, on one
``VolumeRuntime`` per process."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from starlette.types import ASGIApp

from stratus.core import hosttools
from stratus.core.web.lazy import LazyApp
from stratus.stack import Stack, Unit

if TYPE_CHECKING:
    from stratus.core.clients.image import ImageClient
    from stratus.volume.service import VolumeRuntime


async def volume_runtime(stack: Stack) -> VolumeRuntime:
    from stratus.volume.rpcapi import VolumeManagerAPI
    from stratus.volume.service import VolumeRuntime

    manager_api = VolumeManagerAPI(await stack.transport())
    return await stack.runtime("volume", lambda: VolumeRuntime(stack.settings,
                                                               manager_api=manager_api))


async def build_api(stack: Stack) -> ASGIApp:
    runtime = await volume_runtime(stack)
    validator = stack.token_validator()
    http = stack.http_client()

    def build() -> ASGIApp:
        from stratus.volume.api import create_volume_app

        return create_volume_app(runtime, validator, http_client=http)

    return LazyApp(build)


async def build_manager(stack: Stack) -> None:
    """One volume-manager for this host (``volume.host``), on the configured backend."""
    from stratus.volume.backends import create_backend
    from stratus.volume.manager import ImageSource, VolumeManager
    from stratus.volume.rpcapi import VOLUME_TOPIC

    settings = stack.settings
    runtime = await volume_runtime(stack)
    images: ImageSource | None = None
    image_service: ImageClient | None = None
    # Volumes from images and uploads to images need the image service, found through
    # identity's catalog.
    if stack.identity_reachable:
        from stratus.core.clients.image import ImageClient
        from stratus.core.images_cache import HostImages

        images = HostImages(settings.data_dir / "volume-image-cache", stack.service_auth(),
                            stack.http_client())
        image_service = ImageClient(stack.http_client(), stack.service_auth())
    host = settings.volume.host or socket.gethostname()
    backend = create_backend(settings)
    chosen = backend.name + (f" in {settings.volumes_dir}" if backend.name == "file" else "")
    if backend.name == "rbd":
        chosen += (f": pool {settings.volume.rbd_pool} of the Ceph cluster of "
                   f"{settings.ceph.conf}, as client.{settings.ceph.user}")
    lacking = [hosttools.missing(tool) for tool in backend.missing_tools()]
    if lacking:
        chosen += f" (volumes from raw images only: {'; '.join(lacking)})"
    stack.chose("volume backend", chosen)
    manager = VolumeManager(host, runtime, backend, images=images,
                            image_service=image_service)
    stack.exits.push_async_callback(manager.stop)
    await stack.serve(VOLUME_TOPIC, host, manager, manager.METHODS)
    await manager.start()


UNITS = (
    Unit("volume-api", "/volume", build_api, ("block-storage", "cinder", "/v3/$(project_id)s"),
         catalog_aliases=("volumev3",)),
    Unit("volume-manager", None, build_manager),
)
