"""Alembic environment for the SQL jobboard's tables (``legato._sql.migrate.JOBBOARD``).

The board runs its migrations itself at connect: it opens a connection, takes the
database-level migration lock and passes the connection in ``config.attributes["connection"]``.
"""

from __future__ import annotations

from alembic import context

from legato._sql.migrate import run_environment

run_environment(context)
