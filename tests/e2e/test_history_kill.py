"""A job's history after its conductor process is SIGKILLed mid-flow and another conductor takes
it over: the dead conductor's claim is ended by the takeover as a lost claim, the new one is
consumed, with increasing fences."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from legato import jobboard as jb
from legato import persistence as lp
from legato.conductor import BlockingConductor
from legato.testing import conductor as tc

TTL = 2.0


@pytest.fixture(params=["sqlite", "postgres", "redis", "zookeeper"])
def board_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'board.db'}"
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


def wait_for_line(path: Path, text: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    ticker = threading.Event()
    while not (path.exists() and text in path.read_text()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} never appeared in {path}")
        ticker.wait(0.05)


def test_history_after_sigkill_and_takeover(board_url: str, tmp_path: Path) -> None:
    persistence_url = f"sqlite:///{tmp_path / 'flows.db'}"
    log = tmp_path / "side-effects.log"
    label = f"kill-{uuid.uuid4().hex[:8]}"
    persistence = lp.connect(persistence_url)
    persistence.upgrade()
    with jb.connect(board_url, persistence=persistence) as board:
        job = tc.post_job(board, persistence, tc.side_effect_flow, name="killed",
                          kwargs={"steps": 3, "label": label, "log_path": str(log),
                                  "pause": 0.5})
        proc = subprocess.Popen([sys.executable, "-m", "legato.testing.conductor", board_url,
                                 persistence_url, "--ttl", str(TTL), "--name", "doomed"],
                                stdout=subprocess.DEVNULL)
        try:
            wait_for_line(log, f"start {label} 1 ")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        survivor = BlockingConductor("survivor", board, persistence, wait_timeout=0.1,
                                     claim_ttl=TTL, allowed_factories=["legato.testing"])
        survivor.run(max_dispatches=1)  # claims the job once the dead claim lapses
        assert board.job_count == 0
    history = persistence.job_history(job.uuid)
    assert [(c.owner.split("@")[0], c.outcome) for c in history] == [
        ("doomed", "lost claim"), ("survivor", "consumed")]
    dead, done = history
    assert dead.fence < done.fence
    assert dead.reason is not None and "without an outcome" in dead.reason
    assert dead.ended_at == done.claimed_at and dead.flow_uuid == done.flow_uuid
    assert (done.flow_state, done.atoms) == ("SUCCESS", ["step-1", "step-2"])
    persistence.close()
