#!/usr/bin/env python3
"""The floor of post -> start on this machine's PostgreSQL: bare psycopg, no Legato, no ORM.

A producer inserts one job row (autocommit; a trigger sends ``NOTIFY`` at commit) every 50 ms;
an idle worker process, woken by ``LISTEN``, starts the job after one of these paths and writes
down the time it did:

* ``queue``: claim (``UPDATE ... RETURNING``, one durable commit), then start. What a job queue
  that records no step does (two commits on the path: the post and the claim).
* ``riding``: read the job (no commit), then claim it and record its first step as ``RUNNING``
  in one statement (one durable commit). The claim riding with the first write.
* ``durable``: claim (one commit), then record the first step as ``RUNNING`` (a second commit),
  then start. Legato's path today: three commits (post, claim, first write).

Each sample is the time from just before the producer's ``INSERT`` to the worker's start, both
read from ``time.time()`` on this machine. Modes are interleaved, ``--repeat`` times; the script
prints the p50 of each::

    .venv-bench/bin/python bench/pg_floor.py
    .venv-bench/bin/python bench/pg_floor.py --samples 60 --repeat 5

``--layers`` also times one paced 10-column ``SELECT`` by primary key through each layer a
statement of Legato's goes through: psycopg alone, SQLAlchemy Core on a connection held open,
and Core with a pool checkout and check-in around it (what one board or persistence call does).

It needs only PostgreSQL (``--dsn``, default the test database on 127.0.0.1) and makes and
drops a schema of its own.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid

import psycopg

MODES = ("queue", "riding", "durable")
DSN = "postgresql://postgres@127.0.0.1:5432/test"

_SCHEMA = """
CREATE SCHEMA {s};
CREATE TABLE {s}.jobs (id bigserial PRIMARY KEY, name text NOT NULL, details jsonb NOT NULL,
                       owner text, fence integer NOT NULL DEFAULT 0);
CREATE TABLE {s}.steps (job bigint NOT NULL, step text NOT NULL, state text NOT NULL,
                        fence integer NOT NULL, PRIMARY KEY (job, step));
