"""Notifications on a channel of the board's own schema, not one for the whole database.

Revision ID: j0004
Revises: j0003

Until now every board's triggers notified the channel ``legato_jobboard``, so boards whose
tables live in different schemas of one database (tenants, or a test's fresh schema) woke each
other, and a post in one schema told the waiters of every other that a job was posted. The
trigger functions now notify ``'legato_jb_' || md5(TG_TABLE_SCHEMA)``: one channel per schema,
42 characters whatever the schema's name (PostgreSQL refuses channel names past 63 bytes). A
board of this release listens on the channel of the schema its connection's ``search_path``
finds the jobs table in (``legato.jobboard.sql.tables.CHANNEL_QUERY``).

A board of an earlier release on this schema still listens on ``legato_jobboard``, where no
trigger notifies any more: its waiters no longer wake at once but find new jobs when they poll
(every ``poll_interval``, 0.5 s by default), or, for releases before j0003, when a board of
theirs posts. Nothing is lost or claimed twice; only their wake-ups are slower. PostgreSQL only
(SQLite boards poll).
"""

from __future__ import annotations

from alembic import op

revision = "j0004"
down_revision: str | None = "j0003"
branch_labels: str | None = None
depends_on: str | None = None

#: The channel, computed when the trigger fires: a renamed schema keeps its waiters' channel
#: in step with the name they resolve when they (re)connect.
_CHANNEL = "'legato_jb_' || md5(TG_TABLE_SCHEMA)"
_POST_PAYLOAD = "post"

_STATEMENTS = (
    f"""CREATE OR REPLACE FUNCTION legato_jb_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN PERFORM pg_notify({_CHANNEL}, ''); RETURN NULL; END $$""",
    f"""CREATE OR REPLACE FUNCTION legato_jb_posted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify({_CHANNEL}, CASE WHEN EXISTS (
            SELECT 1 FROM legato_jb_posted_rows WHERE available_at IS NULL)
            THEN '{_POST_PAYLOAD}' ELSE '' END);
        RETURN NULL;
    END $$""",
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for statement in _STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("the jobboard's schema is not downgraded")
