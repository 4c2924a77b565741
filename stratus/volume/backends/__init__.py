"""Volume backends: where volume data lives. ``create_backend`` picks one from settings."""

from __future__ import annotations

from stratus.core.config import Settings
from stratus.volume.backends.base import BackendError, MissingTool, VolumeBackend


def create_backend(settings: Settings) -> VolumeBackend:
    name = settings.volume.backend
    if name == "file":
        from stratus.volume.backends.file import FileBackend

        return FileBackend(settings.volumes_dir, qemu_img=settings.volume.qemu_img)
    if name == "rbd":
        from stratus.volume.backends.rbd import RbdBackend

        return RbdBackend(settings.ceph, pool=settings.volume.rbd_pool,
                          qemu_img=settings.volume.qemu_img,
                          max_clone_depth=settings.volume.rbd_max_clone_depth,
                          secret_uuid=settings.volume.rbd_secret_uuid)
    raise ValueError(f"unknown volume backend {name!r}")


__all__ = ["BackendError", "MissingTool", "VolumeBackend", "create_backend"]
