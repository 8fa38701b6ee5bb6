"""A conductor SIGKILLed while it holds jobs it claimed ahead and has not started (on ZooKeeper
two consumes and the claims riding on them go out as one ``multi``): those claims lapse with its
session, and another conductor runs every job, each step once but the one the kill cut short."""

from __future__ import annotations

import collections
import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from legato import errors
from legato import jobboard as jb
from legato import persistence as lp
from legato.jobboard.base import Job, JobBoard
from legato.states import FlowState
from legato.testing import conductor as tc

JOBS = 20
PAUSE = 0.1  # each job's one step: jobs held ahead wait less than the hold time (TTL / 4)
TTL = 2.0

pytestmark = pytest.mark.slow


@pytest.fixture(params=["zookeeper", "redis"])
def board(request: pytest.FixtureRequest) -> tuple[str, int]:
    """The board's URL, and how many claimed jobs the conductor must hold without having
    started them when it is killed: on ZooKeeper five (the next job to run and the jobs
    claimed by calls in flight, gathered four to a ``multi``), on Redis one."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    if request.param == "zookeeper":
        return f"{url}?session_timeout=2", 5  # its claims end with its session, 2 s after
    return url, 1


@pytest.fixture
def conductors() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()


def _start(board_url: str, persistence_url: str, name: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "legato.testing.conductor", board_url,
                             persistence_url, "--ttl", str(TTL), "--claim-ahead-below", "1000",
                             "--name", name], stdout=subprocess.DEVNULL)


def _starts(log: Path) -> dict[str, list[int]]:
    """Each job's step starts, by the pid that started it."""
    starts: dict[str, list[int]] = collections.defaultdict(list)
    if log.exists():
        for line in log.read_text().splitlines():
            what, label, _, pid, _ = line.split()
            if what == "start":
                starts[label].append(int(pid))
    return starts


def _held_unstarted(board: JobBoard, jobs: dict[str, Job], log: Path) -> list[str]:
    """The jobs claimed by the conductor named ``first`` whose step has not started."""
    started = _starts(log)
    held = []
    for label, job in jobs.items():
        if label not in started:
            with contextlib.suppress(errors.NotFound):
                if (board.find_owner(job) or "").startswith("first@"):
                    held.append(label)
    return held


def test_jobs_claimed_ahead_by_a_killed_conductor_run_once_elsewhere(
        board: tuple[str, int], tmp_path: Path,
        conductors: list[subprocess.Popen[bytes]]) -> None:
    board_url, ahead = board
    persistence_url = f"sqlite:///{tmp_path / 'flows.db'}"
    persistence = lp.connect(persistence_url)
    persistence.upgrade()
    log = tmp_path / "side-effects.log"
    with jb.connect(board_url, persistence=persistence) as poster:
        jobs = {f"job-{i}": tc.post_job(poster, persistence, tc.side_effect_flow, name=f"job-{i}",
                                        kwargs={"steps": 1, "label": f"job-{i}",
                                                "log_path": str(log), "pause": PAUSE})
                for i in range(JOBS)}
        first = _start(board_url, persistence_url, "first")
        conductors.append(first)
        held: list[str] = []

        def stopped_holding() -> bool:
            # Stop the conductor, then look: it holds jobs it has not started (or carry on).
            if len(_held_unstarted(poster, jobs, log)) < ahead:
                return False
            first.send_signal(signal.SIGSTOP)
            held[:] = _held_unstarted(poster, jobs, log)
            if len(held) < ahead:
                first.send_signal(signal.SIGCONT)
                return False
            return True

        tc.wait_until(stopped_holding, timeout=60)
        first.send_signal(signal.SIGKILL)
        first.wait()
        conductors.append(_start(board_url, persistence_url, "second"))
        tc.wait_until(lambda: poster.job_count == 0, timeout=60)
        assert list(poster.iter_trash()) == []
    starts = _starts(log)
    for label in held:  # claimed ahead, never started by the killed conductor
        assert starts[label] == [conductors[1].pid], (label, starts[label])
    reruns = [label for label, pids in starts.items() if len(pids) > 1]
    assert len(reruns) <= 1, starts  # only the step the kill cut short runs again
    for label, job in jobs.items():
        assert label in starts
        (flow,) = persistence.get_logbook(job.book_uuid).flows.values()
        assert flow.state is FlowState.SUCCESS, label
    persistence.close()
