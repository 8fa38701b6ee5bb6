"""One notification per post, from the trigger, with the payload a waiter needs.

Revision ID: j0003
Revises: j0002

Until now a post sent two notifications: the statement trigger's (empty payload) and the
board's own ``pg_notify('legato_jobboard', 'post')`` in the ``INSERT``'s ``RETURNING``. The
insert trigger now reads the statement's new rows (a transition table, which a trigger may
have for one event only: inserts and deletes get a trigger each) and sends ``'post'`` when one
of them can be claimed at once (no ``available_at``), else an empty payload. Boards of this
release no longer notify from their ``INSERT``; a board of an earlier release on this schema
still does, which only wakes its waiters twice. PostgreSQL only (SQLite boards poll).
"""

from __future__ import annotations

from alembic import op

revision = "j0003"
down_revision: str | None = "j0002"
branch_labels: str | None = None
depends_on: str | None = None

_CHANNEL = "legato_jobboard"
_POST_PAYLOAD = "post"

_STATEMENTS = (
    # As j0001 made it (a database adopted from the hand-written setup may lack it).
    f"""CREATE OR REPLACE FUNCTION legato_jb_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN PERFORM pg_notify('{_CHANNEL}', ''); RETURN NULL; END $$""",
    f"""CREATE OR REPLACE FUNCTION legato_jb_posted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('{_CHANNEL}', CASE WHEN EXISTS (
            SELECT 1 FROM legato_jb_posted_rows WHERE available_at IS NULL)
            THEN '{_POST_PAYLOAD}' ELSE '' END);
        RETURN NULL;
    END $$""",
    "DROP TRIGGER IF EXISTS legato_jb_jobs_posted_or_gone ON legato_jb_jobs",
    "DROP TRIGGER IF EXISTS legato_jb_jobs_posted ON legato_jb_jobs",
    "DROP TRIGGER IF EXISTS legato_jb_jobs_gone ON legato_jb_jobs",
    """CREATE TRIGGER legato_jb_jobs_posted AFTER INSERT ON legato_jb_jobs
    REFERENCING NEW TABLE AS legato_jb_posted_rows
    FOR EACH STATEMENT EXECUTE FUNCTION legato_jb_posted()""",
    """CREATE TRIGGER legato_jb_jobs_gone AFTER DELETE ON legato_jb_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION legato_jb_notify()""",
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for statement in _STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("the jobboard's schema is not downgraded")
