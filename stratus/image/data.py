"""Image data in and out: the flows that span transactions because bytes flow between them.

An upload marks the image ``saving`` in one short transaction (compare and set: of two racing
uploads one wins), streams into a staged store object, and publishes it in a second one. Any
failure removes the staged data and puts the image back to ``queued``, unless the image went
active with this data already. A download reads the image's row in a transaction and streams
from the store after it. A delete removes the data only after the row's deletion committed.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from stratus.core.db import utcnow
from stratus.core.exceptions import BadRequest, Conflict, Forbidden
from stratus.core.metrics import IMAGE_BYTES, counting
from stratus.core.policy import Caller
from stratus.core.web.socket_body import SocketBody
from stratus.image.errors import Gone, RangeNotSatisfiable
from stratus.image.formats import Inspection, Inspector
from stratus.image.images import Images
from stratus.image.models import Image
from stratus.image.quotas import STORED
from stratus.image.receive import receive
from stratus.image.stores import ObjectReader, Store
from stratus.image.streams import DataSink, Digest, TooLarge
from stratus.image.targets import image_target

LOG = logging.getLogger(__name__)

#: Opens one transaction and gives its ``Images`` (committed on success).
Transaction = Callable[[], AbstractAsyncContextManager[Images]]
#: Takes the request's body past the event loop (``stratus.core.web.socket_body``), or None.
TakeBody = Callable[[], "SocketBody | None"]


@dataclass(frozen=True)
class ByteRange:
    """``first-last`` (inclusive), ``first-`` (last None) or a suffix ``-n`` (first None)."""

    first: int | None
    last: int | None

    def resolve(self, size: int) -> tuple[int, int]:
        """(offset, length) within ``size`` bytes; ``RangeNotSatisfiable`` when none."""
        if self.first is None:
            if not self.last:
                raise RangeNotSatisfiable(size)
            length = min(self.last, size)
            if length == 0:
                raise RangeNotSatisfiable(size)
            return size - length, length
        if self.first >= size:
            raise RangeNotSatisfiable(size)
        last = size - 1 if self.last is None else min(self.last, size - 1)
        return self.first, last - self.first + 1


@dataclass
class Download:
    image_id: str
    checksum: str | None
    size: int
    offset: int
    length: int
    partial: bool
    reader: ObjectReader


_UPLOADED = IMAGE_BYTES.labels("uploaded")


class ImageData:
    """Upload, download and delete: each a sequence of short transactions around the store."""

    def __init__(self, transaction: Transaction, store: Store, inspector: Inspector) -> None:
        self.transaction = transaction
        self.store = store
        self.inspector = inspector

    async def upload(self, caller: Caller, image_id: str, chunks: AsyncIterator[bytes],
                     declared_size: int | None = None, take_body: TakeBody | None = None
                     ) -> None:
        """Stream ``chunks`` into the store as the image's data: ``queued`` → ``active``.
        Where the store writes from worker threads, the body is rather taken with
        ``take_body`` when it can be (``stratus.image.receive``: off the event loop).

        Any failure (too large, wrong format, the client going away, a store error) removes
        the staged data and puts the image back to ``queued``.
        """
        saving = await self._start_saving(caller, image_id, "upload_image", declared_size)
        owner, disk_format, limit, reason = saving

        writer = None
        location: str | None = None
        try:
            writer = await self.store.writer(image_id)
            write = writer.thread_writer()
            body = take_body() if take_body is not None and write is not None else None
            if body is not None:
                try:
                    digest = await receive(body, write, limit=limit, limit_message=reason)
                finally:
                    _UPLOADED.inc(body.length - body.left)
                    body.close()
            else:
                sink = DataSink(writer, limit=limit, limit_message=reason)
                try:
                    async for chunk in counting(chunks, _UPLOADED):
                        await sink.feed(chunk)
                    digest = await sink.finish()
                except BaseException:
                    await sink.discard()
                    raise
            if declared_size is not None and digest.size != declared_size:
                raise BadRequest(f"Received {digest.size} bytes, but Content-Length declared "
                                 f"{declared_size}.")
            await writer.written()
            inspection = await self.inspector.inspect(writer.local_path, disk_format,
                                                      digest.size, digest.head)
            location = await writer.commit()
            await self._activate(image_id, owner, digest, inspection, location)
        except BaseException as exc:
            if location is not None and await self._published(image_id, location):
                raise  # cancelled after the image went active: its data stays
            if writer is not None:
                await _quietly(writer.abort(), "removing the staged data of %s", image_id)
            if not isinstance(exc, Gone):
                await _quietly(self._restore_queued(image_id), "requeueing %s", image_id)
            raise

    async def add_location(self, caller: Caller, image_id: str, location: str,
                           validation: tuple[str, str] | None = None) -> None:
        """Glance's add location (Image API 2.17): a queued image takes data its store
        already holds at ``location`` (compute's clone of a guest's RBD disk): ``queued`` →
        ``active``, as after an upload. The store decides which locations it takes (only
        where it would have put this image's data itself, so no image can point at
        another's); the data is read once for its size, hashes and format check.
        ``validation`` (``os_hash_algo``, ``os_hash_value``) must match what is read.
        A failure puts the image back to ``queued`` and leaves the data to its writer."""
        owner, disk_format, limit, reason = await self._start_saving(
            caller, image_id, "add_image_location")
        try:
            adopted = await self.store.adopt(image_id, location)
            reader = await self.store.open(adopted)
            if reader.size > limit:
                await reader.aclose()
                raise TooLarge(reason)
            sink = DataSink(None, limit=limit, limit_message=reason)
            try:
                async for chunk in reader.chunks():
                    await sink.feed(chunk)
                digest = await sink.finish()
            except BaseException:
                await sink.discard()
                raise
            finally:
                await reader.aclose()
            if validation is not None and validation != (digest.os_hash_algo,
                                                         digest.os_hash_value):
                raise BadRequest(f"The data at the location does not match the validation "
                                 f"data given ({validation[0]}).")
            inspection = await self.inspector.inspect(None, disk_format, digest.size,
                                                      digest.head)
            await self._activate(image_id, owner, digest, inspection, adopted)
        except BaseException as exc:
            if not isinstance(exc, Gone):
                await _quietly(self._restore_queued(image_id), "requeueing %s", image_id)
            raise

    async def _start_saving(self, caller: Caller, image_id: str, action: str,
                            declared_size: int | None = None) -> tuple[str | None, str, int,
                                                                       str]:
        """Check that ``caller`` may give the queued image its data (policy ``action``) and
        mark it ``saving``; its owner, disk format and how many bytes it may have (and what
        to say when it has more)."""
        async with self.transaction() as images:
            image = await images.get(caller, image_id)
            caller.authorize(action, image_target(image))
            if image.status != "queued":
                raise Conflict(f"Image {image_id} has status '{image.status}'; data can only "
                               "be given to a 'queued' image.")
            if not image.disk_format or not image.container_format:
                raise BadRequest("Properties disk_format and container_format must be set "
                                 "prior to saving data.")
            limit, reason = await images.quotas.upload_limit(image)
            if declared_size is not None and declared_size > limit:
                raise TooLarge(reason)
            owner, disk_format = image.owner, image.disk_format
            # Compare and set: of two uploads racing here, only one gets the image.
            if not await images.transition(image_id, "queued", "saving"):
                raise Conflict(f"Image {image_id} is no longer 'queued'; another upload "
                               "got there first.")
        return owner, disk_format, limit, reason

    async def _published(self, image_id: str, location: str) -> bool:
        """Whether the image went active with this data (True when that cannot be told:
        better an orphaned file than an active image without its data)."""
        try:
            async with self.transaction() as images:
                image = await images.session.get(Image, image_id)
                return image is not None and image.location == location
        except Exception:
            LOG.exception("could not tell whether image %s was published", image_id)
            return True

    async def _activate(self, image_id: str, owner: str | None, digest: Digest,
                        inspection: Inspection, location: str) -> None:
        async with self.transaction() as images:
            if owner:
                await images.quotas.lock_project(owner)
            image = await images.session.get(Image, image_id)
            if image is None or image.status != "saving":
                raise Gone(f"Image {image_id} could not be found after upload. The image may "
                           "have been deleted during the upload.")
            if image.owner:
                limit, reason = await images.quotas.upload_limit(image)
                if digest.size > limit:
                    raise TooLarge(reason)
            image.size = digest.size
            image.checksum = digest.checksum
            image.os_hash_algo = digest.os_hash_algo
            image.os_hash_value = digest.os_hash_value
            image.virtual_size = inspection.virtual_size
            image.location = location
            image.status = "active"
            image.updated_at = utcnow()
            images.changes.changed(image_id)

    async def _restore_queued(self, image_id: str) -> None:
        async with self.transaction() as images:
            await images.transition(image_id, "saving", "queued")

    # Data out -----------------------------------------------------------------------------

    async def open_data(self, caller: Caller, image_id: str,
                        byte_range: ByteRange | None = None) -> Download | None:
        """The image's data (or a range of it), opened; None when the image has no data."""
        async with self.transaction() as images:
            image = await images.get(caller, image_id)
            caller.authorize("download_image", image_target(image))
            if image.status == "deactivated" and not caller.is_admin:
                raise Forbidden("The requested image has been deactivated. Image data download "
                                "is prohibited.")
            if image.status not in STORED or image.location is None or image.size is None:
                return None
            location, size, checksum = image.location, image.size, image.checksum
        offset, length = 0, size
        if byte_range is not None:
            offset, length = byte_range.resolve(size)
        reader = await self.store.open(location, offset, length)
        return Download(image_id=image_id, checksum=checksum, size=size, offset=offset,
                        length=length, partial=byte_range is not None, reader=reader)

    # Delete -------------------------------------------------------------------------------

    async def delete_image(self, caller: Caller, image_id: str) -> None:
        """Delete the image, then its data (after the deletion is committed)."""
        prepared: str | None = None
        try:
            async with self.transaction() as images:
                image = await images.get(caller, image_id)
                caller.authorize("delete_image", image_target(image))
                if image.protected:
                    raise Forbidden(f"Image {image_id} is protected and cannot be deleted.")
                location = image.location
                if location is not None:
                    try:  # the store may refuse (clones of the data exist): the image stays
                        await self.store.prepare_delete(location)
                    except Conflict as exc:
                        raise Conflict(f"Image {image_id} could not be deleted because it is "
                                       f"in use: {exc}") from exc
                    prepared = location
                await images.session.delete(image)
                images.changes.changed(image_id)
        except BaseException:
            if prepared is not None:
                await _quietly(self.store.undo_prepare_delete(prepared),
                               "restoring the data of %s", image_id)
            raise
        if location is not None:
            await _quietly(self.store.delete(location), "deleting the data of %s", image_id)


async def _quietly(step: Any, what: str, *args: Any) -> None:
    """Await a clean-up step; log (never raise) its failure, so the original error wins."""
    try:
        await step
    except Exception:
        LOG.exception("failed " + what, *args)
