"""Each PostgreSQL engine's connection pool in this process: set from the settings by the
``stratus`` command (``configure_pools``), read by ``stratus.core.db`` as it makes an engine.

Apart from ``stratus.core.db`` so that setting it does not import SQLAlchemy: ``stratus up``
begins a first start's work (the admin password's bcrypt hash, the databases) before that.
"""

from __future__ import annotations

#: Keyword arguments of each PostgreSQL engine this process makes (``configure_pools``).
POOL = {"pool_size": 10, "max_overflow": 20}


def configure_pools(size: int, overflow: int) -> None:
    """The pool of every PostgreSQL engine this process makes from now on
    (``database_pool_size``, ``database_max_overflow``)."""
    POOL.update(pool_size=size, max_overflow=overflow)
