"""A conductor that stops dead after its persistence's N-th write transaction.

``python write_boundary_child.py BOARD PERSISTENCE N [AT_ONCE]`` runs one conductor on BOARD
with the persistence at PERSISTENCE: a blocking one, or with AT_ONCE a non-blocking one running
up to AT_ONCE jobs at once (their writes are counted together: the writes are serialised, so the
N-th is a cut across every job in flight). Each write transaction the persistence commits
(every ``take``, ``update``, ``record_claim``...) prints ``write K <what>``; after the N-th it
prints ``stopped`` and blocks forever, so the test SIGKILLs it exactly at that write boundary
(N=0: before the first write, once the flow's first write is about to be made).
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from legato import jobboard as jb
from legato import persistence as lp
from legato.conductor import BlockingConductor, NonBlockingConductor

#: The backend's write primitives: each commits one transaction.
WRITES = ("_update_many", "_update_atom_details", "_update_flow_state", "_update_flow_details",
          "_take_new_flow", "_take_flow", "_record_claim")


def stopping_after(persistence: Any, stop_at: int) -> Any:
    """``persistence`` with each write primitive counted, blocking for good after the
    ``stop_at``-th (or before the first, for 0)."""
    count = [0]
    lock = threading.Lock()

    def wrap(name: str) -> None:
        inner = getattr(persistence, name)

        def write(*args: Any) -> Any:
            with lock:
                if stop_at == 0:
                    print("stopped", flush=True)
                    threading.Event().wait()
                result = inner(*args)
                count[0] += 1
                print(f"write {count[0]} {name}", flush=True)
                if count[0] == stop_at:
                    print("stopped", flush=True)
                    threading.Event().wait()  # until SIGKILL
                return result

        setattr(persistence, name, write)

    for name in WRITES:
        wrap(name)
    return persistence


def main() -> None:
    board_url, persistence_url, stop_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    at_once = int(sys.argv[4]) if len(sys.argv) > 4 else None
    persistence = stopping_after(lp.connect(persistence_url), stop_at)
    with jb.connect(board_url, persistence=persistence) as board:
        print("ready", flush=True)
        options: dict[str, Any] = {"claim_ttl": 2.0, "wait_timeout": 0.2,
                                   "allowed_factories": ["legato.testing"]}
        conductor = (BlockingConductor("doomed", board, persistence, **options)
                     if at_once is None else
                     NonBlockingConductor("doomed", board, persistence,
                                          max_simultaneous_jobs=at_once, **options))
        conductor.run()


if __name__ == "__main__":
    main()
