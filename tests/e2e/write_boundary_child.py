"""A blocking conductor that stops dead after its persistence's N-th write transaction.

``python write_boundary_child.py BOARD PERSISTENCE N`` runs one blocking conductor on BOARD with
the persistence at PERSISTENCE. Each write transaction the persistence commits (every ``take``,
``update``, ``record_claim``...) prints ``write K <what>``; after the N-th it prints ``stopped``
and blocks forever, so the test SIGKILLs it exactly at that write boundary (N=0: before the
first write, once the flow's first write is about to be made).
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from legato import jobboard as jb
from legato import persistence as lp
from legato.conductor import BlockingConductor

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
    persistence = stopping_after(lp.connect(persistence_url), stop_at)
    with jb.connect(board_url, persistence=persistence) as board:
        print("ready", flush=True)
        BlockingConductor("doomed", board, persistence, claim_ttl=2.0, wait_timeout=0.2,
                          allowed_factories=["legato.testing"]).run()


if __name__ == "__main__":
    main()
