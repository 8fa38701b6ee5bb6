"""A job's history (``Persistence.job_history``) after each way a claim can end, on every
jobboard backend: the right sequence of claims, owners, fences and outcomes."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

from legato.conductor import BlockingConductor, NonBlockingConductor
from legato.jobboard.base import Job, JobBoard
from legato.persistence.base import Persistence
from legato.persistence.models import Claim
from legato.testing import conductor as tc


def summary(history: list[Claim]) -> list[tuple[str, str | None, str | None]]:
    """(owner's conductor name, outcome, flow state) of each claim."""
    return [(c.owner.split("@")[0], c.outcome, c.flow_state) for c in history]


def check_claims(job: Job, history: list[Claim]) -> None:
    """What every recorded claim holds whatever its outcome."""
    fences = [c.fence for c in history]
    assert fences == sorted(set(fences)) and fences[0] >= 1
    for claim in history:
        assert claim.job_uuid == job.uuid and claim.job_name == job.name
        assert claim.book_uuid == job.book_uuid
        assert claim.ended_at is not None and claim.ended_at >= claim.claimed_at


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    ticker = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        ticker.wait(0.02)


def test_history_after_success(board: JobBoard, persistence: Persistence) -> None:
    job = tc.post_job(board, persistence, tc.steps_flow, kwargs={"steps": 3})
    BlockingConductor("c", board, persistence, wait_timeout=0.05).run(max_dispatches=1)
    history = persistence.job_history(job.uuid)
    check_claims(job, history)
    assert summary(history) == [("c", "consumed", "SUCCESS")]
    (claim,) = history
    assert claim.reason is None and claim.atoms == ["step-0", "step-1", "step-2"]
    (flow_uuid,) = persistence.get_logbook(job.book_uuid).flows
    assert claim.flow_uuid == flow_uuid


def test_history_after_failure_reverted(board: JobBoard, persistence: Persistence) -> None:
    job = tc.post_job(board, persistence, tc.failing_flow)
    NonBlockingConductor("n", board, persistence, wait_timeout=0.05).run(max_dispatches=1)
    history = persistence.job_history(job.uuid)
    check_claims(job, history)
    assert summary(history) == [("n", "consumed", "REVERTED")]
    assert history[0].reason is not None and "this task always fails" in history[0].reason
    assert history[0].atoms  # the failed task (and whatever it reverted)


def test_history_after_stop_and_takeover(make_board: Callable[[], JobBoard],
                                         persistence: Persistence) -> None:
    board, other = make_board(), make_board()
    gate = f"history-stop-{uuid.uuid4().hex}"
    job = tc.post_job(board, persistence, tc.gated_flow,
                      kwargs={"steps": 3, "gate_name": gate, "at": 1})
    first = BlockingConductor("first", board, persistence, wait_timeout=0.05)
    threading.Thread(target=first.run, daemon=True).start()
    assert tc.gate(f"{gate}:reached").wait(30)
    first.stop()
    tc.gate(gate).set()
    assert first.wait(30)
    NonBlockingConductor("second", other, persistence, wait_timeout=0.05).run(max_dispatches=1)
    history = persistence.job_history(job.uuid)
    check_claims(job, history)
    assert summary(history) == [("first", "stopped", "SUSPENDED"),
                                ("second", "consumed", "SUCCESS")]
    assert history[0].reason == "conductor stopping"
    assert history[0].atoms == ["gated-0", "gated-1"]
    assert history[1].atoms == ["gated-2"]


def test_history_after_a_lost_claim(make_board: Callable[[], JobBoard],
                                    persistence: Persistence) -> None:
    board, thief = make_board(), make_board()
    gate = f"history-lost-{uuid.uuid4().hex}"
    job = tc.post_job(board, persistence, tc.gated_flow,
                      kwargs={"steps": 3, "gate_name": gate, "at": 1})
    first = BlockingConductor("first", board, persistence, wait_timeout=0.05, claim_ttl=1.5)
    runner = threading.Thread(target=first.run, kwargs={"max_dispatches": 1}, daemon=True)
    runner.start()
    try:
        assert tc.gate(f"{gate}:reached").wait(30)
        # Another party ends the claim behind the conductor's back: its renewal fails.
        thief.release(thief.get(job.uuid), first.conductor.name)
        wait_until(lambda: first.statistics["claims_lost"] >= 1)
    finally:
        tc.gate(gate).set()
    assert first.wait(30)
    runner.join(30)
    BlockingConductor("second", thief, persistence, wait_timeout=0.05).run(max_dispatches=1)
    history = persistence.job_history(job.uuid)
    check_claims(job, history)
    assert summary(history) == [("first", "lost claim", "SUSPENDED"),
                                ("second", "consumed", "SUCCESS")]
    assert history[0].reason is not None and history[0].reason.startswith("claim lost")


def test_history_says_lost_claim_when_the_finishing_call_finds_another_owner(
        make_board: Callable[[], JobBoard], persistence: Persistence) -> None:
    """A conductor stopping abandons its job; when the board refuses that abandon (the claim
    went to another owner first), the claim ended lost, not stopped, and its history says
    so with the board's refusal as the reason, like the event."""
    board, thief = make_board(), make_board()
    gate = f"history-refused-{uuid.uuid4().hex}"
    job = tc.post_job(board, persistence, tc.gated_flow,
                      kwargs={"steps": 3, "gate_name": gate, "at": 1})
    first = BlockingConductor("first", board, persistence, wait_timeout=0.05, claim_ttl=60)
    events = tc.recorded(first)
    runner = threading.Thread(target=first.run, kwargs={"max_dispatches": 1}, daemon=True)
    runner.start()
    try:
        assert tc.gate(f"{gate}:reached").wait(30)
        thief.release(thief.get(job.uuid), first.conductor.name)
        taken = thief.claim_next("thief")
        assert taken == job and taken is not None
        first.stop()
    finally:
        tc.gate(gate).set()
    assert first.wait(30)
    runner.join(30)
    [ended] = events.of("job_abandoned")
    assert ended["reason"].startswith("claim lost")
    thief.release(taken, "thief")
    BlockingConductor("second", thief, persistence, wait_timeout=0.05).run(max_dispatches=1)
    history = persistence.job_history(job.uuid)
    check_claims(job, history)
    assert summary(history) == [("first", "lost claim", "SUSPENDED"),
                                ("second", "consumed", "SUCCESS")]
    assert history[0].reason == ended["reason"]


def test_history_of_a_poison_job_trashed_after_max_attempts(
        board: JobBoard, persistence: Persistence) -> None:
    poison = tc.post_job(board, persistence, tc.poison_flow)
    conductor = NonBlockingConductor("n", board, persistence, wait_timeout=0.05,
                                     max_attempts=3, backoff_base=0.05, backoff_max=0.1)
    conductor.run(max_dispatches=3)
    history = persistence.job_history(poison.uuid)
    check_claims(poison, history)
    assert [c.outcome for c in history] == ["abandoned", "abandoned", "trashed"]
    assert {c.owner for c in history} == {conductor.conductor.name}
    first, second, last = (c.reason or "" for c in history)
    # Each abandon keeps the job's reasons so far; the trash names them all.
    assert first.startswith("ExecutionFailure: this flow can never run here")
    assert second.startswith("ExecutionFailure: this flow can never run here")
    assert last.startswith("too many attempts: ExecutionFailure on ") and "(3\u00d7)" in last


def test_a_validation_failure_is_a_failed_flow(board: JobBoard,
                                              persistence: Persistence) -> None:
    job = tc.post_job(board, persistence, tc.add_flow)  # x and y never given
    BlockingConductor("c", board, persistence, wait_timeout=0.05).run(max_dispatches=1)
    (claim,) = persistence.job_history(job.uuid)
    assert (claim.outcome, claim.flow_state) == ("consumed", "FAILURE")
    assert claim.reason is not None and claim.reason.startswith("validation failed")
    (failed,) = persistence.list_flows(state="FAILURE")
    assert failed.job_uuid == job.uuid and failed.book_uuid == job.book_uuid
    assert failed.error is not None and failed.error.startswith("MissingDependencies")
    assert failed.attempts == 1
