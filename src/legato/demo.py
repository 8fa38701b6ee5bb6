"""The flow ``legato demo`` runs: a line of steps, each a short sleep and one line of side effect.

Each step appends one JSON line (job, step, pid) to a side-effect log, so the demo can count how
many steps really ran, in which process, against how many the flows needed: the difference is
the work re-done after a crash (at-least-once: a step left RUNNING when its process died runs
again; steps recorded SUCCESS never do).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from legato.flow import LinearFlow, Task, flow_factory

__all__ = ["DemoStep", "demo_flow"]


class DemoStep(Task):
    """Append ``{"job", "step", "pid"}`` to ``log_path``, then sleep ``step_delay`` seconds.

    The line is written as the step starts, so a step cut short by a crash shows up as run
    twice once another conductor re-runs it.

    Args:
        index: the step's number, from 1.
    """

    def __init__(self, index: int) -> None:
        super().__init__(f"step-{index}", provides=f"step_{index}")
        self.index = index

    def execute(self, job_name: str, log_path: str, step_delay: float = 0.3) -> dict[str, Any]:
        line = json.dumps({"job": job_name, "step": self.index, "pid": os.getpid(),
                           "time": time.time()})
        # One short O_APPEND write per line, so lines from several processes never interleave.
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)
        time.sleep(step_delay)
        return {"step": self.index, "pid": os.getpid()}


@flow_factory
def demo_flow(steps: int = 5) -> LinearFlow:
    """``steps`` demo steps in a line; inputs ``job_name``, ``log_path`` and ``step_delay``."""
    if steps < 1:
        raise ValueError("a demo flow needs at least one step")
    return LinearFlow("demo").add(*(DemoStep(i) for i in range(1, steps + 1)))
