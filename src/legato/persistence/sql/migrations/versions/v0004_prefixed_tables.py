"""Prefix Legato's persistence tables with ``legato_`` so they cannot collide with an
application's own ``logbooks``/``flowdetails``/``atomdetails`` tables in a shared database.

Databases made by 0001 since then have the prefixed names already; this renames the tables of
older ones (a table of the old name that 0001 did not make is an application's: left alone).

Revision ID: 0004
Revises: 0003

Renaming keeps every row, the foreign keys (the databases rewrite references to a renamed
table) and the indexes (under their old names).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

#: Old name, new name, and columns only Legato's table of that name has; parents first.
RENAMES = (("logbooks", "legato_logbooks", {"uuid", "name", "created_at", "updated_at"}),
           ("flowdetails", "legato_flowdetails", {"uuid", "book_uuid", "state", "fence_job"}),
           ("atomdetails", "legato_atomdetails", {"uuid", "flow_uuid", "kind", "intention"}))


def upgrade() -> None:
    # Each rename is skipped when done: on MySQL DDL commits at once (see 0001).
    for old, new, columns in RENAMES:
        inspector = sa.inspect(op.get_bind())
        if not inspector.has_table(old) or inspector.has_table(new):
            continue
        if columns <= {c["name"] for c in inspector.get_columns(old)}:
            op.rename_table(old, new)


def downgrade() -> None:
    for old, new, _ in reversed(RENAMES):
        op.rename_table(new, old)
