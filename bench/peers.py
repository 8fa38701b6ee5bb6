#!/usr/bin/env python3
"""Peers benchmark: Legato beside DBOS Transact, Procrastinate and Celery, one machine, one run.

Systems (``--systems``):

* ``legato-redis``: Legato, Redis board + PostgreSQL persistence (every step recorded durably);
* ``legato-pg``: Legato, PostgreSQL board + PostgreSQL persistence, one database, a
  ``BlockingConductor`` per worker (one job at a time); ``legato-pg-4``: the same with a
  ``NonBlockingConductor`` running up to 4 jobs at once per worker (as ``dbos-8`` is DBOS with up
  to 8 workflows per worker);
* ``dbos``: DBOS Transact, a ``@DBOS.workflow`` of ``@DBOS.step`` s on a DBOS queue (every step
  checkpointed in PostgreSQL); ``dbos-8``: the same queue with ``worker_concurrency=8``;
* ``procrastinate``: Procrastinate on PostgreSQL, one job per step, each step deferring the next
  (the job rows are durable; a step's result is not recorded);
* ``celery``: Celery on Redis, one task per step (a ``chain``), no result backend (not durable:
  Redis runs as configured on this machine, and an acknowledged message is gone).

Workloads (``--workloads``): ``1x1``, ``1x2``, ``10x1``, ``10x2`` (steps x worker processes;
``--jobs1`` / ``--jobs10`` jobs, pre-posted, then the workers are released together) and
``latency`` (one idle worker, a 1-step job posted every 50 ms; post -> first step p50; each
repeat runs its latency runs first, each after waiting, up to a minute, for the 1-minute load
average to fall below 1, so that the throughput runs before it do not count in an "idle worker"
figure).
Throughput is jobs/s from the first step's start to the last step's end. Every step appends one
line to a log file; each run checks that every step of every job ran exactly once. On the rows
whose state lives in PostgreSQL the bench counts the database's committed transactions
(``pg_stat_database.xact_commit``) while the workers drain, per job (its own completion polls
subtracted). Each run gets a fresh database ``bench_peers_<random>`` (dropped afterwards) and a
fresh Redis key prefix (deleted afterwards). Systems alternate within each repeat; the figures are
medians of ``--repeat``.

Set up with ``bench/venv.sh`` then ``bench/venv-peers.sh``; run::

    .venv-bench/bin/python bench/peers.py --repeat 3
    .venv-bench/bin/python bench/peers.py --quick
    .venv-bench/bin/python bench/peers.py --systems legato-pg,dbos --workloads 1x1,latency
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import os
import platform
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from legato.flow import Flow, LinearFlow, Task, flow_factory

PG_SERVER = os.environ.get("LEGATO_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
REDIS_SERVER = os.environ.get("LEGATO_BENCH_REDIS", "redis://127.0.0.1:6379/0")
SYSTEMS = ("legato-redis", "legato-pg", "legato-pg-4", "dbos", "dbos-8", "procrastinate", "celery")
#: DBOS's two queues: the goals take the better of them on each row.
DBOS = ("dbos", "dbos-8")
WORKLOADS = ("1x1", "1x2", "10x1", "10x2", "latency")
DURABILITY = {
    "legato-redis": "every step recorded (PG persistence)",
    "legato-pg": "every step recorded (PG)",
    "legato-pg-4": "every step recorded (PG)",
    "dbos": "every step checkpointed (PG)",
    "dbos-8": "every step checkpointed (PG)",
    "procrastinate": "job rows only (PG)",
    "celery": "not durable (Redis)",
}
STEP_LOG = os.environ.get("PEERS_STEP_LOG", "")
#: Seconds between a DBOS worker's queue polls (DBOS's default is 1.0; it is not woken by an
#: enqueue from a client); ``--dbos-poll``, passed on to the workers.
DBOS_POLL = float(os.environ.get("PEERS_DBOS_POLL", "0.01"))


def log_step(job: str, step: int) -> None:
    """Append ``<job> <step> <start> <end> <pid>`` to the step log: one write, O_APPEND."""
    start = time.time()
    line = f"{job} {step} {start:.6f} {time.time():.6f} {os.getpid()}\n".encode()
    fd = os.open(STEP_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def commit_ms(url: str, count: int = 200) -> float:
    """Median time of an autocommitted single-row INSERT: what one durable write costs here."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE peers_commit (id serial PRIMARY KEY, v int)")
        times = []
        for i in range(count):
            started = time.perf_counter()
            conn.execute("INSERT INTO peers_commit (v) VALUES (%s)", (i,))
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


