"""Alembic environment for Legato's persistence schema (``legato._sql.migrate.PERSISTENCE``).

Legato runs migrations itself (``SQLPersistence.upgrade()``): it opens a connection, takes the
database-level migration lock and passes the connection in ``config.attributes["connection"]``.
"""

from __future__ import annotations

from alembic import context

from legato._sql.migrate import run_environment

run_environment(context)
