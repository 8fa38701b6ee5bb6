"""Dashboard render times with a large backlog: ``python bench/dashboard.py [--jobs 100000]``.

Posts JOBS waiting jobs on a fresh board (SQLite by default, or ``--board URL``), serves the
dashboard in a thread and times full HTTP renders of the overview and of a jobs page (median
and worst of several requests). Figures go in docs/benchmarks.md; nothing here is a test.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from legato import jobboard, persistence
from legato.dashboard.app import create_app
from legato.testing.dashboard import running


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
        for i in range(args.jobs):
            board.post(f"job-{i}", details={"store": {"i": i}})
        print(f"posted {args.jobs} jobs in {time.perf_counter() - started:.1f}s")
        with running(create_app(board, store)) as url, httpx.Client(base_url=url) as web:
            for path in ("/", "/jobs", "/jobs?start=50", "/api/stats", "/api/jobs"):
                assert web.get(path).status_code == 200  # warm up
                times = []
                for _ in range(args.repeat):
                    begin = time.perf_counter()
                    answer = web.get(path)
                    times.append((time.perf_counter() - begin) * 1000)
                    assert answer.status_code == 200
                print(f"{path:<16} median {statistics.median(times):6.1f} ms   "
                      f"worst {max(times):6.1f} ms")
    store.close()


if __name__ == "__main__":
    main()