# -- per-run resources ---------------------------------------------------------------------


@contextlib.contextmanager
def fresh_env(tmp: Path) -> Iterator[dict[str, str]]:
    """A fresh PostgreSQL database and Redis key prefix, a step log; all removed afterwards."""
    import psycopg
    import redis

    tag = f"bench_peers_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{tag}"')
    log = tmp / f"{tag}.log"
    try:
        yield {
            "tag": tag,
            "pg": f"{PG_SERVER}/{tag}",
            "redis": REDIS_SERVER,
            "prefix": tag,
            "log": str(log),
        }
    finally:
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{tag}" WITH (FORCE)')
        client = redis.Redis.from_url(REDIS_SERVER)
        try:
            keys = list(client.scan_iter(match=f"{tag}*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()
        log.unlink(missing_ok=True)


def xact_commit(tag: str) -> int:
    import psycopg

    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (tag,)
        ).fetchone()
    return int(row[0]) if row else 0


# -- Legato --------------------------------------------------------------------------------


class PeerStep(Task):
    def __init__(self, job: str, index: int) -> None:
        super().__init__(f"step-{index}")
        self.job, self.index = job, index

    def execute(self) -> None:
        log_step(self.job, self.index)


@flow_factory
def peer_flow(job: str, steps: int) -> Flow:
    """``steps`` tasks, each appending its line to the step log."""
    return LinearFlow("peer").add(*(PeerStep(job, i) for i in range(steps)))


class Legato:
    """Legato: one conductor per worker process (blocking, or non-blocking with ``SIMULTANEOUS``
    jobs at once for ``legato-pg-4``); board and persistence by URL."""

    SIMULTANEOUS = {"legato-pg-4": 4}

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name, self.env = name, env
        self.persistence_url = env["pg"]
        if name.startswith("legato-pg"):
            self.board_url = env["pg"]
        else:
            sep = "&" if "?" in env["redis"] else "?"
            self.board_url = f"{env['redis']}{sep}namespace={env['prefix']}"
        self.done_log = env["log"] + ".consumed"

    def setup(self) -> None:
        from legato import persistence as lp

        persistence = lp.connect(self.persistence_url)
        persistence.upgrade()
        persistence.close()

    def post(self, jobs: list[str], steps: int, pace: float = 0.0) -> list[float]:
        from legato import jobboard as jb
        from legato import persistence as lp
        from legato.testing import conductor as tc

        stamps = []
        persistence = lp.connect(self.persistence_url)
        try:
            with jb.connect(self.board_url, persistence=persistence) as board:
                for job in jobs:
                    stamps.append(time.time())
                    tc.post_job(board, persistence, peer_flow, kwargs={"job": job, "steps": steps})
                    if pace:
                        time.sleep(pace)
        finally:
            persistence.close()
        return stamps

    def done(self, jobs: int, steps: int) -> bool:
        path = Path(self.done_log)
        return path.exists() and path.read_bytes().count(b"\n") >= jobs

    def work(self, ready: Any) -> None:
        from legato import jobboard as jb
        from legato import persistence as lp
        from legato.conductor import BlockingConductor, NonBlockingConductor

        persistence = lp.connect(self.persistence_url)
        with jb.connect(self.board_url, persistence=persistence) as board:
            name, at_once = f"w{os.getpid()}", self.SIMULTANEOUS.get(self.name)
            conductor = (BlockingConductor(name, board, persistence) if at_once is None else
                         NonBlockingConductor(name, board, persistence,
                                              max_simultaneous_jobs=at_once))

            def consumed(event: str, details: dict[str, Any]) -> None:
                fd = os.open(self.done_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    os.write(fd, b"1\n")
                finally:
                    os.close(fd)

            conductor.notifier.register("job_consumed", consumed)
            signal.signal(signal.SIGTERM, lambda *_: conductor.stop())
            ready()
            conductor.run()
        persistence.close()


# -- DBOS Transact ---------------------------------------------------------------------------


class Dbos:
    """DBOS Transact: a workflow of steps, enqueued by ``DBOSClient`` on a queue the workers
    (``DBOS.launch()``) dequeue from."""

    QUEUE = "peers"

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name, self.env = name, env
        self.url = env["pg"]
        self.polls = 0

    def _config(self) -> dict[str, Any]:
        return {
            "name": "bench_peers",
            "system_database_url": self.url,
            "executor_id": f"w{os.getpid()}",
            "log_level": "WARNING",
        }

    def setup(self) -> None:
        # DBOS creates its schema and the queue's row at launch; the client only enqueues.
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--worker",
                self.name,
                "--env",
                json.dumps(self.env),
                "--setup-only",
            ],
            check=True,
        )

    def post(self, jobs: list[str], steps: int, pace: float = 0.0) -> list[float]:
        from dbos import DBOSClient

        client = DBOSClient(system_database_url=self.url)
        stamps = []
        try:
            for job in jobs:
                stamps.append(time.time())
                client.enqueue(
                    {"queue_name": self.QUEUE, "workflow_name": "peer_workflow"}, job, steps
                )
                if pace:
                    time.sleep(pace)
        finally:
            client.destroy()
        return stamps

    def done(self, jobs: int, steps: int) -> bool:
        import psycopg

        self.polls += 1
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM dbos.workflow_status WHERE status = 'SUCCESS'"
            ).fetchone()
        return bool(row and row[0] >= jobs)

    def work(self, ready: Any, setup_only: bool = False) -> None:
        from dbos import DBOS

        @DBOS.step()
        def peer_step(job: str, index: int) -> None:
            log_step(job, index)

        @DBOS.workflow(name="peer_workflow")
        def peer_workflow(job: str, steps: int) -> None:
            for index in range(steps):
                peer_step(job, index)

        DBOS(config=self._config())  # type: ignore[arg-type]
        if setup_only:
            DBOS.launch()
            DBOS.register_queue(
                self.QUEUE,
                worker_concurrency=8 if self.name == "dbos-8" else None,
                polling_interval_sec=DBOS_POLL,
            )
            DBOS.destroy()
            return
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        ready()
        DBOS.launch()
        stop.wait()
        DBOS.destroy()


