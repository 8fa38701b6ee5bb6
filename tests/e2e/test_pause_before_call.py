"""A conductor paused (SIGSTOP) right after an atom's start is recorded and before the atom is
called, for longer than its lease: another conductor takes the job over, runs the atom and
finishes the job. When the paused one resumes it must not call the atom (its lease ran out
while it was stopped, though nothing has told it so yet), and its finishing call is refused.
Without that check it ran the step once more after the step's result was recorded and the job
consumed (found by the chaos run's ``no_rerun_after_success``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from legato import jobboard as jb
from legato import persistence as lp
from legato.testing import conductor as tc
from legato.testing.jobboard_acceptance import until

CHILD = Path(__file__).with_name("pause_before_call_child.py")
STEPS = 2

pytestmark = pytest.mark.slow


def _stopped(pid: int) -> bool:
    # /proc/PID/stat: "pid (comm) state ...": T when stopped by a signal.
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "T"


def _lines(log: Path) -> list[list[str]]:
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


@pytest.mark.parametrize("atom", [0, 1], ids=["first-step", "second-step"])
def test_paused_before_the_call_does_not_run_the_step(tmp_path: Path, atom: int) -> None:
    board_url = f"sqlite:///{tmp_path / 'board.db'}"
    persistence_url = f"sqlite:///{tmp_path / 'flows.db'}"
    log = tmp_path / "side-effects.log"
    persistence = lp.connect(persistence_url)
    persistence.upgrade()
    procs: list[subprocess.Popen[bytes]] = []
    out = tmp_path / "paused.out"
    try:
        with jb.connect(board_url, persistence=persistence) as board:
            tc.post_job(board, persistence, tc.side_effect_flow, name="paused",
                        kwargs={"steps": STEPS, "label": "p", "log_path": str(log)})
            with out.open("wb") as sink, (tmp_path / "paused.err").open("wb") as err:
                paused = subprocess.Popen(
                    [sys.executable, str(CHILD), board_url, persistence_url, f"step-{atom}"],
                    stdout=sink, stderr=err)
            procs.append(paused)
            assert until(lambda: "pausing" in out.read_text() and _stopped(paused.pid), 60), (
                "the conductor never stopped before the step")
            with (tmp_path / "new.err").open("wb") as err:
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "legato.testing.conductor", board_url,
                     persistence_url, "--ttl", "2", "--name", "new"],
                    stdout=subprocess.DEVNULL, stderr=err))
            assert until(lambda: board.job_count == 0, 60), "the job was never finished"
            paused.send_signal(signal.SIGCONT)
            assert until(lambda: "resumed" in out.read_text(), 30)
            text = lambda: (tmp_path / "paused.err").read_text()  # noqa: E731
            assert until(lambda: "lost job" in text() or "could not finish job" in text(), 30), (
                text())
            assert board.job_count == 0 and list(board.iter_trash()) == []
        pid = str(paused.pid)
        # The paused conductor called no step from the one it stopped before on.
        assert not [line for line in _lines(log) if line[3] == pid and int(line[2]) >= atom]
        new_pid = str(procs[1].pid)
        assert {int(line[2]) for line in _lines(log)
                if line[0] == "end" and line[3] == new_pid} >= set(range(atom, STEPS))
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
                proc.send_signal(signal.SIGKILL)
            proc.wait()
        persistence.close()
