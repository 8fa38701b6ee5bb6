"""Alembic environment for Legato's persistence schema.

Legato runs migrations itself (``SQLPersistence.upgrade()``): it opens a connection, takes the
database-level migration lock and passes the connection in ``config.attributes["connection"]``.
Running ``alembic`` by hand against this folder is not supported: there is no URL here on purpose,
so the lock cannot be skipped by accident.
"""

from __future__ import annotations

from alembic import context

from legato.persistence.sql import tables


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("Legato migrations run through SQLPersistence.upgrade() only")
    context.configure(
        connection=connection,
        target_metadata=tables.metadata,
        version_table=tables.VERSION_TABLE,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported")
run_migrations_online()