# -- Procrastinate ---------------------------------------------------------------------------


def _procrastinate_app(url: str) -> Any:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))

    @app.task(name="peer_step", queue="peers")
    def peer_step(job: str, index: int, steps: int) -> None:
        log_step(job, index)
        if index + 1 < steps:
            peer_step.defer(job=job, index=index + 1, steps=steps)

    return app


class Procrastinate:
    """Procrastinate: one job per step, each step deferring the next; ``app.run_worker``."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name, self.env = name, env
        self.url = env["pg"]
        self.polls = 0

    def setup(self) -> None:
        app = _procrastinate_app(self.url)
        with app.open():
            app.schema_manager.apply_schema()

    def post(self, jobs: list[str], steps: int, pace: float = 0.0) -> list[float]:
        app = _procrastinate_app(self.url)
        stamps = []
        with app.open():
            task = app.tasks["peer_step"]
            for job in jobs:
                stamps.append(time.time())
                task.defer(job=job, index=0, steps=steps)
                if pace:
                    time.sleep(pace)
        return stamps

    def done(self, jobs: int, steps: int) -> bool:
        import psycopg

        self.polls += 1
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
            ).fetchone()
        return bool(row and row[0] >= jobs * steps)

    def work(self, ready: Any) -> None:
        app = _procrastinate_app(self.url)
        ready()
        app.run_worker(queues=["peers"], wait=True, install_signal_handlers=True)


# -- Celery ----------------------------------------------------------------------------------


def _celery_app(env: dict[str, str]) -> Any:
    from celery import Celery

    app = Celery("peers", broker=env["redis"], set_as_current=True)
    app.conf.update(
        task_ignore_result=True,
        worker_hijack_root_logger=False,
        broker_transport_options={"global_keyprefix": env["prefix"] + ":"},
        broker_connection_retry_on_startup=True,
        worker_send_task_events=False,
    )

    @app.task(name="peer_step", shared=False)
    def peer_step(job: str, index: int) -> None:
        log_step(job, index)

    return app


class CeleryPeer:
    """Celery: a job is a ``chain`` of one task per step; solo-pool workers, one per process."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name, self.env = name, env

    def setup(self) -> None:
        pass

    def post(self, jobs: list[str], steps: int, pace: float = 0.0) -> list[float]:
        from celery import chain

        app = _celery_app(self.env)
        task = app.tasks["peer_step"]
        stamps = []
        for job in jobs:
            stamps.append(time.time())
            if steps == 1:
                task.delay(job, 0)
            else:
                chain(*(task.si(job, i) for i in range(steps))).delay()
            if pace:
                time.sleep(pace)
        app.close()
        return stamps

    def done(self, jobs: int, steps: int) -> bool:
        return True  # no state beyond the step log

    def work(self, ready: Any) -> None:
        app = _celery_app(self.env)
        worker = app.Worker(
            pool="solo",
            concurrency=1,
            loglevel="WARNING",
            quiet=True,
            without_heartbeat=True,
            without_gossip=True,
            without_mingle=True,
        )
        ready()
        worker.start()


