"""The SQL jobboard's own tables.

The board keeps its schema apart from persistence's: a board and a persistence store may live in
different databases. Its tables have their own Alembic lineage (``migrations/`` beside this
module, version table ``VERSION_TABLE``), run at connect by ``legato._sql.migrate``.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "CHANNEL_PREFIX",
    "CHANNEL_QUERY",
    "CLAIMED_ROWS",
    "POST_PAYLOAD",
    "VERSION_TABLE",
    "entities",
    "jobs",
    "metadata",
    "trash",
]

#: Alembic's version table of the board's lineage.
VERSION_TABLE = "legato_jb_version"

metadata = sa.MetaData()

# SQLite gives a rowid alias only to a column typed exactly INTEGER.
_Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _job_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("uuid", sa.String(36), nullable=False, unique=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("details", sa.Text, nullable=False),  # JSON object as text
        sa.Column("book_uuid", sa.String(36)),
        sa.Column("book_name", sa.Text),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("created_on", sa.Double, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("last_modified", sa.Double),
        sa.Column("attempts", sa.Integer, nullable=False, default=0),
        sa.Column("owner", sa.Text),
        sa.Column("fence", sa.BigInteger, nullable=False, default=0),
        sa.Column("lease_expires", sa.Double),
        sa.Column("available_at", sa.Double),
        sa.Column("reason", sa.Text),
    ]


jobs = sa.Table(
    "legato_jb_jobs", metadata,
    # The post sequence is the primary key: it orders jobs of one priority, oldest first.
    sa.Column("sequence", _Seq, primary_key=True, autoincrement=True),
    *_job_columns(),
    # Set by cancel() on a claimed job: the reason its owner trashes it with.
    sa.Column("cancel", sa.Text),
)
# claim_next walks this index from the top and stops at the first claimable row.
sa.Index("legato_jb_jobs_claim_order", jobs.c.priority.desc(), jobs.c.sequence)
#: The claims alone (``iter_claimed``): a partial index, as small as the number of claims.
CLAIMED_ROWS = sa.text("state = 'CLAIMED'")
sa.Index("legato_jb_jobs_claimed", jobs.c.owner, sqlite_where=CLAIMED_ROWS,
         postgresql_where=CLAIMED_ROWS)

trash = sa.Table(
    "legato_jb_trash", metadata,
    sa.Column("trash_id", _Seq, primary_key=True, autoincrement=True),
    sa.Column("sequence", sa.BigInteger, nullable=False),
    *_job_columns(),
    sa.Column("trashed_at", sa.Double, nullable=False),
)
sa.Index("legato_jb_trash_order", trash.c.trashed_at.desc(), trash.c.trash_id.desc())

entities = sa.Table(
    "legato_jb_entities", metadata,
    sa.Column("kind", sa.String(255), primary_key=True),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("metadata", sa.Text, nullable=False),
    sa.Column("expires", sa.Double, nullable=False),
)

#: PostgreSQL notification channels: a post, consume, trash or abandon was committed (triggers
#: made by the migrations send them, one per statement) on the jobs table of one schema, whose
#: channel is this prefix followed by the md5 of the schema's name (migration ``j0004``): boards
#: in other schemas of the database hear nothing of it, and any schema's channel name is 42
#: characters (PostgreSQL's limit is 63 bytes).
CHANNEL_PREFIX = "legato_jb_"
#: The channel of the board whose jobs table this connection's ``search_path`` finds (as the
#: board's own statements find it): one row, one column. The server hashes the name as the
#: triggers do, so both agree whatever the name and the database's encoding.
CHANNEL_QUERY = (
    f"SELECT '{CHANNEL_PREFIX}' || md5(n.nspname) FROM pg_catalog.pg_class c"
    " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    f" WHERE c.oid = '{jobs.name}'::regclass"
)
#: Payload of the notification of a post that inserted a job claimable now (the other
#: notifications' payload is empty): a waiter woken by it knows a job was posted and need not
#: look.
POST_PAYLOAD = "post"
