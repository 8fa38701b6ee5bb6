"""A five-task flow for the crash-resume test, run in a child process.

``python crash_flow.py URL FLOW_UUID JOURNAL`` loads the flow detail from the persistence at
URL, rebuilds the flow through its recorded factory and runs it. Each task appends one JSON
line to JOURNAL when it completes. With ``LEGATO_CRASH_AT_4=1`` in the environment, task 4
prints ``task4-started`` and blocks forever (the test kills the process there).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any

import legato
from legato.engine import FactoryPolicy, load_from_detail
from legato.flow import LinearFlow, Task
from legato.persistence import connect


class Step(Task):
    def __init__(self, number: int, journal: str) -> None:
        super().__init__(f"step{number}", provides=f"r{number}",
                         requires=[f"r{number - 1}"] if number > 1 else [])
        self.number = number
        self.journal = journal

    def execute(self, **received: Any) -> dict[str, Any]:
        if self.number == 4 and os.environ.get("LEGATO_CRASH_AT_4") == "1":
            print("task4-started", flush=True)
            threading.Event().wait()  # blocked until SIGKILL
        result = {"step": self.number, "pid": os.getpid(), "token": os.urandom(4).hex()}
        with open(self.journal, "a", encoding="utf-8") as out:
            out.write(json.dumps({"step": self.number, "pid": os.getpid(),
                                  "received": received}) + "\n")
        return result


@legato.flow_factory
def make_flow(journal: str) -> LinearFlow:
    return LinearFlow("crash").add(*(Step(i, journal) for i in range(1, 6)))


def main(argv: list[str]) -> None:
    url, flow_uuid = argv
    persistence = connect(url)
    try:
        flow_detail = persistence.get_flow_details(flow_uuid)
        engine = load_from_detail(flow_detail, persistence=persistence, policy=FactoryPolicy())
        engine.run()
        print("flow-finished", flush=True)
    finally:
        persistence.close()


if __name__ == "__main__":
    from crash_flow import main as real_main  # the importable module, not __main__

    real_main(sys.argv[1:])
