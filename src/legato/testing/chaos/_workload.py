"""The chaos workload: flows whose steps log every run to a side-effect file.

Each step appends ``start <job> <step> <run> <pid> <time>`` as it starts and ``end …`` as it
ends (one ``O_APPEND`` write per line, so lines of many processes never interleave), sleeps its
duration in between (a quarter of it when the step ran before), and returns its ``run`` token,
which persistence records as the step's result. The checker compares those lines with what
persistence and the board say.
"""

from __future__ import annotations

import dataclasses
import os
import random
import subprocess  # noqa: F401  (a hostile factory name walks into it: it must not be called)
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from legato import engine as engine_mod
from legato.flow import Flow, LinearFlow, Task, flow_factory
from legato.jobboard.base import Job, JobBoard
from legato.persistence.base import Persistence
from legato.persistence.models import FlowDetail, LogBook

__all__ = ["RERUN_FACTOR", "PostedJob", "append_line", "chaos_flow", "hostile_factories",
           "post_raw_factory", "post_workload", "unregistered_flow"]

#: A step that already ran (by the side-effect log) sleeps this fraction of its duration.
RERUN_FACTOR = 0.25


def append_line(path: str | Path, line: str) -> None:
    """Append one line with a single ``O_APPEND`` write."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


class _ChaosStep(Task):
    def __init__(self, index: int, job: str, log_path: str, duration: float) -> None:
        super().__init__(f"step-{index}", provides=f"step-{index}")
        self.index, self.job, self.log_path, self.duration = index, job, log_path, duration

    def _log(self, what: str, run: str) -> None:
        append_line(self.log_path,
                    f"{what} {self.job} {self.index} {run} {os.getpid()} {time.time():.6f}")

    def _ran_before(self) -> bool:
        prefix = f"start {self.job} {self.index} "
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as log:
                return any(line.startswith(prefix) for line in log)
        except FileNotFoundError:
            return False

    def execute(self) -> str:
        run = uuid.uuid4().hex[:12]  # tells this run of the step from every other
        # A re-run takes a quarter of the time (as if its first run had warmed a cache), so a
        # conductor that took a job over finishes a step before the stale owner's run of it.
        duration = self.duration * (RERUN_FACTOR if self._ran_before() else 1.0)
        self._log("start", run)
        time.sleep(duration)  # stands for real work, so faults land mid-step
        self._log("end", run)
        return run


@flow_factory
def chaos_flow(job: str, durations: list[float], log_path: str) -> Flow:
    """One step per entry of ``durations`` (seconds), each logging its runs to ``log_path``."""
    return LinearFlow("chaos").add(
        *(_ChaosStep(i, job, log_path, d) for i, d in enumerate(durations)))


@dataclasses.dataclass(frozen=True)
class PostedJob:
    """A job of the workload: its name (used in the side-effect log) and ids."""

    name: str
    uuid: str
    book_uuid: str
    flow_uuid: str
    steps: int


def unregistered_flow(marker: str) -> Flow:
    """A plain module-level function that is NOT a registered factory: a job naming it must be
    refused. Called anyway, it leaves ``marker`` behind as evidence."""
    append_line(marker, "unregistered_flow was called")
    return chaos_flow("never", [], marker)


def hostile_factories(directory: Path) -> list[tuple[str, list[Any], Path]]:
    """Factory records an attacker with board access might write: (name, args, marker file
    that exists only if the named object was called)."""
    here = __name__
    markers = [directory / f"hostile-{i}.marker" for i in range(5)]
    return [
        (f"{here}:os.system", [f"touch {markers[0]}"], markers[0]),
        (f"{here}:subprocess.run", [["touch", str(markers[1])]], markers[1]),
        (f"{here}:unregistered_flow", [str(markers[2])], markers[2]),
        (f"{here}:append_line", [str(markers[3]), "append_line was called"], markers[3]),
        ("os:system", [f"touch {markers[4]}"], markers[4]),
    ]


def post_raw_factory(board: JobBoard, persistence: Persistence, name: str, factory: str,
                     args: list[Any]) -> Job:
    """Post a job whose flow detail's factory record is written straight through persistence,
    as an attacker with access to the storage would (``save_factory_details`` would refuse
    it)."""
    book = LogBook(name)
    flow_detail = FlowDetail(name)
    book.add(flow_detail)
    persistence.save_logbook(book)
    meta = dict(flow_detail.meta)
    meta["factory"] = {"name": factory, "args": args, "kwargs": {}}
    persistence.update_flow_details(FlowDetail(flow_detail.name, flow_detail.uuid,
                                               flow_detail.state, meta))
    return board.post(name, book=persistence.get_logbook(book.uuid),
                      details={"flow_uuid": flow_detail.uuid})


def post_workload(board: JobBoard, persistence: Persistence, *, jobs: int,
                  steps: int | Sequence[int], durations: tuple[float, float],
                  rng: random.Random, log_path: Path, prefix: str = "job",
                  handles: dict[str, Job] | None = None) -> list[PostedJob]:
    """Post ``jobs`` chaos flows; step counts and durations come from ``rng``.

    Args:
        steps: steps per job, or a (min, max) pair to draw from.
        durations: the (min, max) seconds of one step.
        handles: if given, each posted ``Job`` is put there by its uuid (to ask its state).
    """
    posted = []
    for index in range(jobs):
        count = steps if isinstance(steps, int) else rng.randint(steps[0], steps[1])
        name = f"{prefix}-{index:03d}"
        plan = [round(rng.uniform(*durations), 3) for _ in range(count)]
        book = LogBook(name)
        flow_detail = FlowDetail(name)
        book.add(flow_detail)
        persistence.save_logbook(book)
        engine_mod.save_factory_details(
            flow_detail, chaos_flow, (), {"job": name, "durations": plan,
                                          "log_path": str(log_path)}, persistence=persistence)
        job = board.post(name, book=persistence.get_logbook(book.uuid),
                         details={"flow_uuid": flow_detail.uuid})
        posted.append(PostedJob(name, job.uuid, book.uuid, flow_detail.uuid, count))
        if handles is not None:
            handles[job.uuid] = job
    return posted
