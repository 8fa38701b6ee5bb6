"""Conductors on every jobboard backend (memory persistence): the outcome table end to end,
stop and takeover, max_dispatches, and a poison job with its back-off."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator

from legato.conductor import BlockingConductor, NonBlockingConductor
from legato.jobboard.base import Job, JobBoard
from legato.persistence.base import Persistence
from legato.states import AtomState, FlowState
from legato.testing import conductor as tc
from legato.testing.conductor import recorded
from legato.testing.jobboard_acceptance import until

X = "\N{MULTIPLICATION SIGN}"


def state_of(persistence: Persistence, job: Job) -> FlowState | None:
    (flow_detail,) = persistence.get_logbook(job.book_uuid).flows.values()
    return flow_detail.state


def test_jobs_consumed_and_max_dispatches(board: JobBoard, persistence: Persistence) -> None:
    jobs = [tc.post_job(board, persistence, tc.steps_flow, kwargs={"steps": 2})
            for _ in range(7)]
    failing = tc.post_job(board, persistence, tc.failing_flow)
    conductor = NonBlockingConductor("n", board, persistence, wait_timeout=0.05,
                                     max_simultaneous_jobs=3)
    events = recorded(conductor)
    conductor.run(max_dispatches=5)
    assert len(events.of("job_consumed")) == 5 and board.job_count == 3
    blocking = BlockingConductor("b", board, persistence, wait_timeout=0.05)
    blocking.run(max_dispatches=3)
    assert board.job_count == 0
    assert all(state_of(persistence, job) is FlowState.SUCCESS for job in jobs)
    assert state_of(persistence, failing) is FlowState.REVERTED
    assert list(board.iter_trash()) == []


def test_stop_then_another_conductor_takes_over(make_board: Callable[[], JobBoard],
                                                persistence: Persistence) -> None:
    board, other = make_board(), make_board()
    gate = f"takeover-{uuid.uuid4().hex}"
    job = tc.post_job(board, persistence, tc.gated_flow,
                      kwargs={"steps": 3, "gate_name": gate, "at": 1})
    first = BlockingConductor("first", board, persistence, wait_timeout=0.05)
    first_events = recorded(first)
    threading.Thread(target=first.run, daemon=True).start()
    assert tc.gate(f"{gate}:reached").wait(30)
    first.stop()
    tc.gate(gate).set()
    assert first.wait(30)
    assert first_events.names(job)[-1] == "job_abandoned"
    assert state_of(persistence, job) is FlowState.SUSPENDED
    second = NonBlockingConductor("second", other, persistence, wait_timeout=0.05)
    second_events = recorded(second)
    second.run(max_dispatches=1)  # abandoned with no delay: claimable at once
    assert second_events.names(job)[-1] == "job_consumed"
    assert state_of(persistence, job) is FlowState.SUCCESS
    assert board.job_count == 0


def test_poison_job_backs_off_then_is_trashed(board: JobBoard, persistence: Persistence) -> None:
    base = 0.2
    poison = tc.post_job(board, persistence, tc.poison_flow)
    good = [tc.post_job(board, persistence, tc.steps_flow) for _ in range(3)]
    conductor = NonBlockingConductor("n", board, persistence, wait_timeout=0.05,
                                     max_simultaneous_jobs=2, max_attempts=3,
                                     backoff_base=base, backoff_max=10.0)
    events = recorded(conductor)
    conductor.run(max_dispatches=6)  # 3 claims of the poison job + the 3 good jobs
    assert board.job_count == 0
    assert len(events.of("job_consumed")) == 3
    assert all(state_of(persistence, job) is FlowState.SUCCESS for job in good)
    (trashed,) = board.iter_trash()
    assert trashed.uuid == poison.uuid
    where = conductor.conductor.name.partition(":")[0]
    reason = f"too many attempts: ExecutionFailure on {where} (3{X})"
    assert trashed.reason == reason and trashed.attempts == 3
    (event,) = events.of("job_trashed")
    assert event["reason"] == reason
    claims = [d["at"] for d in events.of("compilation_start") if d["job"].uuid == poison.uuid]
    abandons = [d for d in events.of("job_abandoned") if d["job"].uuid == poison.uuid]
    assert len(claims) == 3 and len(abandons) == 2
    for n, abandoned in enumerate(abandons, start=1):
        delay = base * 2 ** (n - 1)
        # The next claim waits for the back-off (a correctness check of the delay; the
        # tolerance covers clock granularity between this process and the board's server).
        assert claims[n] - abandoned["at"] >= delay - 0.05


def test_entity_listed_while_running_and_stopped_conductor_runs_again(
        board: JobBoard, persistence: Persistence) -> None:
    conductor = NonBlockingConductor("n", board, persistence, wait_timeout=0.05)
    name = conductor.conductor.name
    thread = threading.Thread(target=conductor.run, daemon=True)
    thread.start()
    ticker = threading.Event()
    deadline = time.monotonic() + 20
    while name not in {e.name for e in board.iter_entities("conductor")}:
        assert time.monotonic() < deadline, "the conductor never registered"
        ticker.wait(0.02)
    conductor.stop()
    assert conductor.wait(30) is True
    assert not conductor.dispatching
    assert name not in {e.name for e in board.iter_entities("conductor")}
    job = tc.post_job(board, persistence, tc.steps_flow)
    conductor.run(max_dispatches=1)
    assert state_of(persistence, job) is FlowState.SUCCESS and board.job_count == 0


def test_cancel_while_waiting_and_while_running(make_board: Callable[[], JobBoard],
                                                persistence: Persistence) -> None:
    board, ops = make_board(), make_board()
    waiting = tc.post_job(board, persistence, tc.steps_flow)
    assert ops.cancel(waiting, "ops@desk", reason="not needed") is True
    gate = f"cancel-{uuid.uuid4().hex}"
    job = tc.post_job(board, persistence, tc.gated_flow,
                      kwargs={"steps": 3, "gate_name": gate, "at": 1})
    conductor = BlockingConductor("c", board, persistence, wait_timeout=0.05, claim_ttl=1.5)
    events = recorded(conductor)
    runner = threading.Thread(target=conductor.run, daemon=True)
    runner.start()
    try:
        assert tc.gate(f"{gate}:reached").wait(30)  # gated-1 runs, waiting on the gate
        with _warned(f"job {job.uuid} ", "suspending it") as learned:
            assert ops.cancel(ops.get(job.uuid), "ops@desk", reason="wrong input") is False
            # The conductor learns at its next renewal (the step is still blocked) and says
            # so; not before it could have, the gate opens and the flow reaches its next
            # atom boundary.
            assert learned.wait(30)

        def trashed() -> list[Job]:
            return [j for j in ops.iter_trash() if j.uuid == job.uuid]

        tc.gate(gate).set()
        assert until(lambda: bool(trashed()), 30)
    finally:
        tc.gate(gate).set()
        conductor.stop()
        assert conductor.wait(30)
    (gone,) = trashed()
    assert gone.reason is not None and gone.reason.startswith("cancelled by ops@desk at ")
    assert gone.reason.endswith(": wrong input")
    (event,) = [e for e in events.of("job_trashed") if e["job"].uuid == job.uuid]
    assert event["reason"] == gone.reason
    assert state_of(persistence, job) is FlowState.SUSPENDED
    (flow_detail,) = persistence.get_logbook(job.book_uuid).flows.values()
    states = {a.name: a.state for a in flow_detail.atoms.values()}
    assert states["gated-0"] is AtomState.SUCCESS and states["gated-1"] is AtomState.SUCCESS
    assert states.get("gated-2", AtomState.PENDING) is AtomState.PENDING  # never ran
    (first,) = [j for j in ops.iter_trash() if j.uuid == waiting.uuid]
    assert first.reason is not None and first.reason.endswith(": not needed")
    assert board.job_count == 0


@contextlib.contextmanager
def _warned(*parts: str) -> Iterator[threading.Event]:
    """An event set when a conductor logs a warning holding every one of ``parts`` (what an
    operator reads when a renewal brings back a job's cancel mark)."""
    seen = threading.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if record.levelno >= logging.WARNING and all(p in message for p in parts):
                seen.set()

    watch, log = Watch(), logging.getLogger("legato.conductor")
    log.addHandler(watch)
    try:
        yield seen
    finally:
        log.removeHandler(watch)
