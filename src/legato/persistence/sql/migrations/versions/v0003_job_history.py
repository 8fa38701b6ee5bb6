"""Every claim of every job: the job history (``legato_job_history``).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

_JSON = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
_UUID = 64
_MYSQL: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4",
          "mariadb_engine": "InnoDB", "mariadb_charset": "utf8mb4"}
_TABLE = "legato_job_history"


def _index(name: str, column: str) -> None:
    if name not in {ix["name"] for ix in sa.inspect(op.get_bind()).get_indexes(_TABLE)}:
        op.create_index(name, _TABLE, [column])


def upgrade() -> None:
    # Each step is skipped when done: on MySQL DDL commits at once (see 0001).
    if not sa.inspect(op.get_bind()).has_table(_TABLE):
        op.create_table(
            _TABLE,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("job_uuid", sa.String(_UUID), nullable=False),
            sa.Column("fence", sa.BigInteger, nullable=False),
            sa.Column("owner", sa.Text, nullable=False),
            sa.Column("job_name", sa.Text, nullable=True),
            sa.Column("book_uuid", sa.String(_UUID), nullable=True),
            sa.Column("flow_uuid", sa.String(_UUID), nullable=True),
            sa.Column("claimed_at", sa.BigInteger, nullable=False),
            sa.Column("ended_at", sa.BigInteger, nullable=True),
            sa.Column("outcome", sa.String(32), nullable=True),
            sa.Column("reason", sa.Text, nullable=True),
            sa.Column("flow_state", sa.String(32), nullable=True),
            sa.Column("atoms", _JSON, nullable=True),
            sa.UniqueConstraint("job_uuid", "fence", name="uq_legato_job_history_claim"),
            **_MYSQL,
        )
    _index("ix_legato_job_history_flow_uuid", "flow_uuid")
    _index("ix_legato_job_history_ended_at", "ended_at")


def downgrade() -> None:
    op.drop_table(_TABLE)
