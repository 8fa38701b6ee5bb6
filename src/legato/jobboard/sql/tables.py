"""The SQL jobboard's own tables, and their idempotent creation.

The board keeps its schema apart from persistence's Alembic migrations: a board and a persistence
store may live in different databases, and the board's four tables are created with
``CREATE TABLE IF NOT EXISTS`` semantics under a lock, then stamped in ``legato_jb_schema``. A
later format change bumps ``SCHEMA_VERSION`` and adds a step to ``ensure_schema``.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "CHANNEL", "SCHEMA_VERSION", "ensure_schema", "entities", "jobs", "metadata", "schema", "trash",
]

#: 1: the four tables; 2: ``legato_jb_jobs.cancel`` (a cancel mark for the claim's owner).
SCHEMA_VERSION = 2

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
    # Set by cancel() on a claimed job: the reason its owner trashes it with (schema 2).
    sa.Column("cancel", sa.Text),
)
# claim_next walks this index from the top and stops at the first claimable row.
sa.Index("legato_jb_jobs_claim_order", jobs.c.priority.desc(), jobs.c.sequence)

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

schema = sa.Table(
    "legato_jb_schema", metadata,
    sa.Column("version", sa.Integer, nullable=False),
)

# Any constant works; it only has to be the same in every process creating the tables.
_PG_LOCK_KEY = 0x1E6A70

#: PostgreSQL notification channel: a post, consume, trash or abandon was committed.
CHANNEL = "legato_jobboard"

# Triggers send the notifications, so no call pays an extra round trip for them and changes made
# by other tools (an operator's SQL) wake waiters too. Claims and renewals notify nobody.
_PG_TRIGGERS = [
    f"""CREATE OR REPLACE FUNCTION legato_jb_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN PERFORM pg_notify('{CHANNEL}', ''); RETURN NULL; END $$""",
    """CREATE TRIGGER legato_jb_jobs_posted_or_gone AFTER INSERT OR DELETE ON legato_jb_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION legato_jb_notify()""",
    """CREATE TRIGGER legato_jb_jobs_released AFTER UPDATE ON legato_jb_jobs
    FOR EACH ROW WHEN (NEW.state = 'UNCLAIMED') EXECUTE FUNCTION legato_jb_notify()""",
]


def ensure_schema(engine: sa.Engine) -> None:
    """Create the tables if missing, or upgrade them, safely from many processes at once.

    A schema already current is only read (no write transaction): a read-only database works.
    """
    if _current(engine):
        return
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn = conn.execution_options(legato_begin="IMMEDIATE")
        with conn.begin():
            postgres = engine.dialect.name == "postgresql"
            if postgres:
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
            fresh = not sa.inspect(conn).has_table(jobs.name)
            metadata.create_all(conn, checkfirst=True)
            if postgres and fresh:
                for statement in _PG_TRIGGERS:
                    conn.exec_driver_sql(statement)
            version = conn.execute(sa.select(sa.func.max(schema.c.version))).scalar()
            if version is None:
                conn.execute(schema.insert().values(version=SCHEMA_VERSION))
            elif version < SCHEMA_VERSION:
                _upgrade(conn, version)


def _current(engine: sa.Engine) -> bool:
    """Whether the board's tables exist at ``SCHEMA_VERSION`` (read only)."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(schema.name):
            return False
        version = conn.execute(sa.select(sa.func.max(schema.c.version))).scalar()
        conn.rollback()
    return version is not None and version >= SCHEMA_VERSION


def _upgrade(conn: sa.Connection, version: int) -> None:
    """Bring tables made at ``version`` to ``SCHEMA_VERSION`` (inside the caller's lock)."""
    if version < 2:
        columns = {c["name"] for c in sa.inspect(conn).get_columns(jobs.name)}
        if "cancel" not in columns:
            conn.exec_driver_sql(f"ALTER TABLE {jobs.name} ADD COLUMN cancel TEXT")
    conn.execute(schema.update().values(version=SCHEMA_VERSION))
