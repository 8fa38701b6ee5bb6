#!/usr/bin/env python3
"""CPU per drained job: one in-process blocking conductor drains N posted K-task jobs, and the
process's own CPU time (``getrusage``) is divided by N — the worker's share of a job's cost,
which wall time on a shared machine hides. Board and persistence in one PostgreSQL database (a
fresh schema, dropped afterwards) unless ``--board``/``--persistence`` say otherwise::

    .venv-bench/bin/python bench/drain_cpu.py 300 1

Prints jobs/s, wall and CPU milliseconds per job, and per job while draining (posting
excluded) the database's committed transactions (``pg_stat_database``) and the server's WAL
flushes (``pg_stat_wal.wal_sync``, the whole server's: run it on a quiet one). ``--simultaneous
N`` drains with a ``NonBlockingConductor`` running up to N jobs at once instead; its jobs run on
the executor's threads, which ``--profile`` does not see.
"""

from __future__ import annotations

import argparse
import cProfile
import resource
import time
import uuid
from typing import Any

import psycopg

from legato import jobboard as jb
from legato import persistence as lp
from legato.conductor import BlockingConductor, NonBlockingConductor
from legato.testing import conductor as tc

SERVER = "postgresql://postgres@127.0.0.1:5432"


def _commits(database: str) -> tuple[int, int]:
    """The database's committed transactions and the server's WAL flushes so far."""
    with psycopg.connect(f"{SERVER}/{database}", autocommit=True) as conn:
        row = conn.execute("SELECT xact_commit, (SELECT wal_sync FROM pg_stat_wal) "
                           "FROM pg_stat_database WHERE datname = %s", (database,)).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("jobs", type=int)
    parser.add_argument("tasks", type=int)
    parser.add_argument("--database", default="test")
    parser.add_argument("--simultaneous", type=int, metavar="N",
                        help="drain with a NonBlockingConductor running N jobs at once")
    parser.add_argument("--profile", metavar="FILE",
                        help="write cProfile stats of the drain to FILE")
    args = parser.parse_args()
    schema = f"drain_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{SERVER}/{args.database}", autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"{SERVER}/{args.database}?options=-csearch_path%3D{schema}"
    try:
        store = lp.connect(url)
        store.upgrade()
        with jb.connect(url, persistence=store) as board:
            for i in range(args.jobs):
                tc.post_job(board, store, tc.steps_flow, kwargs={"steps": args.tasks},
                            name=f"job-{i}")
            conductor: Any
            if args.simultaneous:
                conductor = NonBlockingConductor("drain", board, store, wait_timeout=0.05,
                                                 max_simultaneous_jobs=args.simultaneous)
            else:
                conductor = BlockingConductor("drain", board, store, wait_timeout=0.05)
            done = [0]

            def consumed(event: str, details: dict[str, Any]) -> None:
                done[0] += 1

            conductor.notifier.register("job_consumed", consumed)
            before = _commits(args.database)
            used = resource.getrusage(resource.RUSAGE_SELF)
            profiler = cProfile.Profile() if args.profile else None
            started = time.perf_counter()
            if profiler is not None:
                profiler.enable()
            conductor.run(max_dispatches=args.jobs)
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(args.profile)
            wall = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_SELF)
            now = _commits(args.database)
            commits, syncs = now[0] - before[0], now[1] - before[1]
        store.close()
    finally:
        with psycopg.connect(f"{SERVER}/{args.database}", autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
    cpu = (after.ru_utime - used.ru_utime) + (after.ru_stime - used.ru_stime)
    n = done[0]
    print(f"{n} jobs of {args.tasks} task(s): {n / wall:.0f} jobs/s, wall {wall / n * 1000:.2f} "
          f"ms/job, CPU {cpu / n * 1000:.2f} ms/job, {commits / n:.1f} transactions/job, "
          f"{syncs / n:.1f} WAL flushes/job")


if __name__ == "__main__":
    main()
