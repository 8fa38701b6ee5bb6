#!/usr/bin/env python3
"""Conductor benchmark: Legato's conductors beside TaskFlow's, on the same servers, one run.

Measured (medians of ``--repeat`` runs):

* throughput: jobs/s for J pre-posted jobs of 1-task and 10-task linear flows, drained by 1 or 2
  conductor processes (forked after posting, released together; blocking conductors), per board
  (SQLite, PostgreSQL, Redis, ZooKeeper) and persistence (memory: each process keeps the copy it
  inherited; SQLite: one shared file); one untimed drain per board comes first, so that neither
  system pays for a server's first requests after its start;
* post->start latency p50/p99 on notifying boards: one idle conductor (a thread), a job posted
  every 50 ms from another board object; time from just before ``post`` to ``running_start``;
* stream: TaskFlow's default mode with ``--procs 0`` (the figure its documentation quotes):
  one conductor thread runs while the same process posts the jobs as fast as it can;
* post->first step on PostgreSQL, board and persistence in one database (``latency-pg``): as
  ``bench/peers.py`` times it (the logbook's save included), with each phase's share;
* takeover after SIGKILL: conductor A (a process) runs a long job, conductor B idles; A is
  SIGKILLed; time until B starts the job's step (claim TTL ``--ttl``);
* TaskFlow: ``/work/shared/bench/taskflow_reference.py`` (preload mode, blocking conductors) on the
  same Redis and ZooKeeper with the same job counts.

Run from the benchmark environment (``bench/venv.sh`` makes ``.venv-bench``)::

    .venv-bench/bin/python bench/conductor.py --repeat 3
    .venv-bench/bin/python bench/conductor.py --boards redis --no-taskflow --skip takeover

A board whose server is missing is skipped with a message.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from legato import jobboard as jb
from legato import persistence as lp
from legato.conductor import BlockingConductor
from legato.flow import Flow, LinearFlow, Task, flow_factory
from legato.persistence.base import Persistence
from legato.testing import conductor as tc
from legato.testing import services

TASKFLOW_REFERENCE = Path("/work/shared/bench/taskflow_reference.py")
BOARDS = ("sqlite", "postgresql", "redis", "zookeeper")
#: ``--metrics``: seconds between scrapes of the throughput conductors' metrics (None: off).
METRICS_SCRAPE: float | None = None


def _with_metrics(board: Any) -> dict[str, Any]:
    """Conductor options with Prometheus metrics on a registry of their own (board gauges
    included), scraped every ``METRICS_SCRAPE`` seconds by a thread, as Prometheus would."""
    if METRICS_SCRAPE is None:
        return {}
    from prometheus_client import CollectorRegistry, generate_latest

    from legato.conductor import ConductorMetrics

    registry = CollectorRegistry()
    metrics = ConductorMetrics(registry)
    metrics.watch_board(board)
    period = METRICS_SCRAPE

    def scrape() -> None:
        while True:
            generate_latest(registry)
            time.sleep(period)

    threading.Thread(target=scrape, daemon=True).start()
    return {"metrics": metrics}


@contextlib.contextmanager
def board_url(kind: str, tmp: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp / f'board-{uuid.uuid4().hex}.db'}"
        return
    if kind == "memory":
        yield f"memory://bench-{uuid.uuid4().hex}"
        return
    factory = {"postgresql": services.postgres_url, "redis": services.redis_url,
               "zookeeper": services.zookeeper_url}[kind]
    with factory() as url:
        yield url


def make_persistence(kind: str, tmp: Path) -> tuple[Persistence, str]:
    if kind == "memory":
        return lp.connect("memory://"), "memory://"
    url = f"sqlite:///{tmp / f'flows-{uuid.uuid4().hex}.db'}"
    persistence = lp.connect(url)
    persistence.upgrade()
    return persistence, url


# -- throughput -------------------------------------------------------------------------------


def _drain(url: str, persistence: Persistence | None, persistence_url: str, jobs: int,
           counter: Any, ready: Any, go: Any, done: Any) -> None:
    if persistence is None:
        persistence = lp.connect(persistence_url)
    with jb.connect(url, persistence=persistence) as board:
        conductor = BlockingConductor("bench", board, persistence, wait_timeout=0.05,
                                      **_with_metrics(board))

        def consumed(event: str, details: dict[str, Any]) -> None:
            with counter.get_lock():
                counter.value += 1
                if counter.value >= jobs:
                    done.set()

        conductor.notifier.register("job_consumed", consumed)

        def stop_when_done() -> None:
            done.wait()
            conductor.stop()

        threading.Thread(target=stop_when_done, daemon=True).start()
        ready.release()
        go.wait()
        conductor.run()


def throughput(board: str, persistence_kind: str, tasks: int, procs: int, jobs: int,
               tmp: Path) -> float | None:
    with board_url(board, tmp) as url:
        persistence, persistence_url = make_persistence(persistence_kind, tmp)
        with jb.connect(url, persistence=persistence) as poster:
            for _ in range(jobs):
                tc.post_job(poster, persistence, tc.steps_flow, kwargs={"steps": tasks})
        ctx = multiprocessing.get_context("fork")
        counter, ready, go, done = ctx.Value("i", 0), ctx.Semaphore(0), ctx.Event(), ctx.Event()
        inherited = persistence if persistence_kind == "memory" else None
        if inherited is None:
            persistence.close()
        children = [ctx.Process(target=_drain, args=(url, inherited, persistence_url, jobs,
                                                     counter, ready, go, done))
                    for _ in range(procs)]
        for child in children:
            child.start()
        for _ in children:
            ready.acquire()
        started = time.perf_counter()
        go.set()
        finished = done.wait(300)
        wall = time.perf_counter() - started
        for child in children:
            child.join(30)
            if child.is_alive():
                child.kill()
        return jobs / wall if finished else None


def stream(board: str, tasks: int, jobs: int, tmp: Path) -> float | None:
    """TaskFlow's ``stream`` mode with ``--procs 0``: one conductor thread running while this
    thread posts ``jobs`` as fast as it can (memory persistence shared by both); jobs/s from
    the start of posting to the last consume."""
    with board_url(board, tmp) as url:
        persistence = lp.connect("memory://")
        with jb.connect(url, persistence=persistence) as cboard, \
                jb.connect(url, persistence=persistence) as poster:
            conductor = BlockingConductor("stream", cboard, persistence, wait_timeout=0.05)
            consumed: list[float] = []
            done = threading.Event()

            def on_consumed(event: str, details: dict[str, Any]) -> None:
                consumed.append(time.perf_counter())
                if len(consumed) >= jobs:
                    done.set()

            conductor.notifier.register("job_consumed", on_consumed)
            thread = threading.Thread(target=conductor.run, daemon=True)
            thread.start()
            started = time.perf_counter()
            for _ in range(jobs):
                tc.post_job(poster, persistence, tc.steps_flow, kwargs={"steps": tasks})
            finished = done.wait(300)
            conductor.stop()
            thread.join(30)
            return jobs / (consumed[-1] - started) if finished else None


# -- latency ----------------------------------------------------------------------------------


def latency(board: str, samples: int, tmp: Path) -> tuple[float, float]:
    with board_url(board, tmp) as url:
        persistence = lp.connect("memory://")
        with jb.connect(url, persistence=persistence) as cboard, \
                jb.connect(url, persistence=persistence) as poster:
            conductor = BlockingConductor("latency", cboard, persistence)
            starts: dict[str, float] = {}

            def started(event: str, details: dict[str, Any]) -> None:
                starts.setdefault(details["job"].uuid, time.perf_counter())

            conductor.notifier.register("running_start", started)
            thread = threading.Thread(target=conductor.run, kwargs={"max_dispatches": samples})
            thread.start()
            time.sleep(0.5)  # let the conductor reach its idle wait
            posted: dict[str, float] = {}
            for _ in range(samples):
                book_job = _prepare(poster, persistence)
                before = time.perf_counter()
                job = poster.post("latency", book=book_job, details={})
                posted[job.uuid] = before
                time.sleep(0.05)
            thread.join(60)
            waits = sorted((starts[u] - t) * 1000 for u, t in posted.items() if u in starts)
            return statistics.median(waits), waits[int(len(waits) * 0.99) - 1]


def _prepare(board: Any, persistence: Persistence) -> Any:
    from legato import engine
    from legato.persistence.models import FlowDetail, LogBook

    book = LogBook("latency")
    flow_detail = FlowDetail("latency")
    book.add(flow_detail)
    persistence.save_logbook(book)
    engine.save_factory_details(flow_detail, tc.steps_flow, persistence=persistence)
    return persistence.get_logbook(book.uuid)


def latency_durable(samples: int) -> dict[str, float]:
    """Post -> first step on a PostgreSQL board with PostgreSQL persistence in the same
    database: one idle conductor (a thread), a 1-step job posted every 50 ms by
    ``legato.testing.conductor.post_job`` (the logbook's save included, as ``bench/peers.py``
    times it). Returns p50s in ms: ``total`` and each phase (see ``PHASES``)."""
    _count_round_trips()
    with services.postgres_url() as url:
        persistence = lp.connect(url)
        persistence.upgrade()
        ROUND_TRIPS.clear()
        IN_DRIVER.clear()
        poster_persistence = lp.connect(url)
        try:
            with jb.connect(url, persistence=persistence) as cboard, \
                    jb.connect(url, persistence=poster_persistence) as poster:
                stamps = _latency_durable_run(cboard, poster, persistence, poster_persistence,
                                              samples)
        finally:
            persistence.close()
            poster_persistence.close()
    rows = [row for row in stamps.values() if all(name in row for name, _ in PHASES)]
    result = {"total": statistics.median((r["step"] - r["t0"]) * 1000 for r in rows)}
    previous = "t0"
    for name, _ in PHASES:
        result[name] = statistics.median((r[name] - r[previous]) * 1000 for r in rows)
        thread = POSTER if name == "posted" else CONDUCTOR
        result[f"{name}_trips"] = statistics.median(
            _round_trips(r[previous], r[name], thread) for r in rows)
        result[f"{name}_driver"] = statistics.median(
            _in_driver(r[previous], r[name], thread) for r in rows)
        previous = name
    result["total_trips"] = sum(result[f"{name}_trips"] for name, _ in PHASES)
    result["statements"] = statistics.median(
        _round_trips(r["t0"], r["step"], POSTER, "statement")
        + _round_trips(r["t0"], r["step"], CONDUCTOR, "statement") for r in rows)
    return result


#: ``(time.perf_counter(), thread, what)`` for every round trip SQLAlchemy makes to a server
#: while ``latency_durable`` runs: a statement, a BEGIN, COMMIT or ROLLBACK (not in autocommit,
#: where none is sent), a new connection, or the test of a pooled connection (sent only when it
#: rested ``PING_AFTER_IDLE`` seconds); ``thread`` is ``POSTER``, ``CONDUCTOR`` or another
#: thread's name. A pool checkout without a test sends nothing and is not counted.
ROUND_TRIPS: list[tuple[float, str, str]] = []
#: ``(start, end, thread)`` of every statement's time in the driver (SQLAlchemy's
#: ``before_cursor_execute`` to ``after_cursor_execute``: sending it, the server's work, the
#: reply), so that each phase splits into the database's share and Python's around it.
IN_DRIVER: list[tuple[float, float, str]] = []
_SENT: dict[str, float] = {}
POSTER, CONDUCTOR = "MainThread", "latency-conductor"
_RESTED = "bench_rested_since"


def _count_round_trips() -> None:
    """Note every round trip through SQLAlchemy's public events, on every engine (once)."""
    import sqlalchemy as sa

    from legato._sql.engine import PING_AFTER_IDLE

    if getattr(_count_round_trips, "done", False):
        return
    _count_round_trips.done = True  # type: ignore[attr-defined]

    def note(what: str) -> None:
        ROUND_TRIPS.append((time.perf_counter(), threading.current_thread().name, what))

    def transactional(conn: Any) -> bool:
        # Autocommit may be set on the engine (``create_engine(isolation_level=...)``, as
        # Legato's persistence does on PostgreSQL), not in the connection's execution options:
        # the driver's connection says whether a BEGIN/COMMIT/ROLLBACK is sent at all.
        return getattr(conn.connection.driver_connection, "autocommit", None) is not True

    def rested(_dbapi: Any, record: Any) -> None:
        record.info[_RESTED] = time.monotonic()

    def checkout(_dbapi: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_RESTED)
        if since is not None and time.monotonic() - since >= PING_AFTER_IDLE:
            note("ping")

    def sent(*_args: Any, **_kwargs: Any) -> None:
        note("statement")
        _SENT[threading.current_thread().name] = time.perf_counter()

    def answered(*_args: Any, **_kwargs: Any) -> None:
        thread = threading.current_thread().name
        start = _SENT.pop(thread, None)
        if start is not None:
            IN_DRIVER.append((start, time.perf_counter(), thread))

    sa.event.listen(sa.Engine, "before_cursor_execute", sent)
    sa.event.listen(sa.Engine, "after_cursor_execute", answered)
    sa.event.listen(sa.Engine, "begin", lambda c: transactional(c) and note("begin"))
    sa.event.listen(sa.Engine, "commit", lambda c: transactional(c) and note("commit"))
    sa.event.listen(sa.Engine, "rollback", lambda c: transactional(c) and note("rollback"))
    sa.event.listen(sa.pool.Pool, "connect", lambda *_a: note("connect"))
    sa.event.listen(sa.pool.Pool, "checkin", rested)
    sa.event.listen(sa.pool.Pool, "checkout", checkout)


