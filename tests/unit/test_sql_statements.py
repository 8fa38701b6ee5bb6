"""The PostgreSQL ``update_many`` statement rendered once per shape (``pg_many_sql``)."""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import psycopg

from legato.persistence.sql._statements import ManyShape, pg_many_sql

_STEP = ManyShape(flow=(), take=False, fenced=True, started=False, upserted=(),
                  updated=(("state", "results"), ("state",)), ended=False)


def test_a_step_is_rendered_once_with_named_parameters() -> None:
    dialect = psycopg.dialect()
    sql = pg_many_sql(_STEP, dialect)
    assert sql is not None and sql.startswith("WITH w_flow AS")
    assert "%(a1_state)s" in sql and "FOR SHARE" in sql
    assert pg_many_sql(_STEP, dialect) is sql  # one rendering per shape and dialect


def test_a_dialect_without_named_parameters_gets_no_text() -> None:
    # The backend then runs the statement itself through SQLAlchemy.
    assert pg_many_sql(_STEP, psycopg.dialect(paramstyle="format")) is None
