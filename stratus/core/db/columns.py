"""The column kinds every service's models share, as SQLAlchemy 2 ``Annotated`` types.

A model says what a column is (``id: Mapped[UUIDKey]``, ``created_at: Mapped[Created]``) and
adds only what differs (``= mapped_column(index=True)``): SQLAlchemy merges the right-hand
``mapped_column`` into the one carried by the alias. ``TYPE_MAP`` is the
``type_annotation_map`` of every service's declarative base: JSON for dicts and lists,
``UTCDateTime`` for every timestamp, so ``Mapped[dt.datetime | None]`` alone is a nullable
UTC timestamp.

These aliases are schema: changing one changes tables in every service, and needs a
migration in each (``tests/integration/test_models_match_migrations.py`` shows the diff).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from sqlalchemy import JSON, String
from sqlalchemy.orm import mapped_column

from stratus.core.db import UTCDateTime, utcnow

#: The ``type_annotation_map`` each service's ``Base`` uses.
TYPE_MAP: dict[Any, Any] = {
    dt.datetime: UTCDateTime,
    dict[str, Any]: JSON,
    dict[str, str]: JSON,
    list[str]: JSON,
    list[Any]: JSON,
    list[dict[str, str]]: JSON,
}

#: A resource's own id: a UUID in its 36-character text form.
UUIDKey = Annotated[str, mapped_column(String(36), primary_key=True)]
#: A reference to an identity object (project, user, domain), as wide as identity's own ids.
IdentityId = Annotated[str, mapped_column(String(64))]
#: A human-given name (resources, hosts).
Name = Annotated[str, mapped_column(String(255))]
#: When the row was made, set by Python (a timezone-aware UTC now) on insert.
Created = Annotated[dt.datetime, mapped_column(default=utcnow)]
#: A surrogate key the database counts up, for rows no API names by id.
SerialKey = Annotated[int, mapped_column(primary_key=True, autoincrement=True)]
