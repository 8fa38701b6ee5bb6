"""Conductors on the in-memory board and persistence: events, outcomes, stop and restart."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from legato import errors
from legato import jobboard as jb
from legato import persistence as lp
from legato.conductor import (
    BlockingConductor,
    ConductorMetrics,
    ExecutorConductor,
    NonBlockingConductor,
    fetch,
)
from legato.conductor._ahead import ClaimAhead
from legato.conductor._job import Action, Outcome
from legato.conductor._renewal import Lease
from legato.jobboard.base import Capabilities, Job, JobBoard, JobRecord, Pending
from legato.jobboard.memory import MemoryJobBoard
from legato.notifier import ANY
from legato.persistence.base import Persistence
from legato.persistence.models import FlowDetail, LogBook
from legato.states import FlowState, JobState
from legato.testing import conductor as tc
from legato.testing.clock import FakeClock
from legato.testing.conductor import recorded, wait_until

X = "\N{MULTIPLICATION SIGN}"

STAGES = ["compilation_start", "compilation_end", "preparation_start", "preparation_end",
          "validation_start", "validation_end", "running_start", "running_end"]

KINDS: dict[str, Callable[..., ExecutorConductor]] = {
    "blocking": BlockingConductor,
    "nonblocking-9": lambda *a, **k: NonBlockingConductor(*a, **k),
    "nonblocking-1": lambda *a, **k: NonBlockingConductor(*a, max_simultaneous_jobs=1, **k),
}

Make = Callable[..., ExecutorConductor]


@pytest.fixture
def persistence() -> Persistence:
    return lp.connect("memory://")


@pytest.fixture
def board_url() -> str:
    return f"memory://conductor-{uuid.uuid4().hex}"


@pytest.fixture
def board(board_url: str, persistence: Persistence) -> Iterator[JobBoard]:
    with jb.connect(board_url, persistence=persistence) as board:
        yield board


@pytest.fixture(params=sorted(KINDS))
def make(request: pytest.FixtureRequest, board: JobBoard,
         persistence: Persistence) -> Iterator[Make]:
    made: list[ExecutorConductor] = []

    def make(*, on: JobBoard | None = None, **kwargs: Any) -> ExecutorConductor:
        kwargs.setdefault("wait_timeout", 0.05)
        conductor = KINDS[request.param](f"c{len(made)}", on or board, persistence, **kwargs)
        made.append(conductor)
        return conductor

    yield make
    for conductor in made:
        conductor.stop()
        assert conductor.wait(30)


def started(conductor: ExecutorConductor, **kwargs: Any) -> threading.Thread:
    thread = threading.Thread(target=conductor.run, kwargs=kwargs, daemon=True)
    thread.start()
    return thread


def flow_of(persistence: Persistence, job: Job) -> FlowDetail:
    book = persistence.get_logbook(job.book_uuid)
    (flow_detail,) = book.flows.values()
    return flow_detail


# The seed's eight scenarios run on every board, this one included, in
# tests/contract/test_conductor_seed.py.


def test_entity_registered_while_running(make: Make, board: JobBoard) -> None:
    conductor = make()
    started(conductor)
    name = conductor.conductor.name
    wait_until(lambda: name in {e.name for e in board.iter_entities("conductor")})
    conductor.stop()
    assert conductor.wait(10)
    assert name not in {e.name for e in board.iter_entities("conductor")}


def test_jobs_in_flight_counts_the_running_job(make: Make, board: JobBoard,
                                                persistence: Persistence) -> None:
    conductor = make()
    seen: list[int] = []
    conductor.notifier.register("running_start",
                                lambda event, details: seen.append(conductor.jobs_in_flight))
    tc.post_job(board, persistence, tc.steps_flow)
    conductor.run(max_dispatches=1)
    assert seen == [1]
    assert conductor.jobs_in_flight == 0 and conductor.statistics["consumed"] == 1


def test_listener_errors_are_not_fatal(make: Make, board: JobBoard,
                                       persistence: Persistence) -> None:
    conductor = make()

    def broken(event: str, details: dict[str, Any]) -> None:
        raise RuntimeError("listener bug")

    conductor.notifier.register(ANY, broken)
    tc.post_job(board, persistence, tc.steps_flow)
    conductor.run(max_dispatches=1)
    assert board.job_count == 0 and conductor.statistics["consumed"] == 1


def test_events_go_to_the_debug_log_only_when_it_is_on(
        make: Make, board: JobBoard, persistence: Persistence,
        caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger(f"test.conductor.{uuid.uuid4().hex}")
    conductor = make(log=log)
    seen: list[str] = []
    conductor.notifier.register(ANY, lambda event, details: seen.append(event))
    log.setLevel(logging.INFO)
    quiet = tc.post_job(board, persistence, tc.steps_flow)
    conductor.run(max_dispatches=1)
    log.setLevel(logging.DEBUG)  # turned on between two jobs: the next one is logged
    loud = tc.post_job(board, persistence, tc.steps_flow)
    with caplog.at_level(logging.DEBUG, logger=log.name):
        conductor.run(max_dispatches=1)
    lines = [r.getMessage() for r in caplog.records if r.name == log.name]
    assert not any(quiet.uuid in line for line in lines)
    assert [line.split()[1] for line in lines if loud.uuid in line] == [*STAGES, "job_consumed"]
    assert seen == [*STAGES, "job_consumed"] * 2  # listeners get every event either way


# -- trash --------------------------------------------------------------------------------


def post_raw(board: JobBoard, persistence: Persistence, *, flows: int = 1,
             details: dict[str, Any] | None = None, factory: str | None = None) -> Job:
    book = LogBook("raw")
    for i in range(flows):
        flow_detail = FlowDetail(f"flow-{i}")
        flow_detail.meta["factory"] = {"name": factory or "legato.testing.conductor:steps_flow",
                                       "args": [], "kwargs": {}}
        book.add(flow_detail)
    persistence.save_logbook(book)
    return board.post("raw", book=book, details=details)


@pytest.mark.parametrize(("setup", "reason"), [
    (lambda b, p: b.post("bookless"), "names no logbook"),
    (lambda b, p: post_raw(b, p, details={"store": [1, 2]}), "malformed details"),
])
def test_jobs_that_can_never_run_are_trashed(
        make: Make, board: JobBoard, persistence: Persistence,
        setup: Callable[[JobBoard, Persistence], Job], reason: str) -> None:
    conductor = make()
    events = recorded(conductor)
    job = setup(board, persistence)
    conductor.run(max_dispatches=1)
    assert events.names(job) == ["job_trashed"]
    assert reason in events.of("job_trashed")[0]["reason"]
    (trashed,) = board.iter_trash()
    assert trashed.uuid == job.uuid and reason in (trashed.reason or "")


@pytest.mark.parametrize(("setup", "reason"), [
    (lambda b, p: b.post("lost", book=LogBook("never-saved")), "logbook not found"),
    (lambda b, p: post_raw(b, p, details={"flow_uuid": "nope"}), "flow detail not found"),
    (lambda b, p: post_raw(b, p, flows=2), "2 flow details"),
    (lambda b, p: post_raw(b, p, factory="legato.testing.nosuchmodule:flow"), "factory"),
])
def test_jobs_that_cannot_run_here_are_abandoned_then_trashed_at_max_attempts(
        make: Make, board: JobBoard, persistence: Persistence,
        setup: Callable[[JobBoard, Persistence], Job], reason: str) -> None:
    conductor = make(max_attempts=2, backoff_base=0.0, backoff_max=0.0, pause_after=0)
    events = recorded(conductor)
    job = setup(board, persistence)
    conductor.run(max_dispatches=1)
    assert events.names(job) == ["job_abandoned"]
    assert reason in events.of("job_abandoned")[0]["reason"]
    assert list(board.iter_trash()) == [] and reason in (board.get(job.uuid).reason or "")
    conductor.run(max_dispatches=1)
    (trashed,) = board.iter_trash()
    assert trashed.uuid == job.uuid and trashed.reason is not None
    assert trashed.reason.startswith("too many attempts: ") and f"(2{X})" in trashed.reason


def test_several_flow_details_with_flow_uuid_runs_that_one(
        make: Make, board: JobBoard, persistence: Persistence) -> None:
    job = post_raw(board, persistence, flows=2)
    book = persistence.get_logbook(job.book_uuid)
    chosen = next(iter(book.flows.values()))
    board.trash(board.claim(job, "test"), "test")
    job = board.post("pick", book=book, details={"flow_uuid": chosen.uuid})
    conductor = make(allowed_factories=["legato.testing"])
    conductor.run(max_dispatches=1)
    states = {fd.uuid: fd.state for fd in persistence.get_logbook(book.uuid).flows.values()}
    assert states.pop(chosen.uuid) is FlowState.SUCCESS
    assert list(states.values()) == [None]


def test_disallowed_factory_abandoned_without_import(make: Make, board: JobBoard,
                                                     persistence: Persistence) -> None:
    module = f"legato_not_allowed_{uuid.uuid4().hex}"
    job = post_raw(board, persistence, factory=f"{module}:flow")
    conductor = make()
    events = recorded(conductor)
    conductor.run(max_dispatches=1)
    assert events.names(job) == ["job_abandoned"]
    assert "refused" in events.of("job_abandoned")[0]["reason"]
    assert module not in sys.modules


# -- attempts, back-off, lost claims --------------------------------------------------------


def test_poison_job_trashed_after_max_attempts(make: Make, board: JobBoard,
                                               persistence: Persistence) -> None:
    conductor = make(max_attempts=3, backoff_base=0.05, backoff_max=0.2)
    events = recorded(conductor)
    job = tc.post_job(board, persistence, tc.poison_flow)
    conductor.run(max_dispatches=3)
    assert [e for e in events.names(job) if e.startswith("job_")] == [
        "job_abandoned", "job_abandoned", "job_trashed"]
    (trashed,) = board.iter_trash()
    where = conductor.conductor.name.partition(":")[0]
    assert trashed.uuid == job.uuid
    assert trashed.reason == f"too many attempts: ExecutionFailure on {where} (3{X})"
    assert trashed.attempts == 3


def test_job_claimed_too_often_is_trashed_at_once(make: Make, board: JobBoard,
                                                  persistence: Persistence) -> None:
    job = tc.post_job(board, persistence, tc.steps_flow)
    for _ in range(3):  # conductors that died holding it
        board.abandon(board.claim(job, "dead-conductor"), "dead-conductor")
    conductor = make(max_attempts=2)
    events = recorded(conductor)
    conductor.run(max_dispatches=1)
    assert events.names(job) == ["job_trashed"]
    assert events.of("job_trashed")[0]["reason"] == "too many attempts"


def test_two_conductors_with_one_name_have_distinct_owners(board: JobBoard,
                                                           persistence: Persistence) -> None:
    first = BlockingConductor("same", board, persistence)
    second = BlockingConductor("same", board, persistence)
    assert first.conductor.name != second.conductor.name
    assert first.conductor.name.startswith("same@")


# -- construction and fetch -----------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -1, "soon", True])
def test_invalid_wait_timeout(board: JobBoard, value: Any) -> None:
    with pytest.raises(ValueError, match="wait_timeout"):
        BlockingConductor("c", board, wait_timeout=value)
    with pytest.raises(ValueError, match="wait_timeout"):
        NonBlockingConductor("c", board, wait_timeout=value)


def test_invalid_max_simultaneous_jobs_and_executor_factory(board: JobBoard) -> None:
    with pytest.raises(ValueError, match="max_simultaneous_jobs"):
        NonBlockingConductor("c", board, max_simultaneous_jobs="many")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="executor_factory"):
        NonBlockingConductor("c", board, executor_factory=42)  # type: ignore[arg-type]


def test_executor_factory_called_with_the_conductor(board: JobBoard,
                                                    persistence: Persistence) -> None:
    seen: list[Any] = []

    def factory(conductor: Any) -> futures.Executor:
        seen.append(conductor)
        return futures.ThreadPoolExecutor(2)

    conductor = NonBlockingConductor("c", board, persistence, executor_factory=factory,
                                     wait_timeout=0.05)
    tc.post_job(board, persistence, tc.steps_flow)
    conductor.run(max_dispatches=1)
    assert seen == [conductor] and board.job_count == 0


def test_executor_factory_without_arguments_is_called_with_none(
        board: JobBoard, persistence: Persistence) -> None:
    made: list[futures.Executor] = []

    def factory() -> futures.Executor:  # TaskFlow's form: no argument
        made.append(futures.ThreadPoolExecutor(2))
        return made[-1]

    conductor = NonBlockingConductor("c", board, persistence, executor_factory=factory,
                                     wait_timeout=0.05)
    tc.post_job(board, persistence, tc.steps_flow)
    conductor.run(max_dispatches=1)
    assert len(made) == 1 and board.job_count == 0


def test_executor_factory_of_neither_form_is_refused_at_construction(board: JobBoard) -> None:
    def two(conductor: Any, other: Any) -> futures.Executor:
        raise AssertionError("never called")

    def keyword_only(*, pool: Any) -> futures.Executor:
        raise AssertionError("never called")

    for factory in (two, keyword_only):
        with pytest.raises(TypeError, match="executor_factory") as info:
            NonBlockingConductor("c", board, executor_factory=factory)
        assert "\n" not in str(info.value)


def test_defaults() -> None:
    assert BlockingConductor.MAX_SIMULTANEOUS_JOBS == 1
    assert NonBlockingConductor.MAX_SIMULTANEOUS_JOBS == 9
    assert ExecutorConductor.WAIT_TIMEOUT == 0.5
    assert ExecutorConductor.REFRESH_PERIODICITY == 30
    no_consume = (errors.ExecutionFailure, errors.StorageFailure)
    assert no_consume == ExecutorConductor.NO_CONSUME_EXCEPTIONS
    assert "job_trashed" in ExecutorConductor.EVENTS_EMITTED
    assert len(ExecutorConductor.EVENTS_EMITTED) == 11


def test_fetch(board: JobBoard) -> None:
    blocking = fetch("blocking", "b", board)
    assert type(blocking) is BlockingConductor
    nonblocking = fetch("nonblocking", "n", board, max_simultaneous_jobs=3, wait_timeout=1)
    assert isinstance(nonblocking, NonBlockingConductor)
    assert nonblocking.max_simultaneous_jobs == 3
    with pytest.raises(errors.NotFound):
        fetch("teleporting", "t", board)


def test_lost_claim_suspends_and_does_not_consume(persistence: Persistence,
                                                  board_url: str) -> None:
    clock = FakeClock(time.time())
    gate = f"lost-{uuid.uuid4().hex}"
    with jb.connect(board_url, persistence=persistence, clock=clock) as board, \
            jb.connect(board_url, persistence=persistence, clock=clock) as other:
        job = tc.post_job(board, persistence, tc.gated_flow,
                          kwargs={"steps": 3, "gate_name": gate, "at": 1})
        conductor = BlockingConductor("c", board, persistence, claim_ttl=0.3,
                                      wait_timeout=0.05)
        events = recorded(conductor)
        started(conductor, max_dispatches=1)
        assert tc.gate(f"{gate}:reached").wait(20)
        stolen: list[Job] = []

        def steal() -> bool:  # the lease lapses (board time jumps) and another owner claims
            clock.advance(10)
            with contextlib.suppress(errors.UnclaimableJob):
                stolen.append(other.claim(job, "thief", ttl=3600))
            return bool(stolen)

        wait_until(steal)
        wait_until(lambda: conductor.statistics["board_errors"] >= 1)  # renewal refused
        tc.gate(gate).set()
        assert conductor.wait(20)
        assert events.names(job)[-1] == "job_abandoned"
        assert events.of("job_abandoned")[0]["reason"].startswith("claim lost")
        assert "job_consumed" not in events.names(job)
        assert other.find_owner(job) == "thief"
        flow_detail = flow_of(persistence, job)
        assert flow_detail.state is FlowState.SUSPENDED
        last = flow_detail.find_by_name("gated-2")
        assert last is None or last.results is None
        assert conductor.statistics["claims_lost"] == 1
        other.consume(stolen[0], "thief")


class FlakyBoard(MemoryJobBoard):
    """A memory board whose first ``failures`` claims fail as if the server were down."""

    failures = 3

    def _claim_next(self, who: str, ttl: float) -> JobRecord | None:
        if self.failures > 0:
            self.failures -= 1
            raise errors.BoardUnavailable("the board is down (injected)")
        return super()._claim_next(who, ttl)


def test_board_errors_never_end_run(persistence: Persistence) -> None:
    with FlakyBoard(persistence=persistence) as board:
        tc.post_job(board, persistence, tc.steps_flow)
        conductor = NonBlockingConductor("c", board, persistence, wait_timeout=0.05,
                                         board_backoff_base=0.01)
        conductor.run(max_dispatches=1)
        assert board.job_count == 0
        assert conductor.statistics["board_errors"] == 3
        assert conductor.statistics["consumed"] == 1


def test_metrics_on_a_given_registry(board: JobBoard, persistence: Persistence) -> None:
    registry = CollectorRegistry()
    metrics = ConductorMetrics(registry)
    conductor = BlockingConductor("c", board, persistence, wait_timeout=0.05, metrics=metrics)
    tc.post_job(board, persistence, tc.steps_flow)
    tc.post_job(board, persistence, tc.poison_flow)
    conductor.run(max_dispatches=2)
    sample = registry.get_sample_value
    assert sample("legato_conductor_jobs_total", {"outcome": "consumed"}) == 1
    assert sample("legato_conductor_jobs_total", {"outcome": "abandoned"}) == 1
    assert sample("legato_conductor_job_duration_seconds_count") == 2
    assert sample("legato_conductor_claims_total") == 2
    assert sample("legato_conductor_claim_seconds_count") >= 1
    assert sample("legato_conductor_jobs_in_flight") == 0
    assert sample("legato_conductor_atom_duration_seconds_count", {"state": "SUCCESS"}) >= 1
    assert sample("legato_conductor_atom_duration_seconds_count", {"state": "FAILURE"}) == 1


def test_board_gauges_read_the_counts_at_most_once_per_refresh(board: JobBoard) -> None:
    registry = CollectorRegistry()
    gauges = ConductorMetrics(registry).watch_board(board, refresh=3600)

    def jobs(state: str) -> float | None:
        return registry.get_sample_value("legato_conductor_board_jobs", {"state": state})

    assert jobs("waiting") == 0
    board.post("one")
    assert jobs("waiting") == 0  # the counts read a moment ago
    gauges.refresh = 0
    assert (jobs("waiting"), jobs("delayed")) == (1, 0)
    assert registry.get_sample_value("legato_conductor_board_up") == 1
    board.close()  # a board that cannot answer: last counts kept, board_up says so
    assert jobs("waiting") == 1
    assert registry.get_sample_value("legato_conductor_board_up") == 0


def test_claim_renewed_while_a_job_outlives_its_ttl(board: JobBoard, board_url: str,
                                                    persistence: Persistence) -> None:
    gate = f"renew-{uuid.uuid4().hex}"
    job = tc.post_job(board, persistence, tc.gated_flow,
                      kwargs={"steps": 2, "gate_name": gate, "at": 0})
    conductor = BlockingConductor("c", board, persistence, claim_ttl=0.3, wait_timeout=0.05)
    events = recorded(conductor)
    started(conductor, max_dispatches=1)
    assert tc.gate(f"{gate}:reached").wait(20)
    with jb.connect(board_url, persistence=persistence) as other:
        ticker = threading.Event()
        until = time.monotonic() + 1.2  # four lease lengths
        while time.monotonic() < until:
            assert other.claim_next("thief") is None
            assert other.find_owner(job) == conductor.conductor.name
            ticker.wait(0.05)
    tc.gate(gate).set()
    assert conductor.wait(20)
    assert events.names(job)[-1] == "job_consumed"
    assert conductor.statistics["claims_lost"] == 0


class CountingBoard(MemoryJobBoard):
    """A memory board counting its claim calls (and able to stop a conductor mid-call); it
    claims as if its answers came later, as on Redis and ZooKeeper."""

    CAPABILITIES = Capabilities(notifications=True, sends_without_waiting=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calls: list[str] = []
        self.on_chain: Callable[[], None] = lambda: None

    def claim_next(self, who: str, *, ttl: float | None = None) -> Job | None:
        self.calls.append("claim_next")
        return super().claim_next(who, ttl=ttl)

    def consume_and_claim_next(self, job: Job, who: str, *,
                               ttl: float | None = None) -> Job | None:
        self.calls.append("consume_and_claim_next")
        self.on_chain()
        return super().consume_and_claim_next(job, who, ttl=ttl)

    def consume_and_claim_next_async(self, job: Job, who: str, *,
                                     ttl: float | None = None) -> Pending[Job | None]:
        self.calls.append("consume_and_claim_next_async")
        self.on_chain()

        def read(claimed: Job | None) -> Job | None:
            self.calls.append("read")
            return claimed

        return super().consume_and_claim_next_async(job, who, ttl=ttl).then(read)

    def consume(self, job: Job, who: str) -> None:
        self.calls.append("consume")
        super().consume(job, who)

    def release(self, job: Job, who: str) -> None:
        self.calls.append("release")
        super().release(job, who)


def test_blocking_conductor_claims_the_next_job_as_it_consumes(persistence: Persistence) -> None:
    with CountingBoard(persistence=persistence) as board:
        jobs = [tc.post_job(board, persistence, tc.steps_flow) for _ in range(3)]
        conductor = BlockingConductor("c", board, persistence, wait_timeout=0.05,
                                      claim_ahead_below=0)
        events = recorded(conductor)
        conductor.run(max_dispatches=3)
        # One claim, then each consume hands over the next job; the last dispatch may not
        # claim a fourth job, so it consumes alone.
        assert board.calls == ["claim_next", "consume_and_claim_next", "consume_and_claim_next",
                               "consume"]
        assert board.job_count == 0
        consumed = [d["job"].uuid for e, d in events.events if e == "job_consumed"]
        assert consumed == [job.uuid for job in jobs]
        assert all(flow_of_state(persistence, job) is FlowState.SUCCESS for job in jobs)
        assert conductor.statistics["dispatched"] == 3


AHEAD = "consume_and_claim_next_async"


@pytest.mark.parametrize(("pipelined", "count", "calls"), [
    # The first job ends: the second is claimed to run now, and the consume of the first
    # claims the third ahead; then each consume claims one more while the next job runs, until
    # claiming another could pass max_dispatches.
    (False, 4, ["claim_next", "claim_next", AHEAD, "read", AHEAD, "read", "consume", "consume"]),
    # Where sends are pipelined, two calls stay in flight: the pipeline starts with two claims
    # (one job to run, one ready), and each consume is sent before the answer of the one sent
    # a job earlier is read.
    (True, 6, ["claim_next", "claim_next", "claim_next", AHEAD, AHEAD, AHEAD, "read", "read",
               "read", "consume", "consume", "consume"]),
    # Where the board gathers two sends into one request, three calls stay in flight (the
    # answer read when a job ends was sent at least a job earlier, although a gathered call
    # waits for the next one to go out): the pipeline starts with three claims.
    (2, 8, ["claim_next", "claim_next", "claim_next", "claim_next", AHEAD, AHEAD, AHEAD, AHEAD,
            "read", "read", "read", "read", "consume", "consume", "consume", "consume"]),
], ids=["read-then-send", "send-then-read", "send-then-read-gathered"])
def test_blocking_conductor_claims_ahead_of_short_jobs(
        persistence: Persistence, pipelined: bool | int, count: int, calls: list[str]) -> None:
    with CountingBoard(persistence=persistence) as board:
        board.CAPABILITIES = dataclasses.replace(
            board.CAPABILITIES, pipelined_sends=bool(pipelined),
            gathered_sends=max(1, int(pipelined)))
        jobs = [tc.post_job(board, persistence, tc.steps_flow) for _ in range(count + 2)]
        conductor = BlockingConductor("c", board, persistence, wait_timeout=0.05,
                                      claim_ahead_below=60)
        events = recorded(conductor)
        conductor.run(max_dispatches=count)
        assert board.calls == calls
        jobs, left = jobs[:count], jobs[count:]
        assert all(board.state_of(job) is JobState.UNCLAIMED for job in left)
        assert board.job_count == 2
        started = [d["job"].uuid for e, d in events.events if e == "running_start"]
        consumed = [d["job"].uuid for e, d in events.events if e == "job_consumed"]
        assert started == consumed == [job.uuid for job in jobs]  # claim order kept
        # A job's job_consumed comes once the job after it has run.
        names = [(e, d["job"].uuid) for e, d in events.events]
        assert names.index(("job_consumed", jobs[0].uuid)) > names.index(
            ("running_end", jobs[1].uuid))
        assert all(flow_of_state(persistence, job) is FlowState.SUCCESS for job in jobs)
        assert conductor.statistics["dispatched"] == count
        assert conductor.statistics["consumed"] == count


def test_claiming_ahead_stops_after_a_long_job(persistence: Persistence) -> None:
    with CountingBoard(persistence=persistence) as board:
        for _ in range(3):
            tc.post_job(board, persistence, tc.steps_flow)
        conductor = BlockingConductor("c", board, persistence, wait_timeout=0.05,
                                      claim_ahead_below=1e-9)  # every job is "long"
        conductor.run(max_dispatches=3)
        assert "consume_and_claim_next_async" not in board.calls
        assert board.calls == ["claim_next", "consume_and_claim_next", "consume_and_claim_next",
                               "consume"]


@pytest.mark.parametrize("pipelined", [False, True], ids=["read-then-send", "send-then-read"])
def test_job_claimed_ahead_is_released_when_the_running_job_is_long(
        persistence: Persistence, pipelined: bool) -> None:
    with CountingBoard(persistence=persistence) as board:
        board.CAPABILITIES = dataclasses.replace(board.CAPABILITIES, pipelined_sends=pipelined)
        gate = f"long-{uuid.uuid4().hex}"
        first = tc.post_job(board, persistence, tc.steps_flow)
        tc.post_job(board, persistence, tc.gated_flow, kwargs={"steps": 1, "gate_name": gate})
        waiting = tc.post_job(board, persistence, tc.steps_flow)
        conductor = BlockingConductor("c", board, persistence, wait_timeout=0.05,
                                      claim_ahead_below=60, claim_ttl=2.0)
        events = recorded(conductor)
        started(conductor)
        assert tc.gate(f"{gate}:reached").wait(20)
        # The first job's consume claimed the last job ahead while the gated job started.
        assert "consume_and_claim_next_async" in board.calls
        # The gated job runs long: the job claimed ahead is handed back uncounted, so another
        # conductor can run it, and the first job's consume is reported meanwhile.
        wait_until(lambda: board.find_owner(waiting) is None)
        assert "release" in board.calls
        assert events.wait_for("job_consumed", 1)
        assert [d["job"] for d in events.of("job_consumed")] == [first]
        assert board.get(waiting.uuid).attempts == 0
        taken = board.claim_next("other")
        assert taken == waiting and taken is not None
        board.consume(taken, "other")
        tc.gate(gate).set()
        assert events.wait_for("job_consumed", 2)
        conductor.stop()
        assert conductor.wait(20)
        assert board.job_count == 0
        assert conductor.statistics["dispatched"] == 2


@pytest.mark.parametrize("pipelined", [False, True], ids=["read-then-send", "send-then-read"])
@pytest.mark.parametrize("limit", [1, 2, 3, 4, 5])
def test_claiming_ahead_keeps_max_dispatches_exact(persistence: Persistence, limit: int,
                                                   pipelined: bool) -> None:
    with CountingBoard(persistence=persistence) as board:
        board.CAPABILITIES = dataclasses.replace(board.CAPABILITIES, pipelined_sends=pipelined)
        jobs = [tc.post_job(board, persistence, tc.steps_flow) for _ in range(7)]
        conductor = BlockingConductor("c", board, persistence, wait_timeout=0.05,
                                      claim_ahead_below=60)
        events = recorded(conductor)
        conductor.run(max_dispatches=limit)
        consumed = [d["job"] for d in events.of("job_consumed")]
        assert consumed == jobs[:limit]
        assert conductor.statistics["dispatched"] == limit
        for job in jobs[limit:]:  # never claimed, not even ahead
            assert board.state_of(job) is JobState.UNCLAIMED
            assert board.get(job.uuid).attempts == 0
        assert "release" not in board.calls


class LosingBoard(CountingBoard):
    """Loses the answer of its first ``consume_and_claim_next_async`` (the call never ran)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lost = 0

    def consume_and_claim_next_async(self, job: Job, who: str, *,
                                     ttl: float | None = None) -> Pending[Job | None]:
        if self.lost == 0:
            self.lost += 1
            self.calls.append("lost")
            return Pending.failed(errors.BoardUnavailable("reply lost (injected)"))
        return super().consume_and_claim_next_async(job, who, ttl=ttl)