#: The package each system needs, checked before a run.
PACKAGES = {
    "legato-redis": "legato",
    "legato-pg": "legato",
    "legato-pg-4": "legato",
    "dbos": "dbos",
    "dbos-8": "dbos",
    "procrastinate": "procrastinate",
    "celery": "celery",
}
ADAPTERS: dict[str, Any] = {
    "legato-redis": Legato,
    "legato-pg": Legato,
    "legato-pg-4": Legato,
    "dbos": Dbos,
    "dbos-8": Dbos,
    "procrastinate": Procrastinate,
    "celery": CeleryPeer,
}


# -- a run -----------------------------------------------------------------------------------


def read_log(path: str) -> list[tuple[str, int, float, float]]:
    if not os.path.exists(path):
        return []
    rows = []
    # A step may be appending its line while this reads: a line without its newline yet is
    # not read (the next read has it whole).
    for line in Path(path).read_text().split("\n")[:-1]:
        job, step, start, end, _ = line.split()
        rows.append((job, int(step), float(start), float(end)))
    return rows


def check_once(rows: list[tuple[str, int, float, float]], jobs: list[str], steps: int) -> str:
    """ "ok", or what ran twice or never."""
    counts = Counter((job, step) for job, step, _, _ in rows)
    twice = sum(1 for n in counts.values() if n > 1)
    missing = sum(1 for job in jobs for step in range(steps) if (job, step) not in counts)
    return "ok" if not twice and not missing else f"{twice} twice, {missing} missing"


def start_workers(system: str, env: dict[str, str], procs: int) -> list[subprocess.Popen[str]]:
    command = [sys.executable, __file__, "--worker", system, "--env", json.dumps(env)]
    workers = [
        subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PEERS_STEP_LOG": env["log"]},
        )
        for _ in range(procs)
    ]
    for worker in workers:
        assert worker.stdout is not None
        ready, _, _ = select.select([worker.stdout], [], [], 120)
        if not ready or worker.stdout.readline().strip() != "ready":
            stop_workers(workers)
            raise RuntimeError(f"{system}: a worker did not start")
    return workers


def release(workers: list[subprocess.Popen[str]]) -> None:
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()


