"""Image data stores behind one interface (``base.Store``): ``file``, ``rbd`` and ``s3``."""

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
    if image.store == "s3":
        from stratus.image.stores.s3 import S3Store

        if not (image.s3_store_host and image.s3_store_access_key
                and image.s3_store_secret_key):
            raise ValueError("image store s3 needs image.s3_store_host, s3_store_access_key "
                             "and s3_store_secret_key")
        return S3Store(image.s3_store_host, image.s3_store_access_key,
                       image.s3_store_secret_key, bucket=image.s3_store_bucket,
                       region=image.s3_store_region, part_size=image.s3_store_part_size,
                       concurrency=image.s3_store_upload_concurrency,
                       sign_payload=image.s3_store_sign_payload,
                       stale_upload_seconds=image.stale_upload_seconds)
    raise ValueError(f"unknown image store {image.store!r} (available: file, rbd, s3)")
