"""Statements rendered once for the driver (``legato._sql.rendered``)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import psycopg

from legato._sql.rendered import render

_T = sa.table("t", sa.column("a", sa.Double()), sa.column("b", sa.Text()))


def test_a_statement_is_rendered_with_its_fixed_and_processed_parameters() -> None:
    statement = sa.insert(_T).values(
        a=sa.bindparam("a", type_=sa.Double()),
        b=sa.bindparam("b", type_=sa.Text()) + sa.literal("!", sa.Text()))
    rendered = render(statement, psycopg.dialect())
    assert rendered is not None
    assert "%(a)s" in rendered.sql and "%(b)s" in rendered.sql
    params = rendered.params({"a": 2, "b": "x", "unused": 1})
    # The float column's processing runs here (as SQLAlchemy's would), the literal is fixed.
    assert params["a"] == 2.0 and isinstance(params["a"], float)
    assert params["b"] == "x" and "!" in params.values()


def test_what_only_sqlalchemy_can_fill_in_is_not_rendered() -> None:
    expanding = sa.select(_T.c.b).where(_T.c.b.in_(sa.bindparam("bs", expanding=True)))
    assert render(expanding, psycopg.dialect()) is None
    assert render(sa.select(_T.c.b), psycopg.dialect(paramstyle="format")) is None
    assert render(sa.select(_T.c.b), sqlite.dialect()) is None
