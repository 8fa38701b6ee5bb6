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


def apply_fast_copy() -> None:
    """What-if experiment (``--what-if-fast-copy``), NOT Legato as shipped: replace the
    persistence models' ``copy()`` (``copy.deepcopy`` of the whole dataclass) with a copy that
    deep-copies only the JSON containers, and check an atom's five JSON fields with one
    ``json.dumps`` instead of five. Shows how much of the engine's time is persistence copying.
    """
    import copy
    import json

    from legato.persistence import base, models

    def atom_copy(self: Any) -> Any:
        new = copy.copy(self)
        for field in ("results", "failure", "revert_results", "revert_failure", "meta"):
            value = getattr(self, field)
            if isinstance(value, (dict, list)):
                setattr(new, field, copy.deepcopy(value))
        return new

    def flow_copy(self: Any) -> Any:
        new = copy.copy(self)
        new.meta = copy.deepcopy(self.meta)
        new.atoms = {k: a.copy() for k, a in self.atoms.items()}
        return new

    slow_check = base.check_atom_json

    def check(ad: Any) -> None:
        try:
            json.dumps((ad.results, ad.revert_results, ad.meta, ad.failure, ad.revert_failure),
                       allow_nan=False)
        except (TypeError, ValueError):
            slow_check(ad)

    models.AtomDetail.copy = atom_copy  # type: ignore[method-assign]
    models.FlowDetail.copy = flow_copy  # type: ignore[method-assign]
    base.check_atom_json = check


class NullPersistence(Persistence):
    """Stores nothing: isolates the engine's own cost (``--persistence null``). Not a backend."""

    def save_logbook(self, book: LogBook) -> LogBook:
        return book

    def update_flow_details(self, flow_detail: FlowDetail, *, fence: Any = None) -> FlowDetail:
        return flow_detail

    def update_flow_state(self, flow_uuid: str, state: Any, *, fence: Any = None) -> None:
        return None

    def update_atom_details(self, atom_detail: Any, *, fence: Any = None) -> Any:
        return atom_detail

    def _unused(self, *args: Any) -> Any:
        raise NotImplementedError

    _save_logbook = _get_logbook = _get_logbooks = _destroy_logbook = _unused
    _update_flow_details = _get_flow_details = _get_flows_for_book = _unused
    _take_flow = _take_new_flow = _update_flow_state = _unused
    _update_atom_details = _get_atom_details = _get_atoms_for_flow = _clear_all = _unused
    _record_claim = _job_history = _find_jobs = _find_logbooks = _unused
    _flow_rows = _claims_of_flows = _claim_counts = _unused


def legato_runner(kind: str, workdir: str) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    if kind == "memory":
        persistence: Persistence = connect("memory://")
    elif kind == "null":
        persistence = NullPersistence("null://")
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


def measure(runner: Callable[[str, str], Any], kind: str, n: int,
            jobs: int) -> tuple[float, float]:
    """One repeat: (wall ms per flow, CPU ms per flow) over ``jobs`` flows."""
    with tempfile.TemporaryDirectory(prefix="legato-bench-") as workdir:
        one, close = runner(kind, workdir)
        one(-1, n)  # warm-up: imports, first connection, schema caches
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(jobs):
            one(i, n)
        result = ((time.perf_counter() - wall) * 1000.0 / jobs,
                  (time.process_time() - cpu) * 1000.0 / jobs)
        close()
    return result


def _median(samples: list[tuple[float, float]]) -> tuple[float, float]:
    return (statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=200, help="flows per repeat (Legato)")
    parser.add_argument("--tf-jobs", type=int, default=100,
                        help="flows per repeat (TaskFlow, memory)")
    parser.add_argument("--tf-sqlite-jobs", type=int, default=10,
                        help="flows per repeat (TaskFlow, SQLite: ~0.7 s each)")
    parser.add_argument("--tasks", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--persistence", nargs="+", default=["memory", "sqlite"],
                        choices=["memory", "sqlite", "null"],
                        help="null: Legato only, a persistence that stores nothing "
                             "(the engine's own cost)")
    parser.add_argument("--no-taskflow", action="store_true")
    parser.add_argument("--what-if-fast-copy", action="store_true",
                        help="experiment: cheaper persistence model copies (see apply_fast_copy)")
    args = parser.parse_args(argv)
    if args.what_if_fast_copy:
        apply_fast_copy()
        print("WHAT-IF RUN: persistence model copies patched (not Legato as shipped)")

    print(f"machine: {platform.machine()}, nproc={os.cpu_count()}, "
          f"python {platform.python_version()}, {platform.system()} {platform.release()}")
    print("durability: Legato SQLite = WAL, synchronous=NORMAL (set by the SQL backend); "
          "TaskFlow SQLite = its SQLAlchemy defaults (rollback journal, synchronous=FULL)")
    print(f"repeats={args.repeat} (interleaved); medians of per-flow wall and CPU time; "
          f"flows per repeat: legato {args.jobs}, taskflow {args.tf_jobs} (memory) / "
          f"{args.tf_sqlite_jobs} (sqlite)\n")
    header = (f"{'persistence':<12}{'tasks':>6}{'legato ms':>11}{'legato f/s':>12}"
              f"{'taskflow ms':>13}{'taskflow f/s':>14}{'speed-up':>10}"
              f"{'legato cpu':>12}{'tf cpu':>9}{'cpu x':>8}")
    print(header)
    print("-" * len(header))
    for kind in args.persistence:
        for n in args.tasks:
            ours: list[tuple[float, float]] = []
            theirs: list[tuple[float, float]] = []
            for _ in range(args.repeat):  # interleaved, so load drifts hit both alike
                ours.append(measure(legato_runner, kind, n, args.jobs))
                if not args.no_taskflow and kind != "null":
                    tf_jobs = args.tf_jobs if kind == "memory" else args.tf_sqlite_jobs
                    theirs.append(measure(taskflow_runner, kind, n, tf_jobs))
            (o_wall, o_cpu) = _median(ours)
            line = f"{kind:<12}{n:>6}{o_wall:>11.3f}{1000 / o_wall:>12.1f}"
            if theirs:
                (t_wall, t_cpu) = _median(theirs)
                line += (f"{t_wall:>13.2f}{1000 / t_wall:>14.1f}{t_wall / o_wall:>9.1f}x"
                         f"{o_cpu:>12.3f}{t_cpu:>9.2f}{t_cpu / o_cpu:>7.1f}x")
            else:
                line += f"{'-':>13}{'-':>14}{'-':>10}{o_cpu:>12.3f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
