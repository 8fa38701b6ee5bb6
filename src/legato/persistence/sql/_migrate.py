"""Run the schema migrations with Alembic, serialised by a database-level lock.

Many processes may call ``upgrade()`` on one database at the same moment. Each takes a lock the
database itself holds, then lets Alembic compare the version table with the newest migration:
the first one creates the tables, the others find the schema at head and do nothing.

* PostgreSQL: ``pg_advisory_xact_lock`` inside the migration transaction (DDL is transactional,
  so the lock and the schema change commit together).
* MySQL/MariaDB: ``GET_LOCK`` on a name derived from the database (DDL commits implicitly there,
  so the lock is held by the session around the whole run).
* SQLite: the migration runs in a ``BEGIN IMMEDIATE`` transaction, which admits one writer.
"""

from __future__ import annotations

import functools
import logging
import pathlib
from typing import TYPE_CHECKING

import sqlalchemy as sa

from legato import errors
from legato.persistence.sql import tables

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["current_revision", "head_revision", "upgrade"]

logger = logging.getLogger(__name__)

MIGRATIONS = pathlib.Path(__file__).with_name("migrations")

#: Advisory lock key for PostgreSQL ("legato-p" as a 63-bit integer).
_PG_LOCK_KEY = int.from_bytes(b"legato-p", "big") & 0x7FFF_FFFF_FFFF_FFFF

#: Longest MySQL's GET_LOCK waits for another process's migration (seconds); never longer than
#: the connection's read timeout, or the driver would give up on the server first.
_MYSQL_LOCK_WAIT = 50.0


def _config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


@functools.cache
def head_revision() -> str | None:
    """The newest migration's revision id."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(conn: sa.Connection) -> str | None:
    """The revision the database is at (None before the first ``upgrade()``)."""
    from alembic.runtime.migration import MigrationContext

    context = MigrationContext.configure(conn, opts={"version_table": tables.VERSION_TABLE})
    return context.get_current_revision()


def upgrade(engine: sa.Engine, write_engine: sa.Engine, *, read_timeout: float) -> None:
    """Bring the schema to head; ``write_engine`` opens SQLite write transactions.

    A schema already at head is only read: no lock is taken and nothing is written, so a
    read-only database (or a role that may only SELECT) works, and a SQLite writer holding
    the lock does not hold up a reader's start.
    """
    backend = engine.dialect.name
    with engine.connect() as conn:
        if current_revision(conn) == head_revision():
            return
    if backend in ("mysql", "mariadb"):
        _upgrade_mysql(engine, max(1, int(min(_MYSQL_LOCK_WAIT, read_timeout - 1))))
        return
    with (write_engine if backend == "sqlite" else engine).connect() as conn, conn.begin():
        if backend == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        _run(conn)


def _upgrade_mysql(engine: sa.Engine, lock_wait: int) -> None:
    with engine.connect() as conn:
        name = sa.func.concat("legato.persistence.", sa.func.database())
        got = conn.execute(sa.select(sa.func.get_lock(name, lock_wait))).scalar()
        conn.commit()
        if got != 1:
            raise errors.StorageFailure("timed out waiting for another process's migration")
        try:
            with conn.begin():
                _run(conn)
        finally:
            conn.execute(sa.select(sa.func.release_lock(name)))
            conn.commit()


def _run(conn: sa.Connection) -> None:
    from alembic import command

    if current_revision(conn) == head_revision():
        return  # the common case; skips loading env.py
    config = _config()
    config.attributes["connection"] = conn
    logger.info("migrating persistence schema to %s", head_revision())
    command.upgrade(config, "head")