CREATE FUNCTION {s}.posted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_notify('{s}', NEW.id::text); RETURN NEW; END $$;
CREATE TRIGGER posted AFTER INSERT ON {s}.jobs FOR EACH ROW EXECUTE FUNCTION {s}.posted();
"""

_CLAIM = ("UPDATE {s}.jobs SET owner = %s, fence = fence + 1 "
          "WHERE id = %s AND owner IS NULL RETURNING details, fence")
_READ = "SELECT details, fence FROM {s}.jobs WHERE id = %s AND owner IS NULL"
_FIRST = "INSERT INTO {s}.steps VALUES (%s, 'step-0', 'RUNNING', %s)"
_RIDING = ("WITH c AS (UPDATE {s}.jobs SET owner = %s, fence = fence + 1 "
           "WHERE id = %s AND owner IS NULL AND fence = %s RETURNING id, fence) "
           "INSERT INTO {s}.steps SELECT id, 'step-0', 'RUNNING', fence FROM c RETURNING fence")


def worker(dsn: str, schema: str, mode: str, samples: int) -> None:
    """Start ``samples`` jobs as they are posted; print ``<job id> <time started>`` for each."""
    sql = {name: text.format(s=schema) for name, text in
           (("claim", _CLAIM), ("read", _READ), ("first", _FIRST), ("riding", _RIDING))}
    me = f"worker-{os.getpid()}"
    with psycopg.connect(dsn, autocommit=True) as listen, \
            psycopg.connect(dsn, autocommit=True) as work:
        listen.execute(f"LISTEN {schema}")
        work.execute("SELECT 1")
        print("ready", flush=True)
        for done, note in enumerate(listen.notifies(), start=1):
            job = int(note.payload)
            if mode == "riding":
                row = work.execute(sql["read"], (job,), prepare=True).fetchone()
                assert row is not None
                claimed = work.execute(sql["riding"], (me, job, row[1]), prepare=True).fetchone()
                assert claimed is not None
            else:
                row = work.execute(sql["claim"], (me, job), prepare=True).fetchone()
                assert row is not None
                if mode == "durable":
                    work.execute(sql["first"], (job, row[1]), prepare=True)
            print(job, repr(time.time()), flush=True)
            if done == samples:
                break


def one_run(dsn: str, mode: str, samples: int, pace: float) -> float:
    schema = f"floor_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(_SCHEMA.format(s=schema))
    try:
        child = subprocess.Popen(
            [sys.executable, __file__, "--worker", mode, "--schema", schema, "--dsn", dsn,
             "--samples", str(samples)], stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.5)  # the worker reaches its wait
        posted: dict[int, float] = {}
        insert = f"INSERT INTO {schema}.jobs (name, details) VALUES (%s, %s) RETURNING id"
        with psycopg.connect(dsn, autocommit=True) as producer:
            for i in range(samples):
                at = time.time()
                row = producer.execute(insert, (f"job-{i}", '{"steps": 1}'),
                                       prepare=True).fetchone()
                assert row is not None
                posted[row[0]] = at
                time.sleep(pace)
        started = {}
        for line in child.stdout:
            job, at = line.split()
            started[int(job)] = float(at)
        child.wait(timeout=30)
        if sorted(started) != sorted(posted):
            raise SystemExit(f"{mode}: {len(started)} of {len(posted)} jobs started")
        return statistics.median((started[j] - posted[j]) * 1000 for j in posted)
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


_COLUMNS = ("relname", "oid", "relnamespace", "reltype", "relowner", "relam", "relfilenode",
            "reltablespace", "relpages", "reltuples")


def layers(dsn: str, samples: int, pace: float) -> dict[str, float]:
    """p50 ms of one paced ``SELECT`` through psycopg, SQLAlchemy Core on a held connection,
    and Core with a pool checkout (interleaved, the first ten of each left out)."""
    import sqlalchemy as sa

    engine = sa.create_engine(dsn.replace("postgresql://", "postgresql+psycopg://", 1),
                              isolation_level="AUTOCOMMIT")
    table = sa.table("pg_class", *(sa.column(c) for c in _COLUMNS))
    query = sa.select(*table.c).where(table.c.oid == sa.bindparam("oid"))
    text = f"SELECT {', '.join(_COLUMNS)} FROM pg_class WHERE oid = %s"
    oid = 1259  # pg_class itself
    times: dict[str, list[float]] = {"psycopg": [], "core, held": [], "core, checkout": []}
    with psycopg.connect(dsn, autocommit=True) as raw, engine.connect() as held:
        def checked_out() -> None:
            with engine.connect() as conn:
                conn.execute(query, {"oid": oid}).fetchone()

        calls = {
            "psycopg": lambda: raw.execute(text, (oid,), prepare=True).fetchone(),
            "core, held": lambda: held.execute(query, {"oid": oid}).fetchone(),
            "core, checkout": checked_out,
        }
        for _ in range(samples + 10):
            for name, call in calls.items():
                start = time.perf_counter()
                call()
                times[name].append((time.perf_counter() - start) * 1000)
                time.sleep(pace)
    engine.dispose()
    return {name: statistics.median(values[10:]) for name, values in times.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--dsn", default=DSN)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--pace", type=float, default=0.05, help="seconds between posts")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--layers", action="store_true",
                        help="also time one SELECT through psycopg and SQLAlchemy Core")
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--schema", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.dsn, args.schema, args.worker, args.samples)
        return
    modes = args.modes.split(",")
    results: dict[str, list[float]] = {mode: [] for mode in modes}
    for _ in range(args.repeat):
        for mode in modes:
            results[mode].append(one_run(args.dsn, mode, args.samples, args.pace))
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        row = conn.execute("SELECT current_setting('server_version'), current_setting('fsync'), "
                           "current_setting('synchronous_commit')").fetchone()
    assert row is not None
    print(f"PostgreSQL {row[0]} (fsync {row[1]}, synchronous_commit {row[2]}), "
          f"{args.samples} posts {args.pace * 1000:.0f} ms apart, {args.repeat} runs per mode")
    commits = {"queue": 2, "riding": 2, "durable": 3}
    print(f"{'path':<10} {'durable commits':>15}  {'p50 per run (ms)':<28} median")
    for mode, values in results.items():
        runs = " / ".join(f"{v:.2f}" for v in values)
        print(f"{mode:<10} {commits[mode]:>15}  {runs:<28} {statistics.median(values):.2f}")
    if args.layers:
        print(f"one SELECT of {len(_COLUMNS)} columns, {args.pace * 1000:.0f} ms apart, p50:")
        for name, value in layers(args.dsn, args.samples * 2, args.pace).items():
            print(f"  {name:<16} {value:.3f} ms")


if __name__ == "__main__":
    main()
