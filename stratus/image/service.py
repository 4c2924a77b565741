"""The image service's runtime (what lives as long as the process) and its facade.

Nothing here knows HTTP. ``ImageService`` is one database transaction (core's ``Txn``) and
the parts that work inside it (``images``, ``members``, ``quotas``, ``metadefs``), each
built with the transaction and its named collaborators. The data flows (upload, download,
delete) live on ``ImageRuntime.data`` because they must not hold a transaction open while
bytes flow (``stratus.image.data``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.exc import IntegrityError

from stratus.core.config import Settings
from stratus.core.context import RequestContext
from stratus.core.db import Database, Txn
from stratus.core.exceptions import Conflict
from stratus.core.policy import Caller, Enforcer
from stratus.image.changes import ChangeListener, ImageChanges
from stratus.image.data import ImageData
from stratus.image.formats import Inspector
from stratus.image.images import Images
from stratus.image.members import Members
from stratus.image.metadefs import Metadefs
from stratus.image.migrations import HEAD, SCRIPT_LOCATION, VERSION_TABLE
from stratus.image.policy import RULES
from stratus.image.quotas import Quotas
from stratus.image.stores import Store, create_store
from stratus.image.validation import Validator


class ImageService:
    """The image service's parts within one database transaction."""

    def __init__(self, txn: Txn, settings: Settings, validator: Validator,
                 change_listeners: list[ChangeListener] | None = None) -> None:
        self.txn = txn
        self.session = txn.session
        self.quotas = Quotas(txn, settings.image)
        self.changes = ImageChanges(txn, change_listeners or [])
        self.images = Images(txn.session, settings.image, validator, self.quotas,
                             self.changes)
        self.members = Members(txn.session, settings.image, self.images)
        self.metadefs = Metadefs(txn.session)


class ImageRuntime:
    """What the image service keeps for the life of the process."""

    def __init__(self, settings: Settings, db: Database | None = None,
                 store: Store | None = None) -> None:
        self.settings = settings
        self.db = db or Database(settings.database_url_for("image", settings.image.database_url))
        self.store = store or create_store(settings)
        self.enforcer = Enforcer(RULES, settings.policy_file)
        self.inspector = Inspector(settings.image.qemu_img,
                                   require_match=settings.image.require_format_match)
        self.validator = Validator(settings)
        self.data = ImageData(self._images, self.store, self.inspector)
        #: Told which images changed after each transaction that changed some (compute's
        #: image records, here and over the bus: ``stratus.core.image_caches``).
        self.change_listeners: list[ChangeListener] = []

    async def start(self) -> None:
        await self.db.upgrade(SCRIPT_LOCATION, VERSION_TABLE, known_head=HEAD)
        await self.store.start()

    async def stop(self) -> None:
        await self.store.stop()
        await self.db.dispose()

    def caller(self, context: RequestContext) -> Caller:
        return Caller(context, self.enforcer)

    @asynccontextmanager
    async def service(self) -> AsyncIterator[ImageService]:
        """A service bound to one transaction: committed on success, rolled back on error."""
        try:
            async with self.db.transaction() as txn:
                yield ImageService(txn, self.settings, self.validator,
                                   self.change_listeners)
        except IntegrityError as exc:
            raise Conflict("Conflict occurred attempting to store the resource: "
                           "duplicate entry.") from exc

    @asynccontextmanager
    async def _images(self) -> AsyncIterator[Images]:
        async with self.service() as svc:
            yield svc.images


__all__ = ["SCRIPT_LOCATION", "VERSION_TABLE", "ImageRuntime", "ImageService"]
