"""The moving parts of ``legato demo``: posted jobs, conductor processes, the crash, the log.

``demo.py`` drives these; ``_demo_view.py`` draws them. Everything the demo reports comes from
persistence, the board and the side-effect log, never from the conductors' own word.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from legato.cli._context import BOARD_ENV, PERSISTENCE_ENV
from legato.persistence.models import FlowDetail, LogBook
from legato.states import AtomState, FlowState

if TYPE_CHECKING:
    from legato.jobboard.base import JobBoard
    from legato.persistence.base import Persistence

__all__ = ["Crash", "DemoJob", "Worker", "post_jobs", "read_side_effects", "start_worker"]


@dataclasses.dataclass
class DemoJob:
    """One posted demo job and what was last seen of it."""

    name: str
    uuid: str
    flow_uuid: str
    steps: int
    done: int = 0
    running: int | None = None
    state: str = "PENDING"
    owner: str | None = None  # the conductor name (without @host:pid) holding its claim
    on_board: bool = True

    @property
    def finished(self) -> bool:
        return self.state == FlowState.SUCCESS and not self.on_board

    @property
    def lost(self) -> bool:
        """Left the board without succeeding (trashed): it will never complete."""
        return not self.on_board and self.state != FlowState.SUCCESS


@dataclasses.dataclass
class Worker:
    """A conductor process started by the demo."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    killed: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def status(self) -> str:
        if self.killed:
            return "killed (SIGKILL)"
        code = self.proc.poll()
        return "running" if code is None else f"exited ({code})"


@dataclasses.dataclass
class Crash:
    """The conductor the demo killed, the job it held, and who took that job over."""

    victim: str
    victim_pid: int
    job: str
    recorded: int  # steps recorded SUCCESS when the conductor was killed
    killed_at: float
    resumed_by: str | None = None
    resumed_at: float | None = None
    resumed_from: int | None = None  # first step the new owner ran (from the side-effect log)


def post_jobs(board: JobBoard, backend: Persistence, *, count: int, steps: int,
              log_path: Path, step_delay: float) -> list[DemoJob]:
    """Post ``count`` demo jobs of ``steps`` steps each."""
    from legato.demo import demo_flow
    from legato.engine import record_factory

    jobs = []
    for index in range(1, count + 1):
        name = f"demo-job-{index:02d}"
        book = LogBook(name)
        flow_detail = FlowDetail(name)
        book.add(flow_detail)
        record_factory(flow_detail, demo_flow, [steps])
        backend.save_logbook(book)
        store = {"job_name": name, "log_path": str(log_path), "step_delay": step_delay}
        job = board.post(name, book, {"flow_uuid": flow_detail.uuid, "store": store})
        jobs.append(DemoJob(name, job.uuid, flow_detail.uuid, steps))
    return jobs


def start_worker(name: str, *, board_url: str, persistence_url: str, ttl: float,
                 workdir: Path) -> Worker:
    """Start ``python -m legato.cli conductor`` in its own session, logging to a file.

    The URLs go through the environment (``LEGATO_BOARD``, ``LEGATO_PERSISTENCE``), never the
    command line, which any user of the machine can read (``ps``) with the passwords in them.
    """
    log_path = workdir / f"{name}.log"
    command = [sys.executable, "-m", "legato.cli", "--json", "conductor", "--name", name,
               "--ttl", str(ttl), "--allow", "legato.demo"]
    env = {**os.environ, BOARD_ENV: board_url, PERSISTENCE_ENV: persistence_url}
    log: IO[bytes]
    with open(log_path, "wb") as log:
        # A session of its own: a Ctrl-C in the terminal reaches the demo, which stops them.
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, env=env,
                                stderr=subprocess.STDOUT, start_new_session=True)
    return Worker(name, proc, log_path)


def stop_workers(workers: list[Worker], *, timeout: float = 15.0) -> None:
    """SIGTERM every live conductor (a graceful stop), then SIGKILL any still running."""
    for worker in workers:
        if worker.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                worker.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for worker in workers:
        try:
            worker.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                worker.proc.kill()
            worker.proc.wait()


def kill(worker: Worker) -> None:
    """SIGKILL: no stop(), no abandon; the claim must end by its lease alone."""
    os.kill(worker.pid, signal.SIGKILL)
    worker.killed = True
    worker.proc.wait()


def refresh(jobs: list[DemoJob], board: JobBoard, backend: Persistence) -> None:
    """Update every job from the board (owner) and persistence (steps done, flow state)."""
    now = board.clock()
    owners = {job.uuid: job.record.effective_owner(now) for job in board.iterjobs()}
    for demo_job in jobs:
        if demo_job.finished or demo_job.lost:
            continue
        demo_job.on_board = demo_job.uuid in owners
        owner = owners.get(demo_job.uuid)
        demo_job.owner = owner.split("@", 1)[0] if owner else None
        atoms = list(backend.get_atoms_for_flow(demo_job.flow_uuid))
        demo_job.done = sum(1 for a in atoms if a.state == AtomState.SUCCESS)
        demo_job.running = next((int(a.name.rsplit("-", 1)[1]) for a in atoms
                                 if a.state == AtomState.RUNNING), None)
        flow_detail = backend.get_flow_details(demo_job.flow_uuid, lazy=True)
        demo_job.state = str(flow_detail.state) if flow_detail.state else "PENDING"


def last_lines(path: Path, count: int) -> list[str]:
    """The last ``count`` non-empty lines of a conductor's log, for a failure report."""
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return []
    return lines[-count:]


def recorded_steps(backend: Persistence, flow_uuid: str) -> int:
    return sum(1 for a in backend.get_atoms_for_flow(flow_uuid) if a.state == AtomState.SUCCESS)


def read_side_effects(path: Path) -> list[dict[str, Any]]:
    """Every line the demo steps wrote (a torn last line, if any, is skipped)."""
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            entries.append(json.loads(line))
    return entries


def summarise(entries: list[dict[str, Any]], jobs: list[DemoJob], *, steps: int,
              names: dict[int, str]) -> dict[str, Any]:
    """Steps run vs needed, re-runs and takeovers, from the side-effect log.

    Args:
        entries: the side-effect log.
        jobs: the demo jobs.
        steps: steps per job.
        names: conductor pid -> conductor name.
    """
    runs = Counter((e["job"], e["step"]) for e in entries)
    by_job: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        by_job.setdefault(entry["job"], []).append(entry)
    takeovers = []
    for name, lines in sorted(by_job.items()):
        first, last = lines[0]["pid"], lines[-1]["pid"]
        if first != last:
            takeovers.append({"job": name, "started_by": names.get(first, str(first)),
                              "finished_by": names.get(last, str(last))})
    return {
        "jobs": len(jobs),
        "completed": sum(1 for j in jobs if j.finished),
        "steps_needed": len(jobs) * steps,
        "steps_run": len(entries),
        "steps_rerun": sum(n - 1 for n in runs.values()),
        "takeovers": len(takeovers),
        "takeover_jobs": takeovers,
        "per_conductor": dict(Counter(names.get(e["pid"], str(e["pid"])) for e in entries)),
    }


def resumed_from(entries: list[dict[str, Any]], job: str, victim_pid: int) -> int | None:
    """The first step of ``job`` that a process other than the victim ran after it."""
    lines = [e for e in entries if e["job"] == job]
    victim_seen = False
    for entry in lines:
        if entry["pid"] == victim_pid:
            victim_seen = True
        elif victim_seen:
            return int(entry["step"])
    return None
