"""Run schema migrations with Alembic, serialised by a database-level lock.

Two independent lineages use this: SQL persistence (``PERSISTENCE``) and the SQL jobboard
(``JOBBOARD``). Each has its own scripts folder and its own version table, so a board and a
persistence store may share a database or not, and upgrade on their own.

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

import dataclasses
import functools
import importlib
import logging
import pathlib
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from legato import errors

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["JOBBOARD", "PERSISTENCE", "Lineage", "run_environment", "upgrade"]

logger = logging.getLogger(__name__)

#: Longest MySQL's GET_LOCK waits for another process's migration (seconds); never longer than
#: the connection's read timeout, or the driver would give up on the server first.
_MYSQL_LOCK_WAIT = 50.0


@dataclasses.dataclass(frozen=True)
class Lineage:
    """One chain of migrations.

    Attributes:
        name: what it migrates, in logs and in MySQL's lock name.
        package: the package whose ``migrations/`` folder holds ``env.py`` and ``versions/``.
        tables: the module defining ``metadata`` and ``VERSION_TABLE``.
        pg_lock_key: PostgreSQL advisory lock key (kept: processes of older releases take it
            too).
    """

    name: str
    package: str
    tables: str
    pg_lock_key: int

    @property
    def folder(self) -> pathlib.Path:
        module = importlib.import_module(self.package)
        assert module.__file__ is not None
        return pathlib.Path(module.__file__).with_name("migrations")

    @property
    def version_table(self) -> str:
        table: str = importlib.import_module(self.tables).VERSION_TABLE
        return table

    @property
    def metadata(self) -> sa.MetaData:
        metadata: sa.MetaData = importlib.import_module(self.tables).metadata
        return metadata

    def config(self) -> Config:
        """An Alembic config for this lineage (a connection goes in
        ``config.attributes["connection"]``)."""
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(self.folder))
        config.attributes["lineage"] = self
        return config

    def head(self) -> str | None:
        """The newest migration's revision id."""
        return _head(self)

    def current(self, conn: sa.Connection) -> str | None:
        """The revision the database is at (None before the first ``upgrade()``)."""
        from alembic.runtime.migration import MigrationContext

        context = MigrationContext.configure(conn, opts={"version_table": self.version_table})
        return context.get_current_revision()


#: Persistence's tables; the lock key is "legato-p" as a 63-bit integer.
PERSISTENCE = Lineage(
    "persistence",
    "legato.persistence.sql",
    "legato.persistence.sql.tables",
    int.from_bytes(b"legato-p", "big") & 0x7FFF_FFFF_FFFF_FFFF,
)
#: The SQL jobboard's tables; the lock key is the one its hand-written schema setup took.
JOBBOARD = Lineage("jobboard", "legato.jobboard.sql", "legato.jobboard.sql.tables", 0x1E6A70)


@functools.cache
def _head(lineage: Lineage) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(lineage.config()).get_current_head()


def upgrade(
    lineage: Lineage, engine: sa.Engine, write_engine: sa.Engine, *, read_timeout: float
) -> None:
    """Bring ``lineage``'s schema to head; ``write_engine`` opens SQLite write transactions.

    A schema already at head is only read: no lock is taken and nothing is written, so a
    read-only database (or a role that may only SELECT) works, and a SQLite writer holding
    the lock does not hold up a reader's start.
    """
    backend = engine.dialect.name
    with engine.connect() as conn:
        if lineage.current(conn) == lineage.head():
            return
    if backend in ("mysql", "mariadb"):
        _upgrade_mysql(lineage, engine, max(1, int(min(_MYSQL_LOCK_WAIT, read_timeout - 1))))
        return
    with (write_engine if backend == "sqlite" else engine).connect() as conn, conn.begin():
        if backend == "postgresql":
            conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": lineage.pg_lock_key}
            )
        _run(lineage, conn)


def _upgrade_mysql(lineage: Lineage, engine: sa.Engine, lock_wait: int) -> None:
    with engine.connect() as conn:
        name = sa.func.concat(f"legato.{lineage.name}.", sa.func.database())
        got = conn.execute(sa.select(sa.func.get_lock(name, lock_wait))).scalar()
        conn.commit()
        if got != 1:
            raise errors.StorageFailure("timed out waiting for another process's migration")
        try:
            with conn.begin():
                _run(lineage, conn)
        finally:
            conn.execute(sa.select(sa.func.release_lock(name)))
            conn.commit()


def _run(lineage: Lineage, conn: sa.Connection) -> None:
    from alembic import command

    if lineage.current(conn) == lineage.head():
        return  # the common case; skips loading env.py
    config = lineage.config()
    config.attributes["connection"] = conn
    logger.info("migrating the %s schema to %s", lineage.name, lineage.head())
    command.upgrade(config, "head")


def run_environment(context: Any) -> None:
    """The body of each lineage's ``env.py``: migrate on the connection ``upgrade()`` passed.

    Running ``alembic`` by hand against a migrations folder is not supported: there is no URL
    there on purpose, so the lock cannot be skipped by accident.
    """
    if context.is_offline_mode():
        raise RuntimeError("offline (SQL script) migrations are not supported")
    connection = context.config.attributes.get("connection")
    lineage = context.config.attributes.get("lineage")
    if connection is None or lineage is None:
        raise RuntimeError(
            "Legato migrations run through upgrade() only (SQLPersistence, SQLJobBoard.connect)"
        )
    context.configure(
        connection=connection, target_metadata=lineage.metadata, version_table=lineage.version_table
    )
    with context.begin_transaction():
        context.run_migrations()
