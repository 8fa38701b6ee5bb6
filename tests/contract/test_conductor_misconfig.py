"""A misconfigured conductor never destroys jobs, on every jobboard backend: a job that cannot
run on *this* conductor is abandoned and counted (a streak of them pauses the conductor), a
correctly configured conductor then completes every job; the trash reason at ``max_attempts``
names every distinct reason collected; only details that are no valid job document are
trashed at once."""

from __future__ import annotations

import logging
import pathlib
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from legato.conductor import BlockingConductor, ExecutorConductor
from legato.conductor._job import Tally
from legato.jobboard.base import Job, JobBoard
from legato.persistence.base import Persistence
from legato.persistence.memory import MemoryPersistence
from legato.persistence.models import FlowDetail, LogBook
from legato.states import FlowState
from legato.testing import conductor as tc

X = "\N{MULTIPLICATION SIGN}"

HOST = socket.gethostname()
MODULE_TEXT = '''
import legato
from legato.flow.patterns import LinearFlow
from legato.testing.conductor import steps_flow


@legato.flow_factory
def make():
    return steps_flow(1)
'''


@pytest.fixture
def flows_module(tmp_path: pathlib.Path) -> str:
    """A module (not importable until its folder is on ``sys.path``) with a registered flow
    factory ``make``; its name is new to this process."""
    name = f"legato_misconfig_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(MODULE_TEXT)
    return name


def post_by_name(board: JobBoard, persistence: Persistence, factory: str) -> Job:
    """Post a job whose flow detail names ``factory``, without importing it."""
    book = LogBook("job")
    flow_detail = FlowDetail("job")
    flow_detail.meta["factory"] = {"name": factory, "args": [], "kwargs": {}}
    book.add(flow_detail)
    persistence.save_logbook(book)
    return board.post("job", book=persistence.get_logbook(book.uuid))


def state_of(persistence: Persistence, job: Job) -> FlowState | None:
    (flow_detail,) = persistence.get_logbook(job.book_uuid).flows.values()
    return flow_detail.state


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    ticker = threading.Event()
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        ticker.wait(0.02)


#: Each misconfiguration: (conductor options, label expected in the tally).
MISCONFIGURATIONS: dict[str, tuple[dict[str, Any], str]] = {
    "factory refused": ({}, "factory refused"),
    "factory not importable": ({"allow": True}, "factory not found"),
    "wrong persistence": ({"persistence": "other", "allow": True, "path": True},
                          "logbook not found"),
    "unknown engine": ({"engine": "bogus", "allow": True, "path": True}, "unknown engine"),
}


@pytest.mark.parametrize("misconfiguration", list(MISCONFIGURATIONS))
def test_misconfigured_conductor_pauses_and_leaves_every_job_intact(
        board: JobBoard, persistence: Persistence, flows_module: str,
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, misconfiguration: str) -> None:
    settings, label = MISCONFIGURATIONS[misconfiguration]
    jobs = [post_by_name(board, persistence, f"{flows_module}:make") for _ in range(4)]
    if settings.get("path"):
        monkeypatch.syspath_prepend(str(tmp_path))
    bad = BlockingConductor(
        "bad", board, MemoryPersistence() if settings.get("persistence") else persistence,
        engine=settings.get("engine"), wait_timeout=0.05, backoff_base=0.01,
        backoff_max=0.01, pause_after=3, pause_for=600.0,
        allowed_factories=[flows_module] if settings.get("allow") else [])
    caplog.set_level(logging.ERROR, logger="legato.conductor")
    thread = threading.Thread(target=bad.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: bad.statistics["paused"] == 1, "the conductor to pause")
        stats = bad.statistics
        assert stats["dispatched"] == 3 and stats["abandoned"] == 3
        assert stats["trashed"] == 0 and stats["consumed"] == 0
    finally:
        bad.stop()
        assert bad.wait(30)
    paused = [r.getMessage() for r in caplog.records if "PAUSED" in r.getMessage()]
    assert len(paused) == 1 and label in paused[0] and "misconfigured" in paused[0]
    assert list(board.iter_trash()) == []
    assert board.job_count == 4
    reasons = [board.get(job.uuid).reason or "" for job in jobs]
    tallies = [Tally.of(r).counts for r in reasons]
    assert sum(sum(t.values()) for t in tallies) == 3
    assert {key for t in tallies for key in t} == {(label, f"bad@{HOST}")}

    monkeypatch.syspath_prepend(str(tmp_path))
    good = BlockingConductor("good", board, persistence, wait_timeout=0.05,
                             allowed_factories=[flows_module])
    good.run(max_dispatches=4)
    assert good.statistics["consumed"] == 4
    assert board.job_count == 0 and list(board.iter_trash()) == []
    assert all(state_of(persistence, job) is FlowState.SUCCESS for job in jobs)


def test_trashed_at_max_attempts_with_every_reason_collected(
        make_board: Callable[[], JobBoard], persistence: Persistence) -> None:
    board, other = make_board(), make_board()
    job = tc.post_job(board, persistence, tc.steps_flow)
    options: dict[str, Any] = {"wait_timeout": 0.05, "backoff_base": 0.0, "backoff_max": 0.0,
                               "pause_after": 0, "max_attempts": 3}
    BlockingConductor("a", board, MemoryPersistence(), **options).run(max_dispatches=2)
    assert board.job_count == 1
    reason = board.get(job.uuid).reason
    assert reason is not None and reason.endswith(f"[so far: logbook not found on a@{HOST} (2{X})]")
    last = BlockingConductor("b", other, persistence, engine="bogus", **options)
    events = tc.EventRecorder()
    last.notifier.register("job_trashed", events)
    last.run(max_dispatches=1)
    expected = (f"too many attempts: logbook not found on a@{HOST} (2{X}), "
                f"unknown engine on b@{HOST} (1{X})")
    (trashed,) = board.iter_trash()
    assert trashed.uuid == job.uuid and trashed.reason == expected
    assert events.of("job_trashed")[0]["reason"] == expected


@pytest.mark.parametrize(("details", "reason"), [
    ({"store": [1, 2]}, "malformed details: store must be a JSON object"),
    ({"flow_uuid": 7}, "malformed details: flow_uuid must be a string"),
    (None, "malformed job: it names no logbook"),
])
def test_garbage_details_trashed_at_once(board: JobBoard, persistence: Persistence,
                                         details: dict[str, Any] | None, reason: str) -> None:
    if details is None:
        job = board.post("bookless")
    else:
        job = tc.post_job(board, persistence, tc.steps_flow, details=details)
    conductor: ExecutorConductor = BlockingConductor("c", board, persistence, wait_timeout=0.05)
    conductor.run(max_dispatches=1)
    (trashed,) = board.iter_trash()
    assert trashed.uuid == job.uuid and trashed.reason == reason
    assert trashed.attempts == 1