def _in_driver(start: float, end: float, thread: str) -> float:
    """Milliseconds ``thread`` spent in the driver between ``start`` and ``end``."""
    return sum(done - sent for sent, done, by in IN_DRIVER
               if by == thread and start <= sent and done <= end) * 1000


def _round_trips(start: float, end: float, thread: str, what: str | None = None) -> int:
    return sum(1 for at, by, kind in ROUND_TRIPS
               if start <= at < end and by == thread and what in (None, kind))


#: The phases of ``latency_durable``, each timed from the end of the one before.
PHASES = (
    ("posted", "post: logbook save + job insert (poster)"),
    ("woken", "NOTIFY delivered, the idle wait returns"),
    ("claimed", "claim_next"),
    ("built", "read the flow, build the engine"),
    ("running", "compile, prepare, validate"),
    ("step", "engine's first write, then the step starts"),
)


def _latency_durable_run(cboard: Any, poster: Any, persistence: Persistence,
                         poster_persistence: Persistence,
                         samples: int) -> dict[str, dict[str, float]]:
    stamps: dict[str, dict[str, float]] = {}
    current: list[str] = []  # the job being posted: the conductor's stamps go to it

    def stamp(name: str, job: str | None = None) -> None:
        if job is None and not current:
            return
        stamps.setdefault(job or current[-1], {}).setdefault(name, time.perf_counter())

    wait, claim_next = cboard.wait, cboard.claim_next

    def timed_wait(timeout: float | None = None) -> bool:
        woken = bool(wait(timeout))
        if woken and current and "posted" in stamps.get(current[-1], {}):
            stamp("woken")
        return woken

    def timed_claim(*args: Any, **kwargs: Any) -> Any:
        job = claim_next(*args, **kwargs)
        if job is not None:
            stamp("claimed", job.name)
        return job

    cboard.wait, cboard.claim_next = timed_wait, timed_claim  # public methods, wrapped
    conductor = BlockingConductor("latency", cboard, persistence)
    conductor.notifier.register("compilation_start", lambda _e, d: stamp("built", d["job"].name))
    conductor.notifier.register("running_start", lambda _e, d: stamp("running", d["job"].name))
    STEP_STAMPS.clear()
    thread = threading.Thread(target=conductor.run, kwargs={"max_dispatches": samples},
                              name=CONDUCTOR)
    thread.start()
    time.sleep(0.5)  # let the conductor reach its idle wait
    for i in range(samples):
        name = f"lat-{i:03d}"
        current.append(name)
        stamp("t0")
        tc.post_job(poster, poster_persistence, stamped_flow, kwargs={"job": name}, name=name)
        stamp("posted")
        time.sleep(0.05)
    thread.join(60)
    for job, at in STEP_STAMPS.items():
        stamps.setdefault(job, {})["step"] = at
    return stamps


