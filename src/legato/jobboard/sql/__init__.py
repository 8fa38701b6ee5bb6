"""The SQL jobboard (SQLite, PostgreSQL): ``board`` holds the board, ``tables`` its tables
(created and upgraded by their own Alembic branch, ``migrations/``)."""

from __future__ import annotations

from legato.jobboard.sql.board import PostgresJobBoard, SQLJobBoard
from legato.jobboard.sql.tables import CHANNEL_QUERY

__all__ = ["CHANNEL_QUERY", "PostgresJobBoard", "SQLJobBoard"]
