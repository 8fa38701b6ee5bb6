"""A conductor process is paused (SIGSTOP: a GC or VM pause) while it runs a step, for longer
than its claim can last (its ZooKeeper session; on PostgreSQL, its lease); another conductor
takes the job over and finishes it. Once the paused one resumes (SIGCONT) it must start no
further step of that job, and its call finishing the job must be refused. On PostgreSQL the
board and the persistence share one database, so the claim, the writes and the consume are the
one-statement and joined paths."""

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

SESSION_TIMEOUT = 4.0
STEPS = 4

pytestmark = pytest.mark.slow


def _conductor(board_url: str, persistence_url: str, name: str,
               stderr: Path, ttl: float = 30.0) -> subprocess.Popen[bytes]:
    # On ZooKeeper a 30 s TTL: what the conductor trusts must still end with the 4 s session.
    with stderr.open("wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "legato.testing.conductor", board_url, persistence_url,
             "--ttl", f"{ttl:g}", "--name", name], stdout=subprocess.DEVNULL, stderr=err)


def _lines(log: Path) -> list[list[str]]:
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


def _refused(stderr: Path) -> bool:
    text = stderr.read_text()
    return "lost job" in text or "could not finish job" in text


@pytest.mark.parametrize("paused_at", [1, STEPS - 1], ids=["mid-flow", "last-step"])
def test_paused_conductor_runs_no_further_step(zookeeper_url: str, tmp_path: Path,
                                               paused_at: int) -> None:
    _pause_and_take_over(f"{zookeeper_url}?session_timeout={SESSION_TIMEOUT:g}",
                         f"sqlite:///{tmp_path / 'flows.db'}", tmp_path, paused_at, ttl=30.0)


@pytest.mark.parametrize("paused_at", [1, STEPS - 1], ids=["mid-flow", "last-step"])
def test_paused_conductor_runs_no_further_step_postgres(postgres_url: str, tmp_path: Path,
                                                        paused_at: int) -> None:
    # Board and persistence on one URL; a 3 s lease lapses while the process is stopped.
    _pause_and_take_over(postgres_url, postgres_url, tmp_path, paused_at, ttl=3.0)


def _pause_and_take_over(board_url: str, persistence_url: str, tmp_path: Path, paused_at: int,
                         *, ttl: float) -> None:
    log = tmp_path / "side-effects.log"
    persistence = lp.connect(persistence_url)
    persistence.upgrade()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with jb.connect(board_url, persistence=persistence) as board:
            tc.post_job(board, persistence, tc.side_effect_flow, name="paused",
                        kwargs={"steps": STEPS, "label": "paused", "log_path": str(log),
                                "pause": 1.5})
            old = _conductor(board_url, persistence_url, "old", tmp_path / "old.err", ttl)
            procs.append(old)
            pid = str(old.pid)
            assert until(lambda: ["start", "paused", str(paused_at), pid] in
                         [line[:4] for line in _lines(log)], 60), "the step never started"
            old.send_signal(signal.SIGSTOP)
            procs.append(_conductor(board_url, persistence_url, "new", tmp_path / "new.err",
                                    ttl))
            assert until(lambda: board.job_count == 0, 60), "the job was never finished"
            resumed_at = len(_lines(log))
            old.send_signal(signal.SIGCONT)
            # The paused conductor tries to finish the job, and is refused (by the board, or
            # by its own lease, whose deadline passed while the board reconnects).
            assert until(lambda: _refused(tmp_path / "old.err"), 30), (
                (tmp_path / "old.err").read_text())
            assert board.job_count == 0 and list(board.iter_trash()) == []
        after = [line for line in _lines(log)[resumed_at:] if line[3] == pid]
        # At most the end of the step it was paused in; no step started after the pause.
        assert [line[0] for line in after] in ([], ["end"]), after
        assert not [line for line in _lines(log) if line[0] == "start" and line[3] == pid
                    and int(line[2]) > paused_at]
        new_pid = str(procs[1].pid)
        assert {int(line[2]) for line in _lines(log)
                if line[0] == "end" and line[3] == new_pid} >= set(range(paused_at, STEPS))
    finally:
        for proc in procs:
            with_signal = proc.poll() is None
            if with_signal:
                os.kill(proc.pid, signal.SIGCONT)
                proc.send_signal(signal.SIGKILL)
            proc.wait()
        persistence.close()
