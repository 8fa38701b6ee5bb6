"""The jobboard's tables: jobs, trash and entities, and on PostgreSQL the triggers that notify
waiters.

Revision ID: j0001
Revises: (none)

Releases before this lineage made the same tables by hand (and kept a ``legato_jb_schema``
table with a version number). Such a database is adopted as it is: tables that exist are kept
with their rows, triggers and indexes; a ``cancel`` column missing from a version-1 database is
added, and ``legato_jb_schema`` is left at version 2 for processes of those releases.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "j0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# SQLite gives a rowid alias only to a column typed exactly INTEGER.
_Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_CHANNEL = "legato_jobboard"
# Triggers send the notifications, so no call pays an extra round trip for them and changes made
# by other tools (an operator's SQL) wake waiters too. Claims and renewals notify nobody.
_PG_TRIGGERS = (
    f"""CREATE OR REPLACE FUNCTION legato_jb_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN PERFORM pg_notify('{_CHANNEL}', ''); RETURN NULL; END $$""",
    """CREATE TRIGGER legato_jb_jobs_posted_or_gone AFTER INSERT OR DELETE ON legato_jb_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION legato_jb_notify()""",
    """CREATE TRIGGER legato_jb_jobs_released AFTER UPDATE ON legato_jb_jobs
    FOR EACH ROW WHEN (NEW.state = 'UNCLAIMED') EXECUTE FUNCTION legato_jb_notify()""",
)


def _job_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("uuid", sa.String(36), nullable=False, unique=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("book_uuid", sa.String(36)),
        sa.Column("book_name", sa.Text),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("created_on", sa.Double, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("last_modified", sa.Double),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("owner", sa.Text),
        sa.Column("fence", sa.BigInteger, nullable=False),
        sa.Column("lease_expires", sa.Double),
        sa.Column("available_at", sa.Double),
        sa.Column("reason", sa.Text),
    ]


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if inspector.has_table("legato_jb_jobs"):
        _adopt(inspector)
    else:
        op.create_table(
            "legato_jb_jobs",
            sa.Column("sequence", _Seq, primary_key=True, autoincrement=True),
            *_job_columns(),
            sa.Column("cancel", sa.Text),
        )
        op.create_index(
            "legato_jb_jobs_claim_order", "legato_jb_jobs", [sa.text("priority DESC"), "sequence"]
        )
        if op.get_bind().dialect.name == "postgresql":
            for statement in _PG_TRIGGERS:
                op.execute(statement)
    if not inspector.has_table("legato_jb_trash"):
        op.create_table(
            "legato_jb_trash",
            sa.Column("trash_id", _Seq, primary_key=True, autoincrement=True),
            sa.Column("sequence", sa.BigInteger, nullable=False),
            *_job_columns(),
            sa.Column("trashed_at", sa.Double, nullable=False),
        )
        op.create_index(
            "legato_jb_trash_order",
            "legato_jb_trash",
            [sa.text("trashed_at DESC"), sa.text("trash_id DESC")],
        )
    if not inspector.has_table("legato_jb_entities"):
        op.create_table(
            "legato_jb_entities",
            sa.Column("kind", sa.String(255), primary_key=True),
            sa.Column("name", sa.String(255), primary_key=True),
            sa.Column("metadata", sa.Text, nullable=False),
            sa.Column("expires", sa.Double, nullable=False),
        )


def _adopt(inspector: sa.Inspector) -> None:
    """Tables made by an earlier release's hand-written setup: bring version 1 to 2."""
    if "cancel" not in {c["name"] for c in inspector.get_columns("legato_jb_jobs")}:
        op.add_column("legato_jb_jobs", sa.Column("cancel", sa.Text))
    if inspector.has_table("legato_jb_schema"):
        op.execute("UPDATE legato_jb_schema SET version = 2 WHERE version < 2")


def downgrade() -> None:
    raise NotImplementedError("the jobboard's schema is not downgraded")
