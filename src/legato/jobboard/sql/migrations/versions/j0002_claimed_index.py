"""An index of the claimed jobs: ``iter_claimed`` (who holds what) reads the claims alone.

Revision ID: j0002
Revises: j0001

A partial index, on the owner of the rows whose state is ``CLAIMED``: it holds only the live
(or lapsed, not yet reclaimed) claims, so it stays as small as the number of claims. Renewals
change no indexed column (PostgreSQL keeps them heap-only updates).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "j0002"
down_revision: str | None = "j0001"
branch_labels: str | None = None
depends_on: str | None = None

_NAME = "legato_jb_jobs_claimed"
_WHERE = sa.text("state = 'CLAIMED'")


def upgrade() -> None:
    present = {index["name"] for index in sa.inspect(op.get_bind()).get_indexes("legato_jb_jobs")}
    if _NAME not in present:  # a process that died after creating it, before stamping
        op.create_index(_NAME, "legato_jb_jobs", ["owner"], sqlite_where=_WHERE,
                        postgresql_where=_WHERE)


def downgrade() -> None:
    raise NotImplementedError("the jobboard's schema is not downgraded")