def stop_workers(workers: list[subprocess.Popen[str]]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def wait_for(predicate: Any, timeout: float, period: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(period)
    return False


def throughput(system: str, steps: int, procs: int, jobs: int, tmp: Path) -> dict[str, Any]:
    with fresh_env(tmp) as env:
        adapter = ADAPTERS[system](system, env)
        adapter.setup()
        names = [f"j{i:05d}" for i in range(jobs)]
        adapter.post(names, steps)
        workers = start_workers(system, env, procs)
        try:
            before = xact_commit(env["tag"])
            polls_before = getattr(adapter, "polls", 0)
            release(workers)
            expected = jobs * steps
            finished = wait_for(lambda: len(read_log(env["log"])) >= expected, 600, 0.05)
            finished = finished and wait_for(lambda: adapter.done(jobs, steps), 60, 0.05)
        finally:
            stop_workers(workers)
        rows = read_log(env["log"])
        polls = getattr(adapter, "polls", 0) - polls_before
        # The stats of a backend reach pg_stat_database when it ends (the workers' have).
        time.sleep(0.6)
        xacts = xact_commit(env["tag"]) - before - polls
        if not rows:
            return {"jobs_per_s": None, "once": "nothing ran", "xacts_per_job": None}
        wall = max(r[3] for r in rows) - min(r[2] for r in rows)
        uses_pg = system != "celery"
        return {
            "jobs_per_s": jobs / wall if finished and wall > 0 else None,
            "once": check_once(rows, names, steps),
            "xacts_per_job": xacts / jobs if uses_pg else None,
        }


def settle(limit: float = 60.0) -> float:
    """Wait until the 1-minute load average is below 1 (at most ``limit`` seconds, polling the
    kernel's figure: nothing to wait on instead); return it."""
    deadline = time.monotonic() + limit
    while os.getloadavg()[0] >= 1.0 and time.monotonic() < deadline:
        time.sleep(1.0)
    return os.getloadavg()[0]


def latency(system: str, samples: int, tmp: Path) -> dict[str, Any]:
    load = settle()
    with fresh_env(tmp) as env:
        adapter = ADAPTERS[system](system, env)
        adapter.setup()
        workers = start_workers(system, env, 1)
        try:
            release(workers)
            time.sleep(1.0)  # the worker reaches its idle wait
            names = [f"l{i:04d}" for i in range(samples)]
            stamps = adapter.post(names, 1, pace=0.05)
            wait_for(lambda: len(read_log(env["log"])) >= samples, 60)
        finally:
            stop_workers(workers)
        rows = read_log(env["log"])
        started = {job: start for job, _, start, _ in rows}
        waits = sorted(
            (started[n] - t) * 1000 for n, t in zip(names, stamps, strict=True) if n in started
        )
        return {
            "p50_ms": statistics.median(waits) if waits else None,
            "load": load,
            "once": check_once(rows, names, 1),
        }


# -- worker process --------------------------------------------------------------------------


def quiet() -> None:
    """Each system's start-up advice (running as root, an app in ``__main__``, a Redis server
    that keeps nothing on disk: the header says so) is not a result."""
    warnings.filterwarnings("ignore")
    logging.getLogger("procrastinate").setLevel(logging.ERROR)
    logging.getLogger("legato").setLevel(logging.ERROR)


def worker_main(system: str, env: dict[str, str], setup_only: bool) -> None:
    quiet()
    adapter = ADAPTERS[system](system, env)

    def ready() -> None:
        print("ready", flush=True)
        sys.stdin.readline()  # "go"

    if setup_only:
        adapter.work(ready, setup_only=True)
    else:
        adapter.work(ready)


# -- main ------------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def med(values: list[Any]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def versions() -> str:
    import importlib.metadata as md

    import psycopg
    import redis

    parts = [f"Python {platform.python_version()}", f"{os.cpu_count()} CPUs"]
    for dist in ("legato", "dbos", "procrastinate", "celery"):
        with contextlib.suppress(md.PackageNotFoundError):
            parts.append(f"{dist} {md.version(dist)}")
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        row = conn.execute(
            "SELECT current_setting('server_version'), "
            "current_setting('fsync'), "
            "current_setting('synchronous_commit')"
        ).fetchone()
    assert row is not None
    parts.append(f"PostgreSQL {row[0]} (fsync {row[1]}, synchronous_commit {row[2]})")
    client = redis.Redis.from_url(REDIS_SERVER)
    info = client.info("server")
    persistence = client.info("persistence")
    client.close()
    parts.append(f"Redis {info['redis_version']} (aof {persistence.get('aof_enabled')})")
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--systems", default=",".join(SYSTEMS), help=f"comma list of {', '.join(ADAPTERS)}"
    )
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jobs1", type=int, default=500, help="jobs per 1-step run")
    parser.add_argument("--jobs10", type=int, default=200, help="jobs per 10-step run")
    parser.add_argument("--samples", type=int, default=40, help="latency samples")
    parser.add_argument(
        "--quick", action="store_true", help="100 / 40 jobs, 20 samples, one repeat"
    )
    parser.add_argument(
        "--dbos-poll",
        type=float,
        default=DBOS_POLL,
        help="seconds between DBOS queue polls (DBOS's default: 1.0)",
    )
    parser.add_argument("--json-out", default=None)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--env", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--setup-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quiet()
    if args.worker:
        worker_main(args.worker, json.loads(args.env), args.setup_only)
        return
    os.environ["PEERS_DBOS_POLL"] = str(args.dbos_poll)  # read by the setup process
    if args.quick:
        args.jobs1, args.jobs10, args.samples, args.repeat = 100, 40, 20, 1
    systems = [s for s in args.systems.split(",") if s]
    workloads = [w for w in args.workloads.split(",") if w]
    for name in systems:
        if name not in ADAPTERS:
            parser.error(f"unknown system {name!r}; choose from {', '.join(ADAPTERS)}")
    for name in workloads:
        if name not in WORKLOADS:
            parser.error(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}")
    missing = sorted(
        {PACKAGES[s] for s in systems if importlib.util.find_spec(PACKAGES[s]) is None}
    )
    if missing:
        parser.exit(
            2,
            f"peers.py: {', '.join(missing)} not installed here; run bench/venv-peers.sh "
            "and use its python\n",
        )
    try:
        run_all(systems, workloads, args)
    except (OSError, ImportError) as exc:  # psycopg and redis errors derive from neither
        parser.exit(2, f"peers.py: {exc}\n")
    except Exception as exc:
        if type(exc).__module__.split(".")[0] in ("psycopg", "redis"):
            parser.exit(2, f"peers.py: cannot use the servers: {str(exc).splitlines()[0]}\n")
        raise


def run_all(systems: list[str], workloads: list[str], args: argparse.Namespace) -> None:
    print(versions(), flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="legato-peers-") as tmpdir,
        fresh_env(Path(tmpdir)) as env,
    ):
        print(f"one single-row INSERT commit: {commit_ms(env['pg']):.2f} ms p50", flush=True)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="legato-peers-") as tmpdir:
        tmp = Path(tmpdir)
        for rep in range(args.repeat):
            # Latency first in each repeat, while the machine is idle; systems alternate.
            for workload in sorted(workloads, key=lambda w: w != "latency"):
                for system in systems:
                    if workload == "latency":
                        result = latency(system, args.samples, tmp)
                        shown = f"p50 {fmt(result['p50_ms'], 1)} ms (load {result['load']:.2f})"
                    else:
                        steps, procs = map(int, workload.split("x"))
                        jobs = args.jobs1 if steps == 1 else args.jobs10
                        result = throughput(system, steps, procs, jobs, tmp)
                        shown = (
                            f"{fmt(result['jobs_per_s'])} jobs/s, "
                            f"{fmt(result['xacts_per_job'], 1)} xacts/job"
                        )
                    results.setdefault((workload, system), []).append(result)
                    print(
                        f"[{rep + 1}/{args.repeat}] {workload:7} {system:13} {shown}, "
                        f"exactly once: {result['once']}",
                        flush=True,
                    )
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print_table(systems, workloads, results, args)
    print_goals(workloads, results)
    if args.json_out:
        with open(args.json_out, "a") as out:
            for (workload, system), runs in results.items():
                out.write(json.dumps({"workload": workload, "system": system, "runs": runs}) + "\n")


