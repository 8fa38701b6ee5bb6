"""A conductor process for chaos runs: ``python -m legato.testing.chaos worker [BOARD PERSISTENCE]``
(the URLs default to ``LEGATO_BOARD`` and ``LEGATO_PERSISTENCE``; the harness passes them so).

Like ``legato conductor``, plus what the checker needs: every ``running_start`` (with the claim's
fence), ``job_consumed``, ``job_abandoned`` and ``job_trashed`` is appended to an event log
before the conductor goes on; and ``--skew SECONDS`` gives the board a clock that far from the
machine's (``clock=lambda: time.time() + skew``), to play a machine whose clock is off.
SIGTERM stops the conductor gracefully (running jobs are abandoned at the next step).
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time
import types
from pathlib import Path
from typing import Any

from legato.testing.chaos._check import ConductorEvent
from legato.testing.chaos._workload import append_line

__all__ = ["EventLog", "serve"]

_LOGGED = ("running_start", "job_consumed", "job_abandoned", "job_trashed")


class EventLog:
    """A conductor notifier listener appending ``ConductorEvent`` lines to a file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, event: str, details: dict[str, Any]) -> None:
        if event not in _LOGGED:
            return
        job = details.get("job")
        reason = details.get("reason")
        record = ConductorEvent(event=event, job=str(getattr(job, "name", "")), pid=os.getpid(),
                                time=time.time(), fence=getattr(job, "fence", None),
                                reason=None if reason is None else str(reason)[:300])
        append_line(self.path, record.to_json())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m legato.testing.chaos worker")
    parser.add_argument("board", nargs="?", default=os.environ.get("LEGATO_BOARD"),
                        help="default: $LEGATO_BOARD (keeps a password out of the command line)")
    parser.add_argument("persistence", nargs="?", default=os.environ.get("LEGATO_PERSISTENCE"),
                        help="default: $LEGATO_PERSISTENCE")
    parser.add_argument("--name", default="chaos")
    parser.add_argument("--kind", default="blocking", choices=("blocking", "nonblocking"))
    parser.add_argument("--ttl", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=2, help="nonblocking: jobs at once")
    parser.add_argument("--skew", type=float, default=0.0,
                        help="seconds the board's clock runs ahead (negative: behind)")
    parser.add_argument("--events", type=Path, required=True)
    parser.add_argument("--claim-ahead-below", type=float, default=None)
    parser.add_argument("--max-attempts", type=int, default=50)
    return parser


def serve(argv: list[str] | None = None) -> None:
    """Run one conductor until SIGTERM (graceful) or SIGKILL."""
    from legato import jobboard as jb
    from legato import persistence as lp
    from legato.conductor import ExecutorConductor, fetch

    parser = _parser()
    args = parser.parse_args(argv)
    if not args.board or not args.persistence:
        parser.error("give BOARD and PERSISTENCE, or set LEGATO_BOARD and LEGATO_PERSISTENCE")
    board_options: dict[str, Any] = {}
    if args.skew:
        skew = float(args.skew)
        board_options["clock"] = lambda: time.time() + skew
    options: dict[str, Any] = {"claim_ttl": args.ttl, "max_attempts": args.max_attempts,
                               "allowed_factories": ["legato.testing"], "wait_timeout": 0.5,
                               "backoff_base": 0.1, "backoff_max": 1.0,
                               # Pauses on the scale of the runs' TTL (2 s), not a service's.
                               "pause_for": 1.0}
    if args.kind == "nonblocking":
        options["max_simultaneous_jobs"] = args.workers
    elif args.claim_ahead_below is not None:
        options["claim_ahead_below"] = args.claim_ahead_below
    persistence = lp.connect(args.persistence)
    with jb.connect(args.board, persistence=persistence, **board_options) as board:
        conductor = fetch(args.kind, args.name, board, persistence=persistence, **options)
        assert isinstance(conductor, ExecutorConductor)
        conductor.notifier.register("*", EventLog(args.events))

        def on_term(signum: int, frame: types.FrameType | None) -> None:
            threading.Thread(target=conductor.stop, daemon=True).start()

        signal.signal(signal.SIGTERM, on_term)
        print(f"ready {conductor.conductor.name}", flush=True)
        conductor.run()
    persistence.close()
