"""Policy targets of the image service: an image as its rules see it.

Rules name the image's owner as ``project_id`` (as Glance's ``ImageTarget`` does) and, for
member rules, the member project as ``member_id``. Who asks is core's ``Caller``.
"""

from __future__ import annotations

from typing import Any

from stratus.image.models import Image


def image_target(image: Image, member_id: str | None = None) -> dict[str, Any]:
    return {"project_id": image.owner, "owner": image.owner, "visibility": image.visibility,
            "member_id": member_id, "image_id": image.id}
