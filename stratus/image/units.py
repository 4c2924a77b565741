"""The image service's unit: ``image-api``."""

from __future__ import annotations

from starlette.types import ASGIApp

from stratus.stack import Stack, Unit


async def build_api(stack: Stack) -> ASGIApp:
    from stratus.image.api import create_image_app
    from stratus.image.service import ImageRuntime

    runtime = await stack.runtime("image", lambda: ImageRuntime(stack.settings))
    return create_image_app(runtime, stack.token_validator())


UNITS = (
    Unit("image-api", "/image", build_api, ("image", "glance", "")),
)