def test_a_lost_answer_to_a_consume_sent_ahead_is_retried(persistence: Persistence) -> None:
    with LosingBoard(persistence=persistence) as board:
        jobs = [tc.post_job(board, persistence, tc.steps_flow) for _ in range(3)]
        conductor = BlockingConductor("c", board, persistence, wait_timeout=0.05,
                                      claim_ahead_below=60, board_backoff_base=0.01)
        events = recorded(conductor)
        conductor.run(max_dispatches=3)
        # The first job's consume was sent ahead and its answer lost: it is consumed again with
        # a plain consume (and the claim that call would have made is simply not there).
        assert board.calls[:4] == ["claim_next", "claim_next", "lost", "consume"]
        assert [d["job"] for d in events.of("job_consumed")] == jobs
        assert board.job_count == 0
        assert conductor.statistics["board_errors"] == 1
        assert conductor.statistics["consumed"] == 3


def flow_of_state(persistence: Persistence, job: Job) -> FlowState | None:
    (flow_detail,) = persistence.get_logbook(job.book_uuid).flows.values()
    return flow_detail.state


@pytest.mark.parametrize(("ahead", "pipelined", "calls"), [
    (0, False, ["claim_next", "consume_and_claim_next", "release"]),
    (60, False, ["claim_next", "claim_next", "consume_and_claim_next_async", "read", "release"]),
    (60, True, ["claim_next", "claim_next", "claim_next", "consume_and_claim_next_async", "read",
                "release"]),
], ids=["chained", "ahead", "pipelined"])
def test_job_claimed_while_consuming_is_released_on_stop(persistence: Persistence, ahead: float,
                                                         pipelined: bool,
                                                         calls: list[str]) -> None:
    with CountingBoard(persistence=persistence) as board:
        board.CAPABILITIES = dataclasses.replace(board.CAPABILITIES, pipelined_sends=pipelined)
        first = tc.post_job(board, persistence, tc.steps_flow)
        second = tc.post_job(board, persistence, tc.steps_flow)
        conductor = BlockingConductor("c", board, persistence, wait_timeout=0.05,
                                      claim_ahead_below=ahead)
        events = recorded(conductor)
        board.on_chain = conductor.stop  # stop() arrives while the chained call is in flight
        conductor.run()
        assert board.calls == calls
        assert [d["job"] for d in events.of("job_consumed")] == [first]
        assert board.state_of(first) is JobState.COMPLETE
        # The second job was claimed by that call, never run, and handed straight back
        # (uncounted).
        assert board.state_of(second) is JobState.UNCLAIMED
        assert board.get(second.uuid).attempts == 0
        assert flow_of_state(persistence, second) is None
        assert conductor.statistics["dispatched"] == 1
        assert board.claim_next("other") == second


