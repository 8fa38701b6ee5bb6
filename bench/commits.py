#!/usr/bin/env python3
"""Write transactions and SQL statements per job of one blocking conductor: memory board,
SQLite file persistence (durable, fenced), N posted jobs of a K-task linear flow.

Counts what reaches SQLite (``sql:COMMIT`` is the number of write transactions, each waiting for
its own WAL flush) and what passes through SQLAlchemy, per job, posting excluded::

    .venv-bench/bin/python bench/commits.py 1
    .venv-bench/bin/python bench/commits.py 10
    .venv-bench/bin/python bench/commits.py 10 --timing   # as ``legato conductor`` runs

``--timing`` attaches ``TimingListener`` to every engine, as the ``legato conductor`` command does.
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import uuid
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from legato import jobboard as jb
from legato import persistence as lp
from legato.conductor import BlockingConductor
from legato.testing import conductor as tc

counts: collections.Counter[str] = collections.Counter()


@event.listens_for(Engine, "connect")
def _trace(dbapi_connection: Any, record: Any) -> None:
    def seen(statement: str) -> None:
        words = statement.split()
        counts["sql:" + (words[0].upper() if words else "?")] += 1

    dbapi_connection.set_trace_callback(seen)


@event.listens_for(Engine, "commit")
def _commit(connection: Any) -> None:
    counts["sqlalchemy commits"] += 1


def _attach_timing(event: str, details: dict[str, Any]) -> None:
    from legato.engine.listeners import TimingListener

    TimingListener(details["engine"]).register()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("tasks", type=int)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--timing", action="store_true",
                        help="record atom durations (TimingListener), as `legato conductor` does")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        store = lp.connect(f"sqlite:///{workdir}/flows.db")
        store.upgrade()
        with jb.connect(f"memory://commits-{uuid.uuid4().hex}", persistence=store) as board:
            for i in range(args.jobs):
                tc.post_job(board, store, tc.steps_flow, kwargs={"steps": args.tasks},
                            name=f"job-{i}")
            counts.clear()
            conductor = BlockingConductor("commits", board, store, wait_timeout=0.05)
            if args.timing:
                conductor.notifier.register("running_start", _attach_timing)
            conductor.run(max_dispatches=args.jobs)
            seen = dict(counts)
        store.close()
    print(f"{args.tasks}-task jobs{', timed' if args.timing else ''}, per job:")
    for key, value in sorted(seen.items()):
        print(f"  {key:20} {value / args.jobs:6.2f}")


if __name__ == "__main__":
    main()
