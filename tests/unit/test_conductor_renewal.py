"""Leases a conductor renews are keyed by (job, fence): a run that ends never drops the lease of
a later claim of the same job, and a conductor never starts a second run of a job it is still
running (the memory board, its clock moved by hand)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

from legato import errors
from legato import jobboard as jb
from legato import persistence as lp
from legato.conductor import NonBlockingConductor
from legato.conductor._renewal import Renewer
from legato.flow import Flow, LinearFlow, Task, flow_factory
from legato.jobboard.base import Job, JobBoard
from legato.notifier import ANY
from legato.states import FlowState
from legato.testing import conductor as tc
from legato.testing.clock import FakeClock

OWNER = "c@host:1"

#: Side-effect logs of ``logged_gated_flow``: label -> [(what, step, run)].
LOGS: dict[str, list[tuple[str, int, str]]] = {}


class _LoggedGated(Task):
    def __init__(self, index: int, label: str, at: int) -> None:
        super().__init__(f"step-{index}", provides=f"step-{index}")
        self.index, self.label, self.at = index, label, at

    def execute(self) -> str:
        run = uuid.uuid4().hex[:8]
        log = LOGS.setdefault(self.label, [])
        log.append(("start", self.index, run))
        if self.index == self.at:
            tc.gate(f"{self.label}:reached").set()
            if not tc.gate(self.label).wait(60):
                raise TimeoutError(f"gate {self.label!r} never opened")
        log.append(("end", self.index, run))
        return run


@flow_factory
def logged_gated_flow(steps: int, label: str, at: int) -> Flow:
    """``steps`` tasks logging their start and end in ``LOGS[label]``; task ``at`` sets gate
    ``<label>:reached`` and waits for gate ``label``."""
    return LinearFlow("logged-gated").add(*(_LoggedGated(i, label, at) for i in range(steps)))


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    ticker = threading.Event()
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        ticker.wait(0.01)


def fence_of(board: JobBoard, job: Job) -> int:
    return board.get(job.uuid).record.fence


def test_a_finished_run_keeps_the_lease_of_a_newer_claim() -> None:
    clock = FakeClock()
    with jb.connect("memory://", clock=clock) as board:
        job = board.post("work")
        renewer = Renewer(board, OWNER, period=1.0)
        overdue = time.monotonic() - 10  # each lease below is due for renewal at once
        first = board.claim_next(OWNER, ttl=10)
        assert first is not None and first.fence == 1
        old = renewer.add(first, 10, claimed_at=overdue)
        clock.advance(11)  # the board cannot be reached for longer than the lease
        second = board.claim_next(OWNER, ttl=10)  # the same conductor claims its job again
        assert second is not None and second.fence == 2
        new = renewer.add(second, 10, claimed_at=overdue)
        renewer.remove(old)  # the first run ends
        renewer.remove(old)  # twice: still only that lease
        clock.advance(5)
        renewer.renew_due()
        assert not new.lost.is_set()
        clock.advance(7)  # past the second claim's first lease: it was renewed
        assert board.find_owner(job) == OWNER
        assert fence_of(board, job) == 2
        assert renewer.held(job.uuid) == [new]
        renewer.remove(new)
        assert renewer.held(job.uuid) == []


def test_renewing_a_stale_claim_is_refused_naming_both_fences() -> None:
    clock = FakeClock()
    with jb.connect("memory://", clock=clock) as board:
        job = board.post("work")
        renewer = Renewer(board, OWNER, period=1.0)
        first = board.claim_next(OWNER, ttl=10)
        assert first is not None
        old = renewer.add(first, 10, claimed_at=time.monotonic() - 10)
        clock.advance(11)
        second = board.claim_next(OWNER, ttl=10)
        assert second is not None
        renewer.add(second, 10, claimed_at=time.monotonic())
        try:
            board.renew(first, OWNER)
        except errors.NotOwner as exc:
            assert (exc.fence, exc.actual_fence) == (1, 2)
            assert "fence 1" in str(exc) and "fence 2" in str(exc)
        else:
            raise AssertionError("a stale fence was renewed")
        renewer.renew_due()  # only the old lease is due: refused, so lost
        assert old.lost.is_set()
        assert [lease.lost.is_set() for lease in renewer.held(job.uuid)] == [True, False]


def test_a_job_still_running_here_is_never_started_twice() -> None:
    clock = FakeClock()
    label = f"twice-{uuid.uuid4().hex}"
    persistence = lp.connect("memory://")
    with jb.connect("memory://", persistence=persistence, clock=clock) as board:
        job = tc.post_job(board, persistence, logged_gated_flow,
                          kwargs={"steps": 3, "label": label, "at": 1})
        conductor = NonBlockingConductor("c", board, persistence, claim_ttl=60,
                                         wait_timeout=0.01)
        events = tc.EventRecorder()
        conductor.notifier.register(ANY, events)
        runner = threading.Thread(target=conductor.run, daemon=True)
        runner.start()
        try:
            assert tc.gate(f"{label}:reached").wait(20)
            assert fence_of(board, job) == 1
            clock.advance(61)  # the claim lapses on the board while step 1 runs
            # The conductor's claim loop gets the job back (fence 2): it must not start it.
            wait_until(lambda: fence_of(board, job) >= 2 and (
                events.names(job).count("compilation_start") >= 2
                or board.find_owner(job) is None))
            assert events.names(job).count("compilation_start") == 1
            tc.gate(label).set()  # the first run ends its step, then suspends
            assert events.wait_for("job_consumed", timeout=20)
        finally:
            tc.gate(label).set()
            conductor.stop()
            assert conductor.wait(20)
        names = events.names(job)
        assert names.count("job_abandoned") == 1 and names[-1] == "job_consumed"
        assert events.of("job_abandoned")[0]["reason"].startswith("claim lost")
        assert conductor.statistics["claims_lost"] == 1
        log = LOGS.pop(label)
        assert [step for what, step, _ in log if what == "start"] == [0, 1, 2]
        assert [step for what, step, _ in log if what == "end"] == [0, 1, 2]
        (flow_detail,) = persistence.get_logbook(job.book_uuid).flows.values()
        assert flow_detail.state is FlowState.SUCCESS
