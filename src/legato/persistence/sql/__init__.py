"""SQL persistence: SQLite, PostgreSQL and MySQL/MariaDB through SQLAlchemy Core and Alembic.

``legato.persistence.connect("sqlite:///legato.db")`` returns a ``SQLPersistence``; call
``upgrade()`` once to create the tables.
"""

from __future__ import annotations

from legato.persistence.sql.backend import SQLPersistence

__all__ = ["SQLPersistence"]
