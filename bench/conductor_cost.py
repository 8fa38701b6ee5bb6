#!/usr/bin/env python3
"""Per-job cost of one in-process blocking conductor, for instruction counts (noise-free where
wall time on a shared machine is not).

Posts N jobs of a K-task linear flow on an in-process memory board with SQLite persistence (a
file: durable writes, fenced like any conductor's), then drains them with one blocking
conductor. Run it under callgrind for two values of N; the difference divided by the difference
in N is the instructions per job (posting included, start-up cancelled)::

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv-bench/bin/python bench/conductor_cost.py 30 1
    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv-bench/bin/python bench/conductor_cost.py 130 1

``--board URL`` drains from another board (a Redis or ZooKeeper one exercises the claim-ahead
pipeline; ``--claim-ahead-below 60`` keeps it on although callgrind makes every job slow).
``--persistence memory`` keeps flows in memory instead (the conductor's own work, no SQL);
``--metrics`` gives the conductor Prometheus metrics on a registry of its own (never scraped:
the count is the bookkeeping per job). ``--post-only`` posts the jobs and stops: subtract its
count for the conductor's own cost per job (``bench/conductor.py`` does not time posting;
with a Redis or ZooKeeper board, delete the namespace or path afterwards). These options also
work against an older checkout (put it on ``PYTHONPATH``), except ``--metrics`` where it has
no metrics.
"""

from __future__ import annotations

import argparse
import tempfile
import uuid
from typing import Any

from legato import jobboard as jb
from legato import persistence as lp
from legato.conductor import BlockingConductor
from legato.testing import conductor as tc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("jobs", type=int)
    parser.add_argument("tasks", type=int)
    parser.add_argument("--board", default=None, help="board URL (a fresh memory board)")
    parser.add_argument("--claim-ahead-below", type=float, default=None)
    parser.add_argument("--persistence", choices=("sqlite", "memory"), default="sqlite")
    parser.add_argument("--metrics", action="store_true", help="conductor keeps metrics")
    parser.add_argument("--post-only", action="store_true", help="post the jobs, run nothing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        store = lp.connect(f"sqlite:///{workdir}/flows.db" if args.persistence == "sqlite"
                           else "memory://")
        store.upgrade()
        url = args.board or f"memory://cost-{uuid.uuid4().hex}"
        with jb.connect(url, persistence=store) as board:
            for i in range(args.jobs):
                tc.post_job(board, store, tc.steps_flow, kwargs={"steps": args.tasks},
                            name=f"job-{i}")
            if args.post_only:
                return
            options: dict[str, Any] = {}
            if args.metrics:
                from prometheus_client import CollectorRegistry

                from legato.conductor import ConductorMetrics

                options["metrics"] = ConductorMetrics(CollectorRegistry())
            BlockingConductor("cost", board, store, wait_timeout=0.05,
                              claim_ahead_below=args.claim_ahead_below, **options).run(
                max_dispatches=args.jobs)
        store.close()


if __name__ == "__main__":
    main()
