"""The image service's unit: ``image-api``."""

from __future__ import annotations

from starlette.types import ASGIApp

from stratus.core import hosttools
from stratus.core.web.lazy import LazyApp
from stratus.stack import Stack, Unit


async def build_api(stack: Stack) -> ASGIApp:
    from stratus.image.service import ImageRuntime

    settings = stack.settings
    runtime = await stack.runtime("image", lambda: ImageRuntime(settings))
    store = settings.image.store
    if store == "file":
        store += f" in {settings.image.filesystem_store_datadir or settings.data_dir / 'images'}"
    elif store == "rbd":
        store += (f": pool {settings.image.rbd_store_pool} of the Ceph cluster of "
                  f"{settings.ceph.conf}, as client.{settings.ceph.user}")
    elif store == "s3":
        store += (f": bucket {settings.image.s3_store_bucket} at "
                  f"{settings.image.s3_store_host}")
    if hosttools.find(settings.image.qemu_img) is None:
        store += (f" (no format checks beyond headers: "
                  f"{hosttools.missing(settings.image.qemu_img)})")
    stack.chose("image store", store)
    validator = stack.token_validator()

    def build() -> ASGIApp:
        from stratus.image.api import create_image_app

        return create_image_app(runtime, validator)

    return LazyApp(build)


UNITS = (
    Unit("image-api", "/image", build_api, ("image", "glance", "")),
)
