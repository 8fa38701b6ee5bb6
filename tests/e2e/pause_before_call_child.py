"""A blocking conductor that stops itself (SIGSTOP: a GC or VM pause) right after an atom's
start is recorded and before the atom is called.

``python pause_before_call_child.py BOARD PERSISTENCE ATOM`` runs one blocking conductor (2 s
claim TTL) on BOARD with the persistence at PERSISTENCE. When atom ATOM's RUNNING state has
been written it prints ``pausing`` and stops its own process, every thread with it (the lease
renewer too); the test resumes it with SIGCONT.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from legato import jobboard as jb
from legato import persistence as lp
from legato.conductor import BlockingConductor


def main() -> None:
    board_url, persistence_url, atom = sys.argv[1], sys.argv[2], sys.argv[3]
    paused = [False]

    def on_atom(state: str, details: dict[str, Any]) -> None:
        if state == "RUNNING" and details["atom_name"] == atom and not paused[0]:
            paused[0] = True
            print("pausing", flush=True)
            os.kill(os.getpid(), signal.SIGSTOP)
            print("resumed", flush=True)

    def on_running(event: str, details: dict[str, Any]) -> None:
        details["engine"].atom_notifier.register("RUNNING", on_atom)

    persistence = lp.connect(persistence_url)
    with jb.connect(board_url, persistence=persistence) as board:
        conductor = BlockingConductor("paused", board, persistence, claim_ttl=2.0,
                                      wait_timeout=0.2, allowed_factories=["legato.testing"])
        conductor.notifier.register("running_start", on_running)
        print("ready", flush=True)
        conductor.run()


if __name__ == "__main__":
    main()
