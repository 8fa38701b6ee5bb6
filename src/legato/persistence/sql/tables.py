"""The persistence tables, as SQLAlchemy Core ``Table`` objects.

Every name starts with ``legato_`` (migration 0004 renamed the first three), so Legato's tables
cannot collide with an application's own in a shared database.

These describe the schema at the newest migration; the migrations in ``migrations/versions``
create it (they do not import this module, so old migrations keep their own snapshot).

* Every table has an integer ``id`` assigned on insert: rows are read back ``ORDER BY id``, which
  is insertion order (flows in their book, atoms in their flow, books oldest first).
* ``uuid`` is unique and is what the API addresses; children point at their parent's ``uuid``
  with ``ON DELETE CASCADE``, so destroying a logbook removes its flows and atoms in the database
  itself (SQLite enforces it because every connection turns ``foreign_keys`` on).
* JSON values are stored as text (``NULL`` for ``None``): portable, and the values are only ever
  read back whole. Timestamps are integer microseconds since the Unix epoch (UTC): exact and
  sortable on every database.
* ``flowdetails.fence_job``/``fence`` are written by ``take_flow`` only: saving a logbook or a
  flow detail never changes them.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

__all__ = ["VERSION_TABLE", "atomdetails", "flowdetails", "job_history", "logbooks", "metadata"]

#: Alembic's version table for this schema (not ``alembic_version``, to share a database safely).
VERSION_TABLE = "legato_persistence_version"

#: Ids are strings (uuid4 by default); 64 leaves room for other id schemes and stays indexable.
UUID_LENGTH = 64

# MySQL's TEXT stops at 64 KiB; results can be larger.
JSONText = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")

_MYSQL: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4",
          "mariadb_engine": "InnoDB", "mariadb_charset": "utf8mb4"}

metadata = sa.MetaData()

logbooks = sa.Table(
    "legato_logbooks", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("uuid", sa.String(UUID_LENGTH), nullable=False, unique=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=True),
    sa.Column("meta", JSONText, nullable=True),
    **_MYSQL,
)

flowdetails = sa.Table(
    "legato_flowdetails", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("uuid", sa.String(UUID_LENGTH), nullable=False, unique=True),
    sa.Column("book_uuid", sa.String(UUID_LENGTH),
              sa.ForeignKey("legato_logbooks.uuid", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("state", sa.String(32), nullable=True),
    sa.Column("meta", JSONText, nullable=True),
    # The fence of the claim that took the flow (``Persistence.take_flow``): the job's uuid and
    # the claim's fencing number; fenced writes land only while both match.
    sa.Column("fence_job", sa.String(UUID_LENGTH), nullable=True),
    sa.Column("fence", sa.BigInteger, nullable=True),
    **_MYSQL,
)

atomdetails = sa.Table(
    "legato_atomdetails", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("uuid", sa.String(UUID_LENGTH), nullable=False, unique=True),
    sa.Column("flow_uuid", sa.String(UUID_LENGTH),
              sa.ForeignKey("legato_flowdetails.uuid", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("intention", sa.String(32), nullable=False),
    sa.Column("results", JSONText, nullable=True),
    sa.Column("failure", JSONText, nullable=True),
    sa.Column("revert_results", JSONText, nullable=True),
    sa.Column("revert_failure", JSONText, nullable=True),
    sa.Column("meta", JSONText, nullable=True),
    sa.Column("version", sa.String(255), nullable=True),
    **_MYSQL,
)

#: Every claim of every job (``Persistence.record_claim``); no foreign key: a job's history
#: outlives its logbook. (job_uuid, fence) is unique and, being its leading column, indexes
#: job_uuid for lookups by uuid prefix.
job_history = sa.Table(
    "legato_job_history", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_uuid", sa.String(UUID_LENGTH), nullable=False),
    sa.Column("fence", sa.BigInteger, nullable=False),
    sa.Column("owner", sa.Text, nullable=False),
    sa.Column("job_name", sa.Text, nullable=True),
    sa.Column("book_uuid", sa.String(UUID_LENGTH), nullable=True),
    sa.Column("flow_uuid", sa.String(UUID_LENGTH), nullable=True, index=True),
    sa.Column("claimed_at", sa.BigInteger, nullable=False),
    sa.Column("ended_at", sa.BigInteger, nullable=True, index=True),
    sa.Column("outcome", sa.String(32), nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("flow_state", sa.String(32), nullable=True),
    sa.Column("atoms", JSONText, nullable=True),
    sa.UniqueConstraint("job_uuid", "fence", name="uq_legato_job_history_claim"),
    **_MYSQL,
)
