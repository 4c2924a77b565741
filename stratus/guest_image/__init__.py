"""The project's test guest: a tiny Debian-kernel + busybox image that reports on its console."""

from stratus.guest_image.builder import GuestImageError, build, cached_image, ensure_image

__all__ = ["GuestImageError", "build", "cached_image", "ensure_image"]
