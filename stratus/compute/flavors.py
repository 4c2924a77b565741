"""Flavors: sizes a server can be built with, public or shared with chosen projects."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from stratus.compute.models import Flavor, FlavorAccess
from stratus.compute.objects import FlavorInfo
from stratus.core.db import Txn
from stratus.core.db.paging import SortKey, page
from stratus.core.exceptions import Conflict, MarkerNotFound, NotFound, ValidationError

__all__ = ["DEFAULT_FLAVORS", "Flavor", "FlavorQuery", "Flavors"]

#: Nova's classic flavors, seeded on first start: (id, name, vcpus, ram MiB, disk GiB).
DEFAULT_FLAVORS = (
    ("1", "m1.tiny", 1, 512, 1),
    ("2", "m1.small", 1, 2048, 20),
    ("3", "m1.medium", 2, 4096, 40),
    ("4", "m1.large", 4, 8192, 80),
    ("5", "m1.xlarge", 8, 16384, 160),
)

SORT_KEYS = {"flavorid": Flavor.id, "id": Flavor.id, "name": Flavor.name,
             "memory_mb": Flavor.ram, "ram": Flavor.ram, "vcpus": Flavor.vcpus,
             "root_gb": Flavor.disk, "disk": Flavor.disk, "swap": Flavor.swap,
             "ephemeral_gb": Flavor.ephemeral, "rxtx_factor": Flavor.rxtx_factor,
             "created_at": Flavor.created_at}


_FLAVORS = cast(Table, Flavor.__table__)
_ACCESS = cast(Table, FlavorAccess.__table__)
#: What a boot reads of a flavor (``info_of``), and whether project ``p_project`` is one it
#: is shared with: columns of a statement reading the flavor of table ``FLAVORS``
#: (``stratus.compute.boot_facts``, which reads the quota limits with it).
INFO_COLUMNS: tuple[Any, ...] = (
    _FLAVORS.c.id, _FLAVORS.c.name, _FLAVORS.c.vcpus, _FLAVORS.c.ram, _FLAVORS.c.disk,
    _FLAVORS.c.ephemeral, _FLAVORS.c.swap, _FLAVORS.c.extra_specs, _FLAVORS.c.is_public,
    exists().where(_ACCESS.c.flavor_id == _FLAVORS.c.id,
                   _ACCESS.c.project_id == bindparam("p_project")).label("shared"))
FLAVORS = _FLAVORS


def info_of(row: Any, flavor_id: str, *, project_id: str | None, admin: bool) -> FlavorInfo:
    """The flavor as a boot records it, from a row of ``INFO_COLUMNS`` (None: no such
    flavor), if the caller may use it (as ``Flavors.get``: public, shared with
    ``project_id``, or ``admin``); ``NotFound`` otherwise."""
    if row is None or not (row.is_public or admin or (project_id is not None
                                                      and row.shared)):
        raise NotFound(f"Flavor {flavor_id} could not be found.")
    return FlavorInfo(id=row.id, name=row.name, vcpus=row.vcpus, ram=row.ram,
                      disk=row.disk, ephemeral=row.ephemeral or 0, swap=row.swap or 0,
                      extra_specs=dict(row.extra_specs or {}))


@dataclass(frozen=True)
class FlavorQuery:
    #: True: public only; False: private only; None: all the caller may see.
    is_public: bool | None = True
    min_ram: int | None = None
    min_disk: int | None = None
    sort_key: str = "flavorid"
    sort_dir: str = "asc"
    limit: int | None = None
    marker: str | None = None


class Flavors:
    """Flavors and who may use them, within one transaction."""

    def __init__(self, txn: Txn) -> None:
        self.txn = txn

    @property
    def session(self) -> AsyncSession:
        return self.txn.session

    async def seed_defaults(self) -> None:
        """The default flavors, on a database that has none. Processes starting together on
        a new database (split mode's schedulers, conductors and API processes) seed in turn
        under a lock: the second one, waiting for the first's commit, then finds its rows
        (each statement of a PostgreSQL transaction reads what was committed before it)
        instead of inserting them again and exiting on the duplicate key."""
        await self.txn.lock("flavor", "seed_defaults")
        if await self.session.scalar(select(Flavor.id).limit(1)) is not None:
            return
        for flavor_id, name, vcpus, ram, disk in DEFAULT_FLAVORS:
            self.session.add(Flavor(id=flavor_id, name=name, vcpus=vcpus, ram=ram, disk=disk,
                                    extra_specs={}))
        await self.session.flush()

    async def _accessible(self, flavor: Flavor, project_id: str | None, admin: bool) -> bool:
        if flavor.is_public or admin:
            return True
        return project_id is not None and await self.session.get(
            FlavorAccess, (flavor.id, project_id)) is not None

    async def get(self, flavor_id: str, *, project_id: str | None = None,
                  admin: bool = True) -> Flavor:
        flavor = await self.session.get(Flavor, flavor_id)
        if flavor is None or not await self._accessible(flavor, project_id, admin):
            raise NotFound(f"Flavor {flavor_id} could not be found.")
        return flavor

    async def list_flavors(self, query: FlavorQuery, *, project_id: str | None,
                           admin: bool) -> list[Flavor]:
        """One page of the flavors the caller may see, paged in SQL after ``marker``."""
        if query.sort_key not in SORT_KEYS:
            raise ValidationError(f"Invalid sort_key {query.sort_key!r}.")
        if query.sort_dir not in ("asc", "desc"):
            raise ValidationError(f"Invalid sort_dir {query.sort_dir!r}: use asc or desc.")
        stmt = select(Flavor).where(Flavor.disabled.is_(False))
        shared = select(FlavorAccess.flavor_id).where(FlavorAccess.project_id == project_id)
        if query.is_public is True:
            stmt = stmt.where(Flavor.is_public.is_(True))
        elif query.is_public is False:
            stmt = stmt.where(Flavor.is_public.is_(False))
            if not admin:
                stmt = stmt.where(Flavor.id.in_(shared))
        elif not admin:
            stmt = stmt.where(or_(Flavor.is_public.is_(True), Flavor.id.in_(shared)))
        if query.min_ram is not None:
            stmt = stmt.where(Flavor.ram >= query.min_ram)
        if query.min_disk is not None:
            stmt = stmt.where(Flavor.disk >= query.min_disk)
        try:
            found = await page(self.session, stmt, sort_columns=SORT_KEYS,
                               sort=[SortKey(query.sort_key,
                                             "desc" if query.sort_dir == "desc" else "asc")],
                               marker_id=query.marker, limit=query.limit, id_column=Flavor.id)
        except MarkerNotFound as exc:
            raise ValidationError(f"marker [{query.marker}] not found") from exc
        return found.rows

    async def create(self, *, name: str, vcpus: int, ram: int, disk: int,
                     flavor_id: str | None = None, swap: int = 0, ephemeral: int = 0,
                     rxtx_factor: float = 1.0, is_public: bool = True,
                     description: str | None = None) -> Flavor:
        flavor_id = flavor_id or str(uuid.uuid4())
        if await self.session.scalar(select(Flavor.id).where(Flavor.name == name)):
            raise Conflict(f"Flavor with name {name} already exists.")
        if await self.session.get(Flavor, flavor_id) is not None:
            raise Conflict(f"Flavor with ID {flavor_id} already exists.")
        flavor = Flavor(id=flavor_id, name=name, vcpus=vcpus, ram=ram, disk=disk, swap=swap,
                        ephemeral=ephemeral, rxtx_factor=rxtx_factor, is_public=is_public,
                        description=description, extra_specs={})
        self.session.add(flavor)
        await self.session.flush()
        return flavor

    async def update_description(self, flavor_id: str, description: str | None) -> Flavor:
        flavor = await self.get(flavor_id)
        flavor.description = description
        await self.session.flush()
        return flavor

    async def delete(self, flavor_id: str) -> None:
        flavor = await self.get(flavor_id)
        await self.session.execute(delete(FlavorAccess).where(FlavorAccess.flavor_id == flavor_id))
        await self.session.delete(flavor)
        await self.session.flush()

    # Extra specs --------------------------------------------------------------------------

    async def set_extra_specs(self, flavor_id: str, specs: dict[str, str]) -> dict[str, str]:
        flavor = await self.get(flavor_id)
        flavor.extra_specs = {**(flavor.extra_specs or {}), **specs}
        await self.session.flush()
        return dict(flavor.extra_specs)

    async def delete_extra_spec(self, flavor_id: str, key: str) -> None:
        flavor = await self.get(flavor_id)
        specs = dict(flavor.extra_specs or {})
        if key not in specs:
            raise NotFound(f"Flavor {flavor_id} has no extra specs with key {key}.")
        del specs[key]
        flavor.extra_specs = specs
        await self.session.flush()

    # Access to private flavors ------------------------------------------------------------

    async def access_list(self, flavor_id: str) -> list[str]:
        flavor = await self.get(flavor_id)
        if flavor.is_public:
            raise NotFound("Access list not available for public flavors.")
        return list(await self.session.scalars(select(FlavorAccess.project_id).where(
            FlavorAccess.flavor_id == flavor_id).order_by(FlavorAccess.project_id)))

    async def add_access(self, flavor_id: str, project_id: str) -> list[str]:
        flavor = await self.get(flavor_id)
        if flavor.is_public:
            raise Conflict("Can not add access to a public flavor.")
        if await self.session.get(FlavorAccess, (flavor_id, project_id)) is not None:
            raise Conflict(f"Flavor access already exists for flavor {flavor_id} and project "
                           f"{project_id} combination.")
        self.session.add(FlavorAccess(flavor_id=flavor_id, project_id=project_id))
        await self.session.flush()
        return await self.access_list(flavor_id)

    async def remove_access(self, flavor_id: str, project_id: str) -> list[str]:
        await self.get(flavor_id)
        access = await self.session.get(FlavorAccess, (flavor_id, project_id))
        if access is None:
            raise NotFound(f"Flavor access not found for {flavor_id} / {project_id} "
                           f"combination.")
        await self.session.delete(access)
        await self.session.flush()
        return await self.access_list(flavor_id)