def test_nonblocking_conductor_does_not_chain_claims(persistence: Persistence) -> None:
    with CountingBoard(persistence=persistence) as board:
        for _ in range(2):
            tc.post_job(board, persistence, tc.steps_flow)
        conductor = NonBlockingConductor("c", board, persistence, wait_timeout=0.05,
                                         max_simultaneous_jobs=1)
        conductor.run(max_dispatches=2)
        assert board.calls == ["claim_next", "consume", "claim_next", "consume"]
        assert board.job_count == 0


def test_claim_ahead_belongs_to_the_claim_loop_thread(persistence: Persistence) -> None:
    """The job handed to the next dispatch is kept without a lock, which is correct only while
    one thread finishes jobs and dispatches the next: a call from any other thread is refused
    before it touches the board, so no claimed job can be overwritten and lost; the renewer's
    call (releasing stale jobs) is the one meant for other threads."""
    with CountingBoard(persistence=persistence) as board:
        first = tc.post_job(board, persistence, tc.steps_flow)
        second = tc.post_job(board, persistence, tc.steps_flow)
        completed: list[Job] = []

        def complete(lease: Lease, _persistence: Persistence, _outcome: Outcome,
                     call: Callable[[], None]) -> None:
            call()
            completed.append(lease.job)

        ahead = ClaimAhead(board, "me", claim_ttl=None, below=60.0, hold=1e-9,
                           complete=complete, release=lambda job: board.release(job, "me"),
                           stopping=threading.Event())
        ahead.start(30.0)
        ahead.dispatched(None)
        job = board.claim_next("me")
        assert job == first and job is not None
        lease = Lease(job, 30.0, claimed_at=time.monotonic())
        consume = Outcome(Action.CONSUME)
        refused: list[BaseException] = []

        def from_elsewhere(call: Callable[[], object]) -> None:
            try:
                call()
            except RuntimeError as exc:
                refused.append(exc)

        for call in (lambda: ahead.finish(lease, persistence, consume,
                                          lambda: board.consume(job, "me"), ran_for=0.0),
                     ahead.take, ahead.release_all):
            thread = threading.Thread(target=from_elsewhere, args=(call,))
            thread.start()
            thread.join()
        assert len(refused) == 3
        assert all("claim loop" in str(exc) for exc in refused)
        assert board.calls == ["claim_next"]  # nothing reached the board
        # On its own thread, the short job's consume is sent without waiting and the second
        # job is claimed to run next.
        ahead.finish(lease, persistence, consume, lambda: board.consume(job, "me"), ran_for=0.0)
        assert board.calls == ["claim_next", "claim_next", "consume_and_claim_next_async"]
        handed = ahead.take()
        assert handed is not None and handed[0] == second
        assert completed == []  # the consume's answer is not read yet
        # The renewer's thread may read it (and hand back stale jobs claimed ahead).
        thread = threading.Thread(target=ahead.release_stale)
        thread.start()
        thread.join()
        assert completed == [first]
        assert board.state_of(first) is JobState.COMPLETE
