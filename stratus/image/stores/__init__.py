"""Image data stores behind one interface (``base.Store``): ``file`` and ``rbd``."""

from __future__ import annotations

from stratus.core.config import Settings
from stratus.image.stores.base import ObjectMissing, ObjectReader, Store, StoreFull, StoreWriter

__all__ = ["ObjectMissing", "ObjectReader", "Store", "StoreFull", "StoreWriter", "create_store"]


def create_store(settings: Settings) -> Store:
    """The store the configuration names (``image.store``)."""
    image = settings.image
    if image.store == "file":
        from stratus.image.stores.file import FileStore

        directory = image.filesystem_store_datadir or settings.data_dir / "images"
        return FileStore(directory, stale_upload_seconds=image.stale_upload_seconds)
    if image.store == "rbd":
        from stratus.image.stores.rbd import RbdStore

        return RbdStore(settings.ceph, pool=image.rbd_store_pool,
                        chunk_size=image.rbd_store_chunk_size,
                        stale_upload_seconds=image.stale_upload_seconds)
    raise ValueError(f"unknown image store {image.store!r} (available: file, rbd)")
