#!/usr/bin/env python3
"""Engine benchmark: Legato vs OpenStack TaskFlow, bare engines (no jobboard), one process.

Per flow, both do what a conductor does for one job minus the jobboard: save a logbook with one
flow detail, record the factory in it, rebuild the flow from the detail and run it
(``save_factory_details`` + ``load_from_detail(...).run()``). Flows are linear flows of N no-op
tasks. Reported: median over repeats of the per-flow time (ms) and flows/s.

Run with the benchmark venv (``bench/venv.sh``)::

    .venv-bench/bin/python bench/engine.py --repeat 3
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

import legato
from legato.engine import FactoryPolicy, load_from_detail, save_factory_details
from legato.flow import LinearFlow, Task
from legato.persistence import Persistence, connect
from legato.persistence.models import FlowDetail, LogBook


class Noop(Task):
    def execute(self) -> None:
        return None


@legato.flow_factory
def make_flow(n_tasks: int) -> LinearFlow:
    return LinearFlow("bench-flow").add(*(Noop(f"noop-{i}") for i in range(n_tasks)))


def legato_runner(kind: str, workdir: str) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    if kind == "memory":
        persistence: Persistence = connect("memory://")
    else:
        persistence = connect(f"sqlite:///{workdir}/legato-{uuid.uuid4().hex[:8]}.db")
    persistence.upgrade()
    policy = FactoryPolicy()

    def one(i: int, n: int) -> None:
        book = LogBook(f"bare-{i}")
        fd = FlowDetail(f"flow-{i}")
        book.add(fd)
        persistence.save_logbook(book)
        save_factory_details(fd, make_flow, [n], {}, persistence=persistence)
        load_from_detail(fd, persistence=persistence, policy=policy).run()

    return one, persistence.close


def taskflow_runner(kind: str, workdir: str) -> tuple[Callable[[int, int], None],
                                                      Callable[[], None]]:
    from taskflow import engines
    from taskflow import task as tf_task
    from taskflow.patterns import linear_flow as lf
    from taskflow.persistence import backends, models

    class TFNoop(tf_task.Task):
        def execute(self) -> None:
            return None

    def tf_make_flow(n_tasks: int) -> Any:
        flow = lf.Flow("bench-flow")
        for i in range(int(n_tasks)):
            flow.add(TFNoop(f"noop-{i}"))
        return flow

    # TaskFlow re-imports the factory by name, as its conductors do.
    sys.modules[__name__].tf_make_flow = tf_make_flow  # type: ignore[attr-defined]
    factory_name = f"{__name__}.tf_make_flow"
    conf = "memory://" if kind == "memory" else \
        f"sqlite:///{workdir}/taskflow-{uuid.uuid4().hex[:8]}.db"
    backend = backends.fetch({"connection": conf})
    with contextlib.closing(backend.get_connection()) as conn:
        conn.upgrade()

    def one(i: int, n: int) -> None:
        lb = models.LogBook(f"bare-{i}")
        fd = models.FlowDetail(f"flow-{i}", str(uuid.uuid4()))
        lb.add(fd)
        with contextlib.closing(backend.get_connection()) as conn:
            conn.save_logbook(lb)
        engines.save_factory_details(fd, factory_name, [n], {}, backend=backend)
        engines.load_from_detail(fd, backend=backend).run()

    return one, backend.close


def measure(runner: Callable[[str, str], Any], kind: str, n: int, jobs: int,
            repeat: int) -> list[float]:
    """Per-flow milliseconds of each repeat."""
    per_flow = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="legato-bench-") as workdir:
            one, close = runner(kind, workdir)
            one(-1, n)  # warm-up: imports, first connection, schema caches
            started = time.perf_counter()
            for i in range(jobs):
                one(i, n)
            per_flow.append((time.perf_counter() - started) * 1000.0 / jobs)
            close()
    return per_flow


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=200, help="flows per repeat (Legato)")
    parser.add_argument("--tf-jobs", type=int, default=100,
                        help="flows per repeat (TaskFlow, memory)")
    parser.add_argument("--tf-sqlite-jobs", type=int, default=10,
                        help="flows per repeat (TaskFlow, SQLite: ~0.7 s each)")
    parser.add_argument("--tasks", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--persistence", nargs="+", default=["memory", "sqlite"])
    parser.add_argument("--no-taskflow", action="store_true")
    args = parser.parse_args(argv)

    print(f"machine: {platform.machine()}, nproc={os.cpu_count()}, "
          f"python {platform.python_version()}, {platform.system()} {platform.release()}")
    print("durability: Legato SQLite = WAL, synchronous=NORMAL (set by the SQL backend); "
          "TaskFlow SQLite = its SQLAlchemy defaults (rollback journal, synchronous=FULL)")
    print(f"repeats={args.repeat}; medians of per-flow time over repeats\n")
    header = (f"{'persistence':<12}{'tasks':>6}{'legato ms':>11}{'legato f/s':>12}"
              f"{'taskflow ms':>13}{'taskflow f/s':>14}{'speed-up':>10}")
    print(header)
    print("-" * len(header))
    for kind in args.persistence:
        for n in args.tasks:
            ours = statistics.median(measure(legato_runner, kind, n, args.jobs, args.repeat))
            theirs = None
            if not args.no_taskflow:
                tf_jobs = args.tf_jobs if kind == "memory" else args.tf_sqlite_jobs
                theirs = statistics.median(measure(taskflow_runner, kind, n, tf_jobs,
                                                   args.repeat))
            tf_cols = (f"{theirs:>13.2f}{1000 / theirs:>14.1f}{theirs / ours:>9.1f}x"
                       if theirs else f"{'-':>13}{'-':>14}{'-':>10}")
            print(f"{kind:<12}{n:>6}{ours:>11.3f}{1000 / ours:>12.1f}{tf_cols}", flush=True)


if __name__ == "__main__":
    main()
