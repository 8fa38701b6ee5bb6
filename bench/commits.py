#!/usr/bin/env python3
"""Write transactions and SQL statements per job of one blocking conductor: N posted jobs of a
K-task linear flow, durable fenced persistence, posting excluded.

Layouts (``--layout``):

* ``memory-sqlite`` (default): memory board, SQLite file persistence.
* ``sqlite``: SQLite board and SQLite persistence in the same file (one database: a job's consume
  and the next claim ride in the transaction recording its flow's end).
* ``sqlite-apart``: SQLite board and persistence in two files.
* ``postgresql``: PostgreSQL board and persistence, the same URL (one database).
* ``postgresql-apart``: PostgreSQL board and persistence in two schemas.

Counts what reaches SQLite (``sql:COMMIT``: every transaction that wrote, each waiting for its
own WAL flush; the SQLite fast paths talk to the driver directly) and what passes through
SQLAlchemy (``sa:<VERB>``; ``sa write commits``: transactions that ran an INSERT, UPDATE,
DELETE, ``FOR UPDATE`` or a ``WITH`` of data-modifying CTEs, autocommitted statements included,
the figure for PostgreSQL), per job::

    .venv-bench/bin/python bench/commits.py 1
    .venv-bench/bin/python bench/commits.py 10 --layout postgresql
    .venv-bench/bin/python bench/commits.py 10 --timing   # as ``legato conductor`` runs

``--timing`` attaches ``TimingListener`` to every engine, as the ``legato conductor`` command does.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from legato import jobboard as jb
from legato import persistence as lp
from legato.conductor import BlockingConductor
from legato.testing import conductor as tc
from legato.testing import services

counts: collections.Counter[str] = collections.Counter()
_WRITES = ("INSERT", "UPDATE", "DELETE")
LAYOUTS = ("memory-sqlite", "sqlite", "sqlite-apart", "postgresql", "postgresql-apart")


@event.listens_for(Engine, "connect")
def _trace(dbapi_connection: Any, record: Any) -> None:
    if not hasattr(dbapi_connection, "set_trace_callback"):
        return  # not SQLite

    def seen(statement: str) -> None:
        words = statement.split()
        counts["sql:" + (words[0].upper() if words else "?")] += 1

    dbapi_connection.set_trace_callback(seen)


@event.listens_for(Engine, "begin")
def _begin(connection: Any) -> None:
    connection.info["bench_wrote"] = False


@event.listens_for(Engine, "before_cursor_execute")
def _statement(connection: Any, cursor: Any, statement: str, parameters: Any, context: Any,
               executemany: bool) -> None:
    words = statement.split(None, 1)
    verb = words[0].upper() if words else "?"
    counts["sa:" + verb] += 1
    upper = statement.upper()
    # A WITH statement writes when one of its CTEs does (PostgreSQL's data-modifying CTEs).
    if verb in _WRITES or "FOR UPDATE" in upper or (
            verb == "WITH" and any(f"({w} " in upper for w in _WRITES)):
        connection.info["bench_wrote"] = True


@event.listens_for(Engine, "commit")
def _commit(connection: Any) -> None:
    counts["sa commits"] += 1
    if connection.info.get("bench_wrote"):
        counts["sa write commits"] += 1


@contextlib.contextmanager
def _urls(layout: str, workdir: str) -> Iterator[tuple[str, str]]:
    """(board URL, persistence URL) of ``layout``."""
    if layout == "memory-sqlite":
        yield f"memory://commits-{uuid.uuid4().hex}", f"sqlite:///{workdir}/flows.db"
    elif layout == "sqlite":
        yield f"sqlite:///{workdir}/one.db", f"sqlite:///{workdir}/one.db"
    elif layout == "sqlite-apart":
        yield f"sqlite:///{workdir}/jobs.db", f"sqlite:///{workdir}/flows.db"
    elif layout == "postgresql":
        with services.postgres_url() as url:
            yield url, url
    else:
        with services.postgres_url() as board_url, services.postgres_url() as store_url:
            yield board_url, store_url


def _attach_timing(event: str, details: dict[str, Any]) -> None:
    from legato.engine.listeners import TimingListener

    TimingListener(details["engine"]).register()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("tasks", type=int)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--layout", choices=LAYOUTS, default="memory-sqlite")
    parser.add_argument("--timing", action="store_true",
                        help="record atom durations (TimingListener), as `legato conductor` does")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir, _urls(args.layout, workdir) as urls:
        board_url, store_url = urls
        store = lp.connect(store_url)
        store.upgrade()
        with jb.connect(board_url, persistence=store) as board:
            for i in range(args.jobs):
                tc.post_job(board, store, tc.steps_flow, kwargs={"steps": args.tasks},
                            name=f"job-{i}")
            counts.clear()
            conductor = BlockingConductor("commits", board, store, wait_timeout=0.05)
            if args.timing:
                conductor.notifier.register("running_start", _attach_timing)
            conductor.run(max_dispatches=args.jobs)
            seen = dict(counts)
            database = getattr(store, "database", None)  # None before shared transactions
            shared = database is not None and database == getattr(board, "database", None)
        store.close()
    print(f"{args.tasks}-task jobs{', timed' if args.timing else ''}, {args.layout} "
          f"({'one database' if shared else 'apart'}), per job:")
    for key, value in sorted(seen.items()):
        print(f"  {key:20} {value / args.jobs:6.2f}")


if __name__ == "__main__":
    main()
