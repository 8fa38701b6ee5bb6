"""The seed's conductor scenarios on every real jobboard, for each conductor kind.

Each scenario runs on SQLite, PostgreSQL, Redis and ZooKeeper boards with a ``blocking``
conductor and ``nonblocking`` ones with 9 and with 1 worker (the memory board is covered by
tests/unit/test_conductor.py). Persistence is in memory, shared by the poster and the conductors.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from legato import jobboard as jb
from legato.conductor import BlockingConductor, ExecutorConductor, NonBlockingConductor
from legato.jobboard.base import Job, JobBoard
from legato.persistence.base import Persistence
from legato.persistence.models import FlowDetail
from legato.states import AtomState, FlowState
from legato.testing import conductor as tc
from legato.testing.conductor import recorded

KINDS = {"blocking": None, "nonblocking-9": 9, "nonblocking-1": 1}
STAGES = [f"{stage}_{edge}" for stage in ("compilation", "preparation", "validation", "running")
          for edge in ("start", "end")]
WAIT = 20.0  # upper bound for anything a scenario waits on; never reached when all is well

Make = Callable[[], ExecutorConductor]


@pytest.fixture
def board(board_url: str, persistence: Persistence) -> Iterator[JobBoard]:
    with jb.connect(board_url, persistence=persistence) as board:
        yield board


@pytest.fixture(params=sorted(KINDS))
def make(request: pytest.FixtureRequest, board: JobBoard,
         persistence: Persistence) -> Iterator[Make]:
    """Builds conductors of one kind on ``board``; stops them all at the end of the test."""
    made: list[ExecutorConductor] = []
    workers = KINDS[request.param]

    def make() -> ExecutorConductor:
        name = f"{request.param}-{len(made)}"
        conductor: ExecutorConductor
        if workers is None:
            conductor = BlockingConductor(name, board, persistence, wait_timeout=0.05)
        else:
            conductor = NonBlockingConductor(name, board, persistence, wait_timeout=0.05,
                                             max_simultaneous_jobs=workers)
        made.append(conductor)
        return conductor

    yield make
    for conductor in made:
        conductor.stop()
        assert conductor.wait(WAIT)


def flow_of(persistence: Persistence, job: Job) -> FlowDetail:
    (flow_detail,) = persistence.get_logbook(job.book_uuid).flows.values()
    return flow_detail


def run_in_thread(conductor: ExecutorConductor) -> threading.Thread:
    """Starts ``conductor.run()`` and returns once it is dispatching."""
    thread = threading.Thread(target=conductor.run, daemon=True)
    thread.start()
    ticker = threading.Event()
    for _ in range(int(WAIT / 0.01)):
        if conductor.dispatching:
            return thread
        ticker.wait(0.01)
    raise AssertionError("the conductor never started dispatching")


def stop_and_wait(conductor: ExecutorConductor, thread: threading.Thread) -> None:
    conductor.stop()
    assert conductor.wait(WAIT) is True
    thread.join(WAIT)
    assert not thread.is_alive() and not conductor.dispatching


def dispatch_one(make: Make, board: JobBoard, persistence: Persistence, factory: Any,
                 **post: Any) -> tuple[tc.EventRecorder, Job, FlowDetail]:
    """Posts one job, lets a new conductor dispatch it, and returns what happened."""
    conductor = make()
    events = recorded(conductor)
    job = tc.post_job(board, persistence, factory, **post)
    conductor.run(max_dispatches=1)
    assert board.job_count == 0, "the job was not consumed"
    return events, job, flow_of(persistence, job)


def test_run_empty_then_stop(make: Make) -> None:
    conductor = make()
    assert not conductor.dispatching
    stop_and_wait(conductor, run_in_thread(conductor))


def test_job_consumed_with_every_stage_event(make: Make, board: JobBoard,
                                             persistence: Persistence) -> None:
    events, job, flow_detail = dispatch_one(make, board, persistence, tc.steps_flow,
                                            kwargs={"steps": 2})
    assert events.names(job) == [*STAGES, "job_consumed"]
    assert flow_detail.state is FlowState.SUCCESS
    atoms = [flow_detail.find_by_name(f"step-{i}") for i in range(2)]
    assert [atom.results if atom else None for atom in atoms] == [0, 1]


def test_max_dispatches_leaves_the_rest(make: Make, board: JobBoard,
                                        persistence: Persistence) -> None:
    jobs = [tc.post_job(board, persistence, tc.steps_flow) for _ in range(7)]
    conductor = make()
    events = recorded(conductor)
    conductor.run(max_dispatches=5)
    consumed = {d["job"].uuid for d in events.of("job_consumed")}
    left = {job.uuid for job in board.iterjobs()}
    assert len(consumed) == 5 and len(left) == 2 and board.job_count == 2
    assert consumed | left == {job.uuid for job in jobs}
    assert all(flow_of(persistence, job).state is None for job in jobs if job.uuid in left)


def test_failing_task_reverts_and_consumes(make: Make, board: JobBoard,
                                           persistence: Persistence) -> None:
    events, job, flow_detail = dispatch_one(make, board, persistence, tc.failing_flow)
    assert events.names(job)[-1] == "job_consumed"
    assert flow_detail.state is FlowState.REVERTED


def test_missing_arguments_consumed_without_running(make: Make, board: JobBoard,
                                                    persistence: Persistence) -> None:
    events, job, flow_detail = dispatch_one(make, board, persistence, tc.add_flow,
                                            store={"x": 1})
    names = events.names(job)
    assert names[-1] == "job_consumed" and "running_start" not in names
    assert "missing" in events.of("job_consumed")[0]["reason"]
    assert flow_detail.state is not FlowState.SUCCESS
    atom = flow_detail.find_by_name("add")
    assert atom is None or (atom.results is None and atom.state is not AtomState.SUCCESS)


@pytest.mark.parametrize(("job_store", "meta_store", "total"), [
    pytest.param({"x": 1, "y": 2}, None, 3, id="job"),
    pytest.param(None, {"x": 5, "y": 6}, 11, id="meta"),
    pytest.param({"y": 10}, {"x": 1, "y": 2}, 11, id="merged-job-wins"),
])
def test_store_from_job_and_flow_meta(make: Make, board: JobBoard, persistence: Persistence,
                                      job_store: dict[str, int] | None,
                                      meta_store: dict[str, int] | None, total: int) -> None:
    _, _, flow_detail = dispatch_one(make, board, persistence, tc.add_flow,
                                     store=job_store, meta_store=meta_store)
    assert flow_detail.state is FlowState.SUCCESS
    atom = flow_detail.find_by_name("add")
    assert atom is not None and atom.results == total


def test_stop_suspends_and_another_conductor_finishes(make: Make, board: JobBoard,
                                                      persistence: Persistence) -> None:
    # A nonblocking conductor with free slots may be inside claim_next when stop() is called
    # (slow on ZooKeeper) and get back the very job it is abandoning: it must release it.
    gate = f"seed-stop-{uuid.uuid4().hex}"
    job = tc.post_job(board, persistence, tc.gated_flow,
                      kwargs={"steps": 3, "gate_name": gate, "at": 1})
    first = make()
    events = recorded(first)
    thread = threading.Thread(target=first.run, daemon=True)
    thread.start()
    assert tc.gate(f"{gate}:reached").wait(WAIT)
    first.stop()
    tc.gate(gate).set()  # the running task returns; the engine then suspends
    assert first.wait(WAIT) is True
    assert events.names(job)[-1] == "job_abandoned"
    assert "job_consumed" not in events.names(job)
    suspended = flow_of(persistence, job)
    assert suspended.state is FlowState.SUSPENDED
    last = suspended.find_by_name("gated-2")
    assert last is None or last.results is None
    assert board.job_count == 1
    second = make()
    second_events = recorded(second)
    second.run(max_dispatches=1)  # abandoned with no delay: claimable at once
    assert second_events.names(job)[-1] == "job_consumed"
    assert flow_of(persistence, job).state is FlowState.SUCCESS
    assert board.job_count == 0


def test_stopped_conductor_runs_again(make: Make, board: JobBoard,
                                      persistence: Persistence) -> None:
    conductor = make()
    stop_and_wait(conductor, run_in_thread(conductor))
    job = tc.post_job(board, persistence, tc.steps_flow)
    conductor.run(max_dispatches=1)
    assert board.job_count == 0 and flow_of(persistence, job).state is FlowState.SUCCESS