#: ``StampedStep`` writes the time its step started here (the conductor runs in this process).
STEP_STAMPS: dict[str, float] = {}


class StampedStep(Task):
    def __init__(self, job: str) -> None:
        super().__init__("stamped")
        self.job = job

    def execute(self) -> None:
        STEP_STAMPS.setdefault(self.job, time.perf_counter())


@flow_factory
def stamped_flow(job: str) -> Flow:
    """One task that notes when it started."""
    return LinearFlow("stamped").add(StampedStep(job))


# -- takeover after SIGKILL -------------------------------------------------------------------


def takeover(board: str, ttl: float, tmp: Path) -> float:
    log = tmp / f"takeover-{uuid.uuid4().hex}.log"
    with board_url(board, tmp) as url:
        persistence, persistence_url = make_persistence("sqlite", tmp)
        with jb.connect(url, persistence=persistence) as poster:
            tc.post_job(poster, persistence, tc.side_effect_flow,
                        kwargs={"steps": 2, "label": "t", "log_path": str(log), "pause": 3.0})
        command = [sys.executable, "-m", "legato.testing.conductor", url, persistence_url,
                   "--ttl", str(ttl)]
        first = subprocess.Popen([*command, "--name", "a"], stdout=subprocess.PIPE)
        second: subprocess.Popen[bytes] | None = None
        try:
            _wait_for_line(log, f" {first.pid} ")
            second = subprocess.Popen([*command, "--name", "b"], stdout=subprocess.PIPE)
            assert second.stdout is not None
            second.stdout.readline()  # "ready ..."
            time.sleep(0.5)
            killed = time.perf_counter()
            first.send_signal(signal.SIGKILL)
            _wait_for_line(log, f" {second.pid} ")
            return time.perf_counter() - killed
        finally:
            for proc in (first, second):
                if proc is not None:
                    proc.kill()
                    proc.wait()


