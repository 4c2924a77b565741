"""Volume backends: where volume data lives. ``create_backend`` picks one from settings."""

from __future__ import annotations

from stratus.core.config import Settings
from stratus.volume.backends.base import BackendError, MissingTool, VolumeBackend


def create_backend(settings: Settings) -> VolumeBackend:
    name = settings.volume.backend
    if name == "file":
        from stratus.volume.backends.file import FileBackend

        return FileBackend(settings.volumes_dir, qemu_img=settings.volume.qemu_img)
    raise ValueError(f"unknown volume backend {name!r}")


__all__ = ["BackendError", "MissingTool", "VolumeBackend", "create_backend"]
