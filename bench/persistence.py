#!/usr/bin/env python3
"""Persistence benchmark: what recording one flow costs, per backend (and TaskFlow's, if present).

Per flow, the write pattern of an engine running a linear flow of N tasks, with nothing else
(no tasks, no engine):

1. ``save_logbook`` of a new book holding one empty flow detail (``engine.load``);
2. ``update_flow_details`` adding the N atom details (the engine's ``Storage.prepare``);
3. ``update_flow_details`` with state RUNNING (flow row only);
4. per task two ``update_atom_details``: RUNNING, then SUCCESS with a small result;
5. ``update_flow_details`` with state SUCCESS.

That is 2N + 4 writes (24 for N = 10). Reported: median and p90 milliseconds per flow, the
median microseconds of one ``update_atom_details`` and of a bare driver ``UPDATE`` + ``COMMIT``
of the same row ("floor": the database's own cost), and of reading the whole book back; of
``--repeat`` runs per backend the one with the lowest median is shown (a shared machine only
ever adds time). Network backends run twice: with the default pool pre-ping and without.

With ``--fenced`` every backend also records the flow as a conductor does: ``take_flow`` with a
fence after step 1 (one more write per flow) and that fence on every later write; the plain and
fenced runs alternate on one connection pool, so the machine's noise falls on both alike.

PostgreSQL and MariaDB use a fresh schema/database on the loopback servers (as the tests do),
dropped afterwards. With ``--taskflow`` (needs the benchmark venv, ``bench/venv.sh``) the same
pattern runs on OpenStack TaskFlow's SQLAlchemy persistence backend for comparison::

    .venv/bin/python bench/persistence.py
    .venv-bench/bin/python bench/persistence.py --taskflow
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy

from legato.persistence import connect
from legato.persistence.models import Fence, FlowDetail, LogBook, TaskDetail, new_uuid
from legato.states import AtomState, FlowState
from legato.testing import services


def legato_flow(backend: Any, tasks: int, fenced: bool = False) -> tuple[float, list[float]]:
    """Record one flow (with ``fenced``: taken, and every write fenced, as under a conductor);
    return its total seconds and each atom update's seconds."""
    updates: list[float] = []
    start = time.perf_counter()
    book = LogBook("bench")
    flow = FlowDetail("flow")
    book.add(flow)
    backend.save_logbook(book)
    fence = Fence(new_uuid(), 1) if fenced else None
    if fence is not None:
        backend.take_flow(flow.uuid, fence)
    fresh = FlowDetail(flow.name, flow.uuid)
    atoms = [TaskDetail(f"task-{i}") for i in range(tasks)]
    for atom in atoms:
        fresh.add(atom)
    backend.update_flow_details(fresh, fence=fence)
    backend.update_flow_details(FlowDetail(flow.name, flow.uuid, FlowState.RUNNING), fence=fence)
    for i, atom in enumerate(atoms):
        atom.state = AtomState.RUNNING
        t0 = time.perf_counter()
        backend.update_atom_details(atom, fence=fence)
        updates.append(time.perf_counter() - t0)
        atom.state, atom.results = AtomState.SUCCESS, {"value": i, "text": "done"}
        t0 = time.perf_counter()
        backend.update_atom_details(atom, fence=fence)
        updates.append(time.perf_counter() - t0)
    backend.update_flow_details(FlowDetail(flow.name, flow.uuid, FlowState.SUCCESS),
                                fence=fence)
    return time.perf_counter() - start, updates


def taskflow_flow(conn: Any, tasks: int) -> tuple[float, list[float]]:
    """The same write pattern on TaskFlow's persistence connection."""
    from taskflow import states
    from taskflow.persistence import models

    updates: list[float] = []
    start = time.perf_counter()
    book = models.LogBook("bench")
    flow = models.FlowDetail("flow", uuid=models.uuidutils.generate_uuid())
    book.add(flow)
    conn.save_logbook(book)
    atoms = [models.TaskDetail(f"task-{i}", uuid=models.uuidutils.generate_uuid())
             for i in range(tasks)]
    for atom in atoms:
        flow.add(atom)
    conn.update_flow_details(flow)
    flow.state = states.RUNNING
    conn.update_flow_details(flow)
    for i, atom in enumerate(atoms):
        atom.state = states.RUNNING
        t0 = time.perf_counter()
        conn.update_atom_details(atom)
        updates.append(time.perf_counter() - t0)
        atom.state, atom.results = states.SUCCESS, {"value": i, "text": "done"}
        t0 = time.perf_counter()
        conn.update_atom_details(atom)
        updates.append(time.perf_counter() - t0)
    flow.state = states.SUCCESS
    conn.update_flow_details(flow)
    return time.perf_counter() - start, updates


