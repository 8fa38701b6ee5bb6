"""Dashboard render times with a large backlog: ``python bench/dashboard.py [--jobs 100000]``.

Posts JOBS waiting jobs on a fresh board (SQLite by default, or ``--board URL``; five
priorities, in bulk where the board can), claims a few for a conductor, serves the dashboard in
a thread and times full HTTP renders of the overview, of jobs pages (the first one, and one
deep in the list reached by ``start=`` and by ``after=``) and of the conductors page (median
and worst of several requests). Then it times the board calls behind them against what they
replace: ``oldest_waiting`` and ``iter_claimed`` against reading every job. Figures go in
docs/benchmarks.md; nothing here is a test.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from legato import jobboard, persistence
from legato.dashboard.app import create_app
from legato.jobboard.base import Entity, JobBoard, JobRecord
from legato.persistence.models import new_uuid
from legato.states import JobPriority, JobState
from legato.testing.dashboard import running


def fill(board: JobBoard, count: int) -> None:
    """``count`` jobs, priorities in turn; in bulk on boards that can (SQL)."""
    priorities = itertools.cycle(int(p) for p in JobPriority)
    bulk = getattr(board, "_post_many", None)
    if bulk is None:
        for i, priority in zip(range(count), priorities, strict=False):
            board.post(f"job-{i}", details={"store": {"i": i}}, priority=priority)
        return
    for first in range(0, count, 5000):
        now = time.time()
        bulk([JobRecord(uuid=new_uuid(), name=f"job-{i}", details={"store": {"i": i}},
                        book_uuid=None, book_name=None, priority=next(priorities),
                        created_on=now, last_modified=now)
              for i in range(first, min(first + 5000, count))])


def timed(call: Callable[[], Any], repeat: int) -> tuple[float, float]:
    call()  # warm up
    times = []
    for _ in range(repeat):
        begin = time.perf_counter()
        call()
        times.append((time.perf_counter() - begin) * 1000)
    return statistics.median(times), max(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--board", default=None, help="board URL (default: a fresh SQLite)")
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="legato-bench-dashboard-"))
    sqlite = f"sqlite:///{folder / 'bench.db'}"
    store = persistence.connect(sqlite)
    store.upgrade()
    with jobboard.connect(args.board or sqlite, persistence=store) as board:
        started = time.perf_counter()
        fill(board, args.jobs)
        print(f"posted {args.jobs} jobs in {time.perf_counter() - started:.1f}s")
        board.register_entity(Entity("conductor", "bench-conductor"), ttl=3600)
        for _ in range(8):
            board.claim_next("bench-conductor", ttl=3600)
        deep = args.jobs // 2
        at = next(itertools.islice(board.iterjobs(), deep - 1, None)).position
        paths = ("/", "/jobs", f"/jobs?start={deep}", f"/jobs?after={at}", "/conductors",
                 "/api/stats", "/api/jobs", f"/api/jobs?start={deep}", f"/api/jobs?after={at}")
        with running(create_app(board, store)) as url, httpx.Client(base_url=url) as web:
            for path in paths:
                assert web.get(path).status_code == 200
                median, worst = timed(lambda p=path: web.get(p), args.repeat)  # type: ignore[misc]
                print(f"{path:<28} median {median:7.1f} ms   worst {worst:7.1f} ms")
        now = board.clock()
        calls: dict[str, Callable[[], Any]] = {
            "oldest_waiting()": board.oldest_waiting,
            "min over iterjobs(only_unclaimed)": lambda: min(
                (j.record.created_on for j in board.iterjobs(only_unclaimed=True)), default=None),
            "list(iter_claimed())": lambda: list(board.iter_claimed()),
            "claimed jobs by reading every job": lambda: [
                j for j in board.iterjobs() if j.record.effective_state(now) is JobState.CLAIMED],
        }
        for name, call in calls.items():
            median, worst = timed(call, 3)
            print(f"{name:<36} median {median:9.1f} ms   worst {worst:9.1f} ms")
    store.close()


if __name__ == "__main__":
    main()