def _wait_for_line(log: Path, needle: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and needle in log.read_text():
            return
        time.sleep(0.005)
    raise TimeoutError(f"{needle!r} never appeared in {log}")


# -- TaskFlow ---------------------------------------------------------------------------------


def taskflow(board: str, persistence: str, tasks: int, procs: int, jobs: int,
             repeat: int, tmp: Path, mode: str = "preload") -> float | None:
    out = tmp / f"taskflow-{uuid.uuid4().hex}.jsonl"
    command = [sys.executable, str(TASKFLOW_REFERENCE), "--board", board, "--persistence",
               persistence, "--conductor", "blocking", "--procs", str(procs), "--mode",
               mode, "--jobs", str(jobs), "--tasks", str(tasks), "--repeat", str(repeat),
               "--json-out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if result.returncode != 0 or not out.exists():
        print(f"  taskflow failed: {result.stderr.strip()[-300:]}", flush=True)
        return None
    for line in out.read_text().splitlines():
        data = json.loads(line)
        if data.get("kind") == "summary":
            value: float = data["summary"]["jobs_per_s"]
            return value
    return None


# -- main -------------------------------------------------------------------------------------


def median_of(repeat: int, fn: Any, *args: Any) -> float | None:
    values = [v for v in (fn(*args) for _ in range(repeat)) if v is not None]
    return statistics.median(values) if values else None


def fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def run_throughput(args: argparse.Namespace, boards: list[str], tmp: Path,
                   results: list[dict[str, Any]]) -> None:
    print("system   board       persistence tasks procs  jobs/s", flush=True)
    for board in boards:
        # One untimed drain first: the server's first requests after a start (ZooKeeper's JIT
        # especially) are slow, and whichever system ran first would pay for it.
        throughput(board, "memory", 1, 1, args.jobs, tmp)
        for persistence in args.persistence.split(","):
            for tasks in map(int, args.tasks.split(",")):
                for procs in map(int, args.procs.split(",")):
                    jobs = args.jobs if persistence == "memory" else args.sqlite_jobs
                    row: dict[str, Any] = {"kind": "throughput", "board": board,
                                           "persistence": persistence, "tasks": tasks,
                                           "procs": procs, "jobs": jobs}
                    label = f"{board:11} {persistence:11} {tasks:5} {procs:5}"
                    legato = median_of(args.repeat, throughput, board, persistence, tasks,
                                       procs, jobs, tmp)
                    row["legato_jobs_per_s"] = legato
                    print(f"legato   {label}  {fmt(legato)}", flush=True)
                    if board in ("redis", "zookeeper") and not args.no_taskflow:
                        ref = taskflow(board, persistence, tasks, procs, jobs, args.repeat, tmp)
                        row["taskflow_jobs_per_s"] = ref
                        print(f"taskflow {label}  {fmt(ref)}", flush=True)
                    results.append(row)


def run_stream(args: argparse.Namespace, boards: list[str], tmp: Path,
               results: list[dict[str, Any]]) -> None:
    print("stream mode (conductor thread + poster in one process, memory persistence, 1 task)",
          flush=True)
    for board in [b for b in boards if b in ("redis", "zookeeper")]:
        legato = median_of(args.repeat, stream, board, 1, args.jobs, tmp)
        ref = None if args.no_taskflow else taskflow(board, "memory", 1, 0, args.jobs,
                                                     args.repeat, tmp, mode="stream")
        results.append({"kind": "stream", "board": board, "tasks": 1, "jobs": args.jobs,
                        "legato_jobs_per_s": legato, "taskflow_jobs_per_s": ref})
        print(f"stream   {board:11} legato {fmt(legato)} jobs/s  taskflow {fmt(ref)} jobs/s",
              flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--boards", default=",".join(BOARDS))
    parser.add_argument("--persistence", default="memory,sqlite")
    parser.add_argument("--tasks", default="1,10")
    parser.add_argument("--procs", default="1,2")
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--sqlite-jobs", type=int, default=100,
                        help="jobs per run with SQLite persistence (TaskFlow is slow there)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ttl", type=float, default=2.0)
    parser.add_argument("--skip", default="",
                        help="comma list of: throughput,stream,latency,latency-pg,takeover")
    parser.add_argument("--no-taskflow", action="store_true")
    parser.add_argument("--json-out", default=None)
    parser.add_argument("--metrics", type=float, default=None, metavar="SECONDS",
                        help="throughput conductors keep Prometheus metrics, scraped every "
                             "SECONDS (board gauges included)")
    args = parser.parse_args(argv)
    global METRICS_SCRAPE  # read by the forked conductor processes
    METRICS_SCRAPE = args.metrics
    skip = set(filter(None, args.skip.split(",")))
    boards = args.boards.split(",")
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="legato-bench-") as tmpdir:
        tmp = Path(tmpdir)
        if "throughput" not in skip:
            run_throughput(args, boards, tmp, results)
        if "stream" not in skip:
            run_stream(args, boards, tmp, results)
        if "latency" not in skip:
            for board in [b for b in boards if b != "sqlite"] + ["memory"]:
                p50, p99 = latency(board, 40, tmp)
                results.append({"kind": "latency", "board": board, "p50_ms": p50,
                                "p99_ms": p99})
                print(f"post->start {board:11} p50={p50:.1f} ms p99={p99:.1f} ms", flush=True)
        if "latency-pg" not in skip and "postgresql" in boards:
            runs = [latency_durable(40) for _ in range(args.repeat)]
            row = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
            results.append({"kind": "latency-pg", **row})
            print(f"post->first step, PG board + PG persistence: p50={row['total']:.1f} ms "
                  f"(median of {len(runs)} runs of 40)", flush=True)
            print(f"  {row['total_trips']:4.0f} round trips in all ({row['statements']:.0f} "
                  "statements); per phase (of which in the driver):", flush=True)
            for name, what in PHASES:
                print(f"  {row[name]:6.2f} ms ({row[name + '_driver']:4.2f}) "
                      f"{row[name + '_trips']:4.0f} trips  {what}", flush=True)
        if "takeover" not in skip:
            for board in boards:
                value = median_of(args.repeat, takeover, board, args.ttl, tmp)
                results.append({"kind": "takeover", "board": board, "ttl": args.ttl,
                                "seconds": value})
                print(f"takeover {board:11} ttl={args.ttl}s: {fmt(value, 2)} s", flush=True)
    if args.json_out:
        with open(args.json_out, "a") as out:
            for row in results:
                out.write(json.dumps({**row, "pid": os.getpid()}) + "\n")


if __name__ == "__main__":
    main()
