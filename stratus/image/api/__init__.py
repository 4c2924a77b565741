"""Image v2 HTTP API (Glance compatible)."""

from __future__ import annotations

from fastapi import FastAPI

from stratus.core.auth import TokenValidator
from stratus.core.web import ErrorStyle, create_app
from stratus.image.api import data, images, members, metadefs, schemas, versions
from stratus.image.service import ImageRuntime


def create_image_app(runtime: ImageRuntime, validator: TokenValidator) -> FastAPI:
    """The Image API. Errors are Glance's ``{"code", "title", "message"}`` (``PLAIN``).

    The JSON body-size limit applies to every route but the data upload, which streams.
    """
    return create_app(
        service="image",
        style=ErrorStyle.PLAIN,
        routers=[versions.router, schemas.router, data.router, members.router,
                 images.router, metadefs.router],
        max_body_size=runtime.settings.max_request_body_size,
        openapi=runtime.settings.serve_openapi,
        body_limit_exempt=[data.UPLOAD_PATH_SUFFIX],
        state={"image": runtime, "token_validator": validator},
    )
