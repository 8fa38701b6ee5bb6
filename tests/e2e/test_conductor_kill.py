"""Three conductor processes work through 200 jobs while one of them is SIGKILLed and restarted
every ~2 s. Every job must finish exactly once, and a step may run again only when a kill
interrupted its earlier run.

On Redis and ZooKeeper the conductors also run with claiming ahead forced on (every job counts as
short), so kills land while a conductor holds a job it has not started and a consume whose
answer it has not read, and jobs held longer than the hold time are released."""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from legato import jobboard as jb
from legato import persistence as lp
from legato.persistence.base import Persistence
from legato.states import AtomState, FlowState
from legato.testing import conductor as tc

JOBS = 200
STEPS = 5
PROCESSES = 3
TTL = 2.0
KILL_EVERY = 2.0
DEADLINE = 80.0
PAUSE = 0.05

pytestmark = pytest.mark.slow


class Fleet:
    """Conductor processes on one board, started, killed and restarted by the test."""

    def __init__(self, board_url: str, persistence_url: str, log: Path,
                 extra: tuple[str, ...] = ()) -> None:
        self.args = [sys.executable, "-m", "legato.testing.conductor", board_url,
                     persistence_url, "--ttl", str(TTL), *extra]
        self.log = log
        self.procs: list[subprocess.Popen[bytes]] = []
        self.killed: set[int] = set()
        self.started = 0

    def start(self) -> None:
        self.started += 1
        self.procs.append(subprocess.Popen([*self.args, "--name", f"w{self.started}"],
                                           stdout=subprocess.DEVNULL))

    def kill_one(self, rng: random.Random) -> None:
        proc = self.procs.pop(rng.randrange(len(self.procs)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.killed.add(proc.pid)
        _append(self.log, f"kill - - {proc.pid} -\n")

    def close(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGKILL)
            proc.wait()


def _append(path: Path, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@pytest.fixture(params=["sqlite", "redis", "redis-ahead", "zookeeper-ahead"])
def board(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, tuple[str, ...]]:
    kind, _, ahead = str(request.param).partition("-")
    extra = ("--claim-ahead-below", "1000") if ahead else ()
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'board.db'}", extra
    url: str = request.getfixturevalue(f"{kind}_url")
    return url, extra


@pytest.fixture
def fleet(board: tuple[str, tuple[str, ...]], tmp_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(board[0], f"sqlite:///{tmp_path / 'flows.db'}", tmp_path / "side-effects.log",
                  board[1])
    try:
        yield fleet
    finally:
        fleet.close()


def test_kill_and_restart_conductors(fleet: Fleet, tmp_path: Path) -> None:
    persistence = lp.connect(fleet.args[4])
    persistence.upgrade()
    log = fleet.log
    with jb.connect(fleet.args[3], persistence=persistence) as board:
        labels = {}
        for i in range(JOBS):
            job = tc.post_job(board, persistence, tc.side_effect_flow, name=f"job-{i}",
                              kwargs={"steps": STEPS, "label": f"job-{i}",
                                      "log_path": str(log), "pause": PAUSE})
            labels[f"job-{i}"] = job.book_uuid
        rng = random.Random(4)
        for _ in range(PROCESSES):
            fleet.start()
        deadline = time.monotonic() + DEADLINE
        while board.job_count and time.monotonic() < deadline:
            time.sleep(KILL_EVERY * rng.uniform(0.5, 1.5))  # the test's own pacing, not a sync
            if board.job_count:
                fleet.kill_one(rng)
                fleet.start()
        assert board.job_count == 0, f"{board.job_count} jobs left after {DEADLINE}s"
        assert list(board.iter_trash()) == []
    assert len(fleet.killed) >= 5, "too few kills to mean anything"
    check_side_effects(log, persistence, labels, fleet.killed)


def check_side_effects(log: Path, persistence: Persistence, labels: dict[str, str],
                       killed: set[int]) -> None:
    runs: dict[tuple[str, int], list[tuple[int, str]]] = collections.defaultdict(list)
    ended: set[str] = set()
    dead: set[int] = set()
    reruns = 0
    for line in log.read_text().splitlines():
        what, label, step, pid, run = line.split()
        if what == "kill":
            dead.add(int(pid))
            continue
        key = (label, int(step))
        if what == "end":
            ended.add(run)
            continue
        # A new start of the same step: the earlier runner must have been killed before it.
        for earlier_pid, _ in runs[key]:
            assert earlier_pid in dead, f"{key} ran again although {earlier_pid} was alive"
        reruns += bool(runs[key])
        # Steps of one job only move forward: no step before the newest one runs again.
        later = [s for (lab, s), r in runs.items() if lab == label and s > int(step) and r]
        assert not later, f"{label} step {step} started after step {max(later)}"
        runs[key].append((int(pid), run))
    assert dead == killed
    for label, book_uuid in labels.items():
        (flow_detail,) = persistence.get_logbook(book_uuid).flows.values()
        assert flow_detail.state is FlowState.SUCCESS, label
        for step in range(STEPS):
            atom = flow_detail.find_by_name(f"step-{step}")
            assert atom is not None and atom.state is AtomState.SUCCESS
            # The stored result is the last run of the step, which finished: nothing ran after
            # the SUCCESS was stored.
            _, last_run = runs[(label, step)][-1]
            assert atom.results == last_run and last_run in ended, (label, step)
    assert reruns <= len(killed), "more re-runs than kills"
    print(f"{len(killed)} kills, {reruns} steps re-run")
