"""Record the fence of the claim that took each flow detail (fenced writes).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

_UUID = 64


def _table() -> str:
    """``legato_flowdetails`` (0001 on a new database) or ``flowdetails`` (older ones: 0004
    renames it)."""
    return ("legato_flowdetails" if sa.inspect(op.get_bind()).has_table("legato_flowdetails")
            else "flowdetails")


def _columns() -> set[str]:
    return {c["name"] for c in sa.inspect(op.get_bind()).get_columns(_table())}


def upgrade() -> None:
    # Each column is skipped when present: on MySQL DDL commits at once, so a process that died
    # half-way through leaves one column behind, unstamped.
    present = _columns()
    if "fence_job" not in present:
        op.add_column(_table(), sa.Column("fence_job", sa.String(_UUID), nullable=True))
    if "fence" not in present:
        op.add_column(_table(), sa.Column("fence", sa.BigInteger, nullable=True))


def downgrade() -> None:
    op.drop_column(_table(), "fence")
    op.drop_column(_table(), "fence_job")
