"""Create logbooks, flowdetails and atomdetails.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

_JSON = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
_UUID = 64
_MYSQL: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4",
          "mariadb_engine": "InnoDB", "mariadb_charset": "utf8mb4"}


def _exists(table: str) -> bool:
    return sa.inspect(op.get_bind()).has_table(table)


def _index(name: str, table: str, column: str) -> None:
    if name not in {ix["name"] for ix in sa.inspect(op.get_bind()).get_indexes(table)}:
        op.create_index(name, table, [column])


def upgrade() -> None:
    # Each step is skipped when already done: on MySQL DDL commits at once, so a process that
    # died half-way through this migration leaves some tables behind, unstamped.
    if not _exists("logbooks"):
        _create_logbooks()
    if not _exists("flowdetails"):
        _create_flowdetails()
    _index("ix_flowdetails_book_uuid", "flowdetails", "book_uuid")
    if not _exists("atomdetails"):
        _create_atomdetails()
    _index("ix_atomdetails_flow_uuid", "atomdetails", "flow_uuid")


def _create_logbooks() -> None:
    op.create_table(
        "logbooks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("uuid", sa.String(_UUID), nullable=False, unique=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=True),
        sa.Column("meta", _JSON, nullable=True),
        **_MYSQL,
    )


def _create_flowdetails() -> None:
    op.create_table(
        "flowdetails",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("uuid", sa.String(_UUID), nullable=False, unique=True),
        sa.Column("book_uuid", sa.String(_UUID),
                  sa.ForeignKey("logbooks.uuid", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("state", sa.String(32), nullable=True),
        sa.Column("meta", _JSON, nullable=True),
        **_MYSQL,
    )


def _create_atomdetails() -> None:
    op.create_table(
        "atomdetails",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("uuid", sa.String(_UUID), nullable=False, unique=True),
        sa.Column("flow_uuid", sa.String(_UUID),
                  sa.ForeignKey("flowdetails.uuid", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("intention", sa.String(32), nullable=False),
        sa.Column("results", _JSON, nullable=True),
        sa.Column("failure", _JSON, nullable=True),
        sa.Column("revert_results", _JSON, nullable=True),
        sa.Column("revert_failure", _JSON, nullable=True),
        sa.Column("meta", _JSON, nullable=True),
        sa.Column("version", sa.String(255), nullable=True),
        **_MYSQL,
    )


def downgrade() -> None:
    op.drop_table("atomdetails")
    op.drop_table("flowdetails")
    op.drop_table("logbooks")