def measure(record: Callable[[], tuple[float, list[float]]], flows: int,
            read: Callable[[], object] | None = None) -> dict[str, float]:
    for _ in range(max(3, flows // 20)):  # warm the pool and statement caches
        record()
    totals, updates = [], []
    for _ in range(flows):
        total, ups = record()
        totals.append(total)
        updates += ups
    reads = []
    if read is not None:
        for _ in range(50):
            t0 = time.perf_counter()
            read()
            reads.append(time.perf_counter() - t0)
    totals.sort()
    return {
        "flow_ms": statistics.median(totals) * 1e3,
        "flow_p90_ms": totals[int(len(totals) * 0.9)] * 1e3,
        "update_us": statistics.median(updates) * 1e6,
        "read_us": statistics.median(reads) * 1e6 if reads else float("nan"),
    }


@contextlib.contextmanager
def legato_backend(url: str, **options: Any) -> Iterator[Any]:
    backend = connect(url, **options)
    backend.upgrade()
    try:
        yield backend
    finally:
        backend.close()


def driver_floor(backend: Any, atom_uuid: str, count: int = 300) -> float:
    """Median microseconds of one bare ``UPDATE`` + ``COMMIT`` of an atom row through the raw
    driver connection: what the database and driver cost before Legato or SQLAlchemy do anything.
    """
    engine = getattr(backend, "_engine", None)
    if engine is None:
        return float("nan")
    mark = "?" if engine.dialect.name == "sqlite" else "%s"
    sql = f"UPDATE legato_atomdetails SET state = {mark}, results = {mark} WHERE uuid = {mark}"
    raw = engine.raw_connection()
    try:
        times = []
        for i in range(count):
            cursor = raw.cursor()
            t0 = time.perf_counter()
            if engine.dialect.name == "sqlite":
                cursor.execute("BEGIN IMMEDIATE")
            cursor.execute(sql, ("SUCCESS", f'{{"value":{i}}}', atom_uuid))
            raw.commit()
            times.append(time.perf_counter() - t0)
            cursor.close()
    finally:
        raw.close()
    return statistics.median(times) * 1e6


def best(runs: list[dict[str, float]]) -> dict[str, float]:
    """The run with the lowest median flow time (the machine is shared: others add noise)."""
    return min(runs, key=lambda r: r["flow_ms"])


def bench_legato(name: str, url: str, args: argparse.Namespace,
                 **options: Any) -> dict[str, float]:
    runs = []
    with legato_backend(url, **options) as backend:
        book = LogBook("read-me")
        flow = FlowDetail("flow")
        for i in range(args.tasks):
            flow.add(TaskDetail(f"task-{i}", results={"value": i}))
        book.add(flow)
        backend.save_logbook(book)
        fenced_runs = []
        for _ in range(args.repeat):
            runs.append(measure(lambda: legato_flow(backend, args.tasks), args.flows,
                                read=lambda: backend.get_logbook(book.uuid)))
            if args.fenced:
                fenced_runs.append(measure(lambda: legato_flow(backend, args.tasks, True),
                                           args.flows))
        atom_uuid = next(iter(flow.atoms))
        floor = min(driver_floor(backend, atom_uuid) for _ in range(args.repeat))
    result = {**best(runs), "floor_us": floor}
    print_row(f"legato {name}", result)
    if fenced_runs:
        print_row(f"legato {name} fenced", {**best(fenced_runs), "floor_us": floor})
    return result


def bench_taskflow_sqlite(workdir: str, args: argparse.Namespace) -> dict[str, float]:
    from taskflow.persistence import backends

    backend = backends.fetch({"connection": f"sqlite:///{workdir}/taskflow.db"})
    with contextlib.closing(backend.get_connection()) as conn:
        conn.upgrade()
        result = best([measure(lambda: taskflow_flow(conn, args.tasks), args.taskflow_flows)
                       for _ in range(args.repeat)])
    backend.close()
    print_row("taskflow sqlite", result)
    return result


def print_row(name: str, r: dict[str, float]) -> None:
    print(f"| {name:<28} | {r['flow_ms']:8.2f} | {r['flow_p90_ms']:8.2f} | "
          f"{r['update_us']:8.0f} | {r.get('floor_us', float('nan')):8.0f} | "
          f"{r['read_us']:8.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flows", type=int, default=200, help="flows per backend")
    parser.add_argument("--tasks", type=int, default=10, help="tasks per flow")
    parser.add_argument("--repeat", type=int, default=3, help="runs per backend; best reported")
    parser.add_argument("--backends", nargs="+",
                        default=["sqlite", "postgresql", "mariadb", "memory"])
    parser.add_argument("--taskflow", action="store_true",
                        help="also run TaskFlow's SQLite persistence (benchmark venv)")
    parser.add_argument("--taskflow-flows", type=int, default=10)
    parser.add_argument("--fenced", action="store_true",
                        help="also record each flow fenced, as a conductor does (alternating)")
    args = parser.parse_args()
    print(f"Python {platform.python_version()}, SQLAlchemy {sqlalchemy.__version__}, "
          f"{platform.machine()}, {args.tasks} tasks/flow ({2 * args.tasks + 4} writes), "
          f"{args.flows} flows x {args.repeat} runs, best run reported", file=sys.stderr)
    print("| backend                      | flow ms  | p90 ms   | update µs| floor µs | read µs  |")
    print("|------------------------------|---------:|---------:|---------:|---------:|---------:|")
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.backends:
            if name == "sqlite":
                bench_legato(name, f"sqlite:///{workdir}/legato.db", args)
            elif name == "memory":
                bench_legato(name, "memory://", args)
            elif name == "postgresql":
                with services.postgres_url() as url:
                    bench_legato(name, url, args)
                    bench_legato(f"{name} no pre-ping", url, args, pre_ping=False)
            elif name == "mariadb":
                with services.mysql_url() as url:
                    bench_legato(name, url, args)
                    bench_legato(f"{name} no pre-ping", url, args, pre_ping=False)
            else:
                parser.error(f"unknown backend {name!r}")
        if args.taskflow:
            bench_taskflow_sqlite(workdir, args)


if __name__ == "__main__":
    main()