def print_table(
    systems: list[str],
    workloads: list[str],
    results: dict[tuple[str, str], list[dict[str, Any]]],
    args: argparse.Namespace,
) -> None:
    print()
    print("| workload | workers | " + " | ".join(f"{s} ({DURABILITY[s]})" for s in systems) + " |")
    print("|---|---|" + "---|" * len(systems))
    for workload in workloads:
        cells = []
        for system in systems:
            runs = results.get((workload, system), [])
            bad = [r["once"] for r in runs if r["once"] != "ok"]
            if workload == "latency":
                cell = f"{fmt(med([r['p50_ms'] for r in runs]), 1)} ms"
            else:
                cell = fmt(med([r["jobs_per_s"] for r in runs]))
                xacts = med([r["xacts_per_job"] for r in runs])
                if xacts is not None:
                    cell += f" ({xacts:.1f} tx/job)"
            if bad:
                cell += f" NOT ONCE: {bad[0]}"
            cells.append(cell)
        if workload == "latency":
            label, workers = "post → start p50, idle worker", "1"
        else:
            steps, procs = workload.split("x")
            jobs = args.jobs1 if steps == "1" else args.jobs10
            label, workers = f"{steps}-step job ({jobs} jobs)", procs
        print(f"| {label} | {workers} | " + " | ".join(cells) + " |")
    print(
        f"\nmedians of {args.repeat}; jobs/s from first step start to last step end; "
        "tx/job: pg_stat_database.xact_commit delta while the workers drained / jobs"
    )


