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


#: The columns that tell this migration's tables from an application's of the same name.
_OURS = {"logbooks": {"uuid", "name", "created_at", "updated_at", "meta"},
         "flowdetails": {"uuid", "book_uuid", "name", "state", "meta"},
         "atomdetails": {"uuid", "flow_uuid", "kind", "name", "state", "intention"}}


def _ours(table: str) -> bool:
    """Whether ``table`` exists and is one this migration made."""
    if not _exists(table):
        return False
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}
    return _OURS[table] <= columns


def _names() -> tuple[str, str, str]:
    """The tables' names: ``legato_``-prefixed (what migration 0004 renames older databases'
    tables to), so a new database never meets an application's ``logbooks`` table; the old
    names only to finish a run of an older Legato that died half-way (0004 renames them)."""
    if any(_ours(t) for t in _OURS):
        return "logbooks", "flowdetails", "atomdetails"
    return "legato_logbooks", "legato_flowdetails", "legato_atomdetails"


def _index(name: str, table: str, column: str) -> None:
    if name not in {ix["name"] for ix in sa.inspect(op.get_bind()).get_indexes(table)}:
        op.create_index(name, table, [column])


def upgrade() -> None:
    # Each step is skipped when already done: on MySQL DDL commits at once, so a process that
    # died half-way through this migration leaves some tables behind, unstamped.
    books, flows, atoms = _names()
    if not _exists(books):
        _create_logbooks(books)
    if not _exists(flows):
        _create_flowdetails(flows, books)
    _index(f"ix_{flows}_book_uuid", flows, "book_uuid")
    if not _exists(atoms):
        _create_atomdetails(atoms, flows)
    _index(f"ix_{atoms}_flow_uuid", atoms, "flow_uuid")


def _create_logbooks(name: str) -> None:
    op.create_table(
        name,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("uuid", sa.String(_UUID), nullable=False, unique=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=True),
        sa.Column("meta", _JSON, nullable=True),
        **_MYSQL,
    )


def _create_flowdetails(name: str, books: str) -> None:
    op.create_table(
        name,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("uuid", sa.String(_UUID), nullable=False, unique=True),
        sa.Column("book_uuid", sa.String(_UUID),
                  sa.ForeignKey(f"{books}.uuid", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("state", sa.String(32), nullable=True),
        sa.Column("meta", _JSON, nullable=True),
        **_MYSQL,
    )


def _create_atomdetails(name: str, flows: str) -> None:
    op.create_table(
        name,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("uuid", sa.String(_UUID), nullable=False, unique=True),
        sa.Column("flow_uuid", sa.String(_UUID),
                  sa.ForeignKey(f"{flows}.uuid", ondelete="CASCADE"), nullable=False),
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
    for table in reversed(_names()):
        op.drop_table(table)
