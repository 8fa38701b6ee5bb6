"""Statements rendered once for the driver: a hot statement built once (a post, a claim) still
costs a compiled-cache lookup and per-parameter processing on every ``Connection.execute``;
rendered once, it runs with ``Connection.exec_driver_sql`` and a dict of its parameters, the
few that need processing (a float column's ``float()``) processed here.

Only for PostgreSQL drivers taking named ``pyformat`` parameters (psycopg), and statements
whose parameters are all plain (no expanding ``IN``, no callables, no literal rendering).
Rows come back as the driver gives them: fit for columns whose types process no results
(text, integers, floats) — the SQL jobboard's and persistence's tables.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa

__all__ = ["Rendered", "render"]


@dataclasses.dataclass(frozen=True)
class Rendered:
    """A statement rendered for the driver: its SQL, the values of the parameters the statement
    fixes itself, and the processing of the parameters that need it."""

    sql: str
    fixed: Mapping[str, Any]
    processors: tuple[tuple[str, Callable[[Any], Any]], ...]

    def params(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The driver's parameters for ``values`` (the statement's own parameters added)."""
        params = {**self.fixed, **values}
        for name, process in self.processors:
            if name in params:
                params[name] = process(params[name])
        return params

    def execute(self, conn: sa.Connection, values: Mapping[str, Any]) -> sa.CursorResult[Any]:
        """Run on ``conn`` with ``values``."""
        return conn.exec_driver_sql(self.sql, self.params(values))


def render(statement: sa.Executable, dialect: sa.Dialect, *,
           processed: Callable[[Any], bool] = lambda _type: True) -> Rendered | None:
    """``statement`` rendered once for ``dialect``; None when it cannot be (not PostgreSQL with
    named parameters, a parameter only SQLAlchemy can fill in at execution, or one the caller
    passes whose type needs processing and ``processed(type)`` refuses)."""
    if dialect.name != "postgresql" or dialect.paramstyle != "pyformat":
        return None
    compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
    fixed: dict[str, Any] = {}
    processors: list[tuple[str, Callable[[Any], Any]]] = []
    for bind, name in compiled.bind_names.items():
        if bind.expanding or bind.literal_execute or bind.callable is not None:
            return None
        process = bind.type.bind_processor(dialect)
        if not bind.required:
            fixed[name] = bind.value if process is None else process(bind.value)
        elif process is not None:
            if not processed(bind.type):
                return None
            processors.append((name, process))
    return Rendered(str(compiled.string), fixed, tuple(processors))