def print_goals(workloads: list[str], results: dict[tuple[str, str], list[dict[str, Any]]]) -> None:
    """Issue 13's goals for Legato PG+PG, from this run's medians: the better of its two
    conductor kinds against the better of DBOS's two queues on each row."""

    def value(workload: str, system: str, key: str) -> float | None:
        return med([r[key] for r in results.get((workload, system), [])])

    def best(workload: str, systems: tuple[str, ...], key: str) -> tuple[str, float] | None:
        """The system of ``systems`` with the highest (jobs/s) or lowest (latency) median."""
        found = [(system, v) for system in systems
                 if (v := value(workload, system, key)) is not None]
        if not found:
            return None
        pick = min if key == "p50_ms" else max
        return pick(found, key=lambda sv: sv[1])

    lines = []
    legato_pg = ("legato-pg", "legato-pg-4")  # PG board + PG persistence, either conductor
    for workload in [w for w in workloads if w != "latency"]:
        ours, dbos = best(workload, legato_pg, "jobs_per_s"), best(workload, DBOS, "jobs_per_s")
        if ours and dbos:
            ok = "met" if ours[1] >= 2 * dbos[1] else "not met"
            lines.append(f"{workload}: {ours[0]} / {dbos[0]} = {ours[1] / dbos[1]:.2f} "
                         f"(≥ 2: {ok})")
        queue = value(workload, "procrastinate", "jobs_per_s")
        if ours and queue and workload.startswith("1x"):
            ok = "met" if ours[1] >= queue else "not met"
            lines.append(f"{workload}: {ours[0]} / procrastinate = {ours[1] / queue:.2f} "
                         f"(≥ 1: {ok})")
    fastest = best("latency", legato_pg, "p50_ms")
    if fastest is not None:
        system, p50 = fastest
        lines.append(
            f"latency: {system} p50 {p50:.1f} ms (≤ 5 ms: {'met' if p50 <= 5 else 'not met'})"
        )
    if lines:
        print("\ngoals (issue 13):\n  " + "\n  ".join(lines))


if __name__ == "__main__":
    main()
