#!/usr/bin/env python3
"""Jobboard benchmark: Legato's boards and TaskFlow's Redis and ZooKeeper boards, one run.

Measured per board (medians of ``--repeat`` runs):

* post rate: jobs posted per second by one client, one at a time;
* drain rate with 1 and 4 claimers (processes; threads for ``memory``): pre-posted jobs taken
  with claim-next + consume until none is left (TaskFlow has no claim-next: its claimers walk
  ``iterjobs(only_unclaimed=True)`` and claim the first they can, as its conductors do);
* post-to-wake latency p50/p99: a claimer blocked in ``wait()`` on its own board object, a job
  posted every 20 ms from another; time from just before ``post`` to ``wait`` returning;
* claim + consume cost (median per job) with a small and a large backlog waiting.

Every measurement uses a fresh namespace (schema, key prefix, ZooKeeper path) that is removed
afterwards. Run it from the benchmark environment (``bench/venv.sh`` makes ``.venv-bench``)::

    .venv-bench/bin/python bench/jobboard.py --repeat 3
    .venv-bench/bin/python bench/jobboard.py --systems legato --backends sqlite,postgresql

A backend or system whose driver or server is missing is skipped with a message.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import multiprocessing
import os
import platform
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from legato.testing import services

BACKENDS = ("memory", "sqlite", "postgresql", "redis", "zookeeper")
TASKFLOW_BACKENDS = ("redis", "zookeeper")


# -- adapters: one small interface over both systems --------------------------------------------

class Board:
    """What the benchmark does to a board."""

    def post(self, name: str) -> None: ...
    def take(self, who: str) -> str | None: ...  # claim the next job, consume it, its name
    def wait(self, timeout: float) -> bool: ...
    def close(self) -> None: ...

    def fill(self, count: int) -> None:
        """Post ``count`` jobs as fast as the backend allows (threads; bulk insert on SQL)."""
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            for chunk in _chunks(count, 500):
                list(pool.map(self.post, (f"fill-{i}" for i in chunk)))


def _chunks(count: int, size: int) -> Iterator[range]:
    for start in range(0, count, size):
        yield range(start, min(count, start + size))


class LegatoBoard(Board):
    def __init__(self, url: str) -> None:
        from legato import jobboard

        self.board = jobboard.connect(url, ttl=300)
        self.board.connect()

    def post(self, name: str) -> None:
        self.board.post(name)

    def take(self, who: str) -> str | None:
        job = self.board.claim_next(who)
        if job is None:
            return None
        self.board.consume(job, who)
        return str(job.name)

    def wait(self, timeout: float) -> bool:
        return self.board.wait(timeout)

    def fill(self, count: int) -> None:
        from legato.jobboard.base import JobRecord
        from legato.jobboard.memory import MemoryJobBoard
        from legato.persistence.models import new_uuid

        bulk = getattr(self.board, "_post_many", None)
        if bulk is None:
            if isinstance(self.board, MemoryJobBoard):
                for i in range(count):
                    self.board.post(f"fill-{i}")
                return
            super().fill(count)
            return
        now = time.time()
        for chunk in _chunks(count, 5000):
            bulk([JobRecord(uuid=new_uuid(), name=f"fill-{i}", details={}, book_uuid=None,
                            book_name=None, priority=0, created_on=now, last_modified=now)
                  for i in chunk])

    def close(self) -> None:
        self.board.close()


class TaskFlowBoard(Board):
    def __init__(self, conf: dict[str, Any]) -> None:
        from taskflow.jobs import backends as job_backends
        from taskflow.persistence import backends as persistence_backends

        self.persistence = persistence_backends.fetch({"connection": "memory://"})
        self.board = job_backends.fetch(f"bench-{os.getpid()}", dict(conf),
                                        persistence=self.persistence)
        self.board.connect()

    def post(self, name: str) -> None:
        self.board.post(name)

    def take(self, who: str) -> str | None:
        from taskflow import exceptions

        for job in self.board.iterjobs(only_unclaimed=True, ensure_fresh=True):
            try:
                self.board.claim(job, who)
            except (exceptions.UnclaimableJob, exceptions.NotFound):
                continue
            self.board.consume(job, who)
            return str(job.name)
        return None

    def wait(self, timeout: float) -> bool:
        from taskflow import exceptions

        try:
            self.board.wait(timeout=timeout)
        except exceptions.NotFound:  # TaskFlow raises on timeout
            return False
        return True

    def close(self) -> None:
        self.board.close()


# -- where each board lives: a picklable spec plus a context manager making a fresh one -------

Spec = tuple[str, str, Any]  # (system, backend, url or TaskFlow conf)


def open_board(spec: Spec) -> Board:
    system, _, where = spec
    return LegatoBoard(where) if system == "legato" else TaskFlowBoard(where)


@contextlib.contextmanager
def fresh(system: str, backend: str, tmpdir: str) -> Iterator[Spec]:
    tag = uuid.uuid4().hex[:10]
    if system == "taskflow":
        conf: dict[str, Any]
        if backend == "redis":
            conf = {"board": "redis", "host": "127.0.0.1", "port": 6379,
                    "namespace": f"tfbench-{tag}"}
        else:
            conf = {"board": "zookeeper", "hosts": services.ZOOKEEPER,
                    "path": f"/tfbench/{tag}"}
        try:
            yield (system, backend, conf)
        finally:
            _taskflow_cleanup(backend, conf)
        return
    if backend == "memory":
        yield (system, backend, f"memory://bench-{tag}")
    elif backend == "sqlite":
        path = os.path.join(tmpdir, f"bench-{tag}.db")
        try:
            yield (system, backend, f"sqlite:///{path}")
        finally:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(OSError):
                    os.remove(path + suffix)
    else:
        makers = {"postgresql": services.postgres_url, "redis": services.redis_url,
                  "zookeeper": services.zookeeper_url}
        with makers[backend]() as url:
            yield (system, backend, url)


def _taskflow_cleanup(backend: str, conf: dict[str, Any]) -> None:
    if backend == "redis":
        import redis

        client = redis.Redis(host="127.0.0.1", port=6379)
        keys = list(client.scan_iter(match=f"{conf['namespace']}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
    else:
        from kazoo.client import KazooClient

        zk = KazooClient(hosts=services.ZOOKEEPER)
        zk.start(timeout=10)
        with contextlib.suppress(Exception):
            zk.delete(conf["path"], recursive=True)
        zk.stop()
        zk.close()


# -- measurements ------------------------------------------------------------------------------

def measure_post(spec: Spec, count: int) -> float:
    board = open_board(spec)
    try:
        started = time.perf_counter()
        for i in range(count):
            board.post(f"post-{i}")
        return count / (time.perf_counter() - started)
    finally:
        board.close()


def claimer(spec: Spec, who: str, ready: Any, go: Any, results: Any) -> None:
    """One claimer (process or thread): connect, say so, drain the board once ``go`` is set."""
    board = open_board(spec)
    try:
        ready.put(who)
        go.wait(300)
        taken = 0
        while board.take(who):
            taken += 1
        results.put((taken, time.monotonic()))
    finally:
        board.close()


def measure_drain(spec: Spec, count: int, claimers: int) -> float:
    keeper = open_board(spec)  # also keeps memory://NAME alive
    keeper.fill(count)
    in_threads = spec[1] == "memory"
    if in_threads:
        import queue

        go: Any = threading.Event()
        ready: Any = queue.Queue()
        results: Any = queue.Queue()
        workers: list[Any] = [
            threading.Thread(target=claimer, args=(spec, f"c{i}", ready, go, results))
            for i in range(claimers)]
    else:
        ctx = multiprocessing.get_context("spawn")
        go, ready, results = ctx.Event(), ctx.Queue(), ctx.Queue()
        workers = [ctx.Process(target=claimer, args=(spec, f"c{i}", ready, go, results))
                   for i in range(claimers)]
    for w in workers:
        w.start()
    for _ in workers:  # start the clock once every claimer is connected
        ready.get(timeout=300)
    started = time.monotonic()
    go.set()
    outcomes = [results.get(timeout=600) for _ in workers]
    for w in workers:
        w.join(30)
    keeper.close()
    taken = sum(n for n, _ in outcomes)
    if taken != count:
        print(f"  ! {spec[0]}/{spec[1]}: drained {taken} of {count}", file=sys.stderr)
    return taken / (max(end for _, end in outcomes) - started)


def measure_wake(spec: Spec, posts: int,
                 interval: float = 0.02) -> tuple[float, float, float]:
    """Wake latency p50 and p99, and the median time ``post`` itself took (all in ms).

    One job at a time: the next is posted only after the waiter took the previous one and went
    back to ``wait``, so every wake belongs to exactly one post.
    """
    waiter, poster = open_board(spec), open_board(spec)
    posted: dict[str, float] = {}
    latencies: list[float] = []
    post_took: list[float] = []
    stop, handled = threading.Event(), threading.Event()

    def wait_loop() -> None:
        while not stop.is_set():
            if not waiter.wait(1.0):
                continue
            woke = time.perf_counter()
            name = waiter.take("waiter")
            if name is not None:
                latencies.append((woke - posted[name]) * 1000)
                handled.set()

    thread = threading.Thread(target=wait_loop, daemon=True)
    thread.start()
    time.sleep(0.5)  # let the waiter settle into wait() (and subscribe, where it does)
    try:
        for i in range(posts):
            handled.clear()
            posted[str(i)] = started = time.perf_counter()
            poster.post(str(i))
            post_took.append((time.perf_counter() - started) * 1000)
            if not handled.wait(10):
                print(f"  ! {spec[0]}/{spec[1]}: job {i} was not taken in 10 s", file=sys.stderr)
            time.sleep(interval)
        stop.set()
        thread.join(5)
    finally:
        waiter.close()
        poster.close()
    lat = sorted(latencies)
    return _pct(lat, 50), _pct(lat, 99), statistics.median(post_took)


def _pct(values: list[float], pct: int) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, round(pct / 100 * (len(values) - 1)))]


def measure_backlog(spec: Spec, waiting: int, ops: int) -> float:
    """Median seconds per claim + consume with ``waiting`` jobs on the board."""
    board = open_board(spec)
    try:
        board.fill(waiting + ops)
        costs = []
        for _ in range(ops):
            started = time.perf_counter()
            if not board.take("timer"):
                break
            costs.append(time.perf_counter() - started)
        return float(statistics.median(costs))
    finally:
        board.close()


# -- driver ------------------------------------------------------------------------------------

def run_one(system: str, backend: str, args: argparse.Namespace) -> dict[str, float]:
    tf = system == "taskflow"
    n = args.tf_jobs if tf else args.jobs
    big = args.tf_big if tf else args.zk_big if backend == "zookeeper" else args.big
    fields: dict[str, Callable[[Spec], Any]] = {
        "post/s": lambda s: measure_post(s, n),
        "drain/s 1": lambda s: measure_drain(s, n, 1),
        "drain/s 4": lambda s: measure_drain(s, n, 4),
        "wake": lambda s: measure_wake(s, args.tf_wake_posts if tf else args.wake_posts),
        "cost small": lambda s: measure_backlog(s, args.small, args.ops),
        "cost big": lambda s: measure_backlog(s, big, args.big_ops if tf else args.ops),
    }
    runs: dict[str, list[Any]] = {k: [] for k in fields}
    for _ in range(args.repeat):
        for key, fn in fields.items():
            with fresh(system, backend, args.tmpdir) as spec:
                runs[key].append(fn(spec))
    out = {k: statistics.median(v) for k, v in runs.items() if k != "wake"}
    out["wake p50"] = statistics.median(r[0] for r in runs["wake"])
    out["wake p99"] = statistics.median(r[1] for r in runs["wake"])
    out["post ms"] = statistics.median(r[2] for r in runs["wake"])
    out["big"] = big
    return out


def available(system: str, backend: str, args: argparse.Namespace) -> str | None:
    """None when the pair can run, else why not."""
    try:
        if system == "taskflow":
            import taskflow  # noqa: F401
        with fresh(system, backend, args.tmpdir) as spec:
            open_board(spec).close()
    except Exception as exc:  # any missing driver or server: report and go on
        return f"{type(exc).__name__}: {exc}"
    return None


def table(results: dict[tuple[str, str], dict[str, float]], args: argparse.Namespace) -> str:
    head = ("| system | board | post/s | drain/s 1 claimer | drain/s 4 claimers | wake p50 ms "
            "| wake p99 ms | (post call ms) | claim+consume, 100 waiting "
            "| same, big backlog (size) | ratio |")
    lines = [head, "|" + "---|" * 11]
    for (system, backend), r in results.items():
        ratio = r["cost big"] / r["cost small"]
        lines.append(
            f"| {system} | {backend} | {r['post/s']:,.0f} | {r['drain/s 1']:,.0f} "
            f"| {r['drain/s 4']:,.0f} | {r['wake p50']:.1f} | {r['wake p99']:.1f} "
            f"| {r['post ms']:.1f} "
            f"| {r['cost small'] * 1e3:.2f} ms | {r['cost big'] * 1e3:.2f} ms "
            f"({int(r['big']):,}) | {ratio:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--systems", default="legato,taskflow")
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--jobs", type=int, default=2000, help="jobs for post and drain rates")
    p.add_argument("--tf-jobs", type=int, default=300, help="the same, for TaskFlow")
    p.add_argument("--small", type=int, default=100)
    p.add_argument("--big", type=int, default=100_000)
    p.add_argument("--zk-big", type=int, default=10_000,
                   help="big backlog for Legato's ZooKeeper board (one znode per post is slow)")
    p.add_argument("--tf-big", type=int, default=10_000)
    p.add_argument("--ops", type=int, default=200, help="claims timed per backlog size")
    p.add_argument("--big-ops", type=int, default=5, help="TaskFlow claims timed, big backlog")
    p.add_argument("--wake-posts", type=int, default=100)
    p.add_argument("--tf-wake-posts", type=int, default=20, help="TaskFlow ZooKeeper polls (2 s)")
    p.add_argument("--tmpdir", default="/tmp")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    print(f"# machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"{platform.platform()}", flush=True)
    results: dict[tuple[str, str], dict[str, float]] = {}
    for system in args.systems.split(","):
        for backend in args.backends.split(","):
            if system == "taskflow" and backend not in TASKFLOW_BACKENDS:
                continue
            why = available(system, backend, args)
            if why is not None:
                print(f"skipping {system}/{backend}: {why}", flush=True)
                continue
            print(f"running {system}/{backend} ...", flush=True)
            results[(system, backend)] = run_one(system, backend, args)
            print(json.dumps({f"{system}/{backend}": results[(system, backend)]}), flush=True)
    print(table(results, args))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({f"{s}/{b}": r for (s, b), r in results.items()}, fh, indent=2)


if __name__ == "__main__":
    main()
