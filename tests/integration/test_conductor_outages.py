"""Conductors through real outages (a TCP proxy cut between them and the server): a persistence
outage hands jobs back and never trashes them; a board outage longer than the claim's lease
suspends the job's engine and the job is not consumed by the old owner."""

from __future__ import annotations

import logging
import random
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

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
)
from legato.jobboard.base import Job
from legato.persistence.base import Persistence
from legato.states import FlowState
from legato.testing import conductor as tc
from legato.testing.conductor import recorded, wait_until
from legato.testing.proxy import TCPProxy


def flow_state(persistence: Persistence, job: Job) -> FlowState | None:
    (flow_detail,) = persistence.get_logbook(job.book_uuid).flows.values()
    return flow_detail.state


@pytest.fixture
def running() -> Iterator[list[ExecutorConductor]]:
    conductors: list[ExecutorConductor] = []
    yield conductors
    for conductor in conductors:
        conductor.stop()
        assert conductor.wait(30)


@pytest.fixture(params=["memory", "redis", "zookeeper"])
def outage_board_url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return f"memory://outage-{uuid.uuid4().hex}"
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


def test_persistence_outage_never_trashes_a_job_and_a_failing_job_is_trashed(
        postgres_url: str, outage_board_url: str, running: list[ExecutorConductor]) -> None:
    """A storage outage is no fault of the job's: its claims are handed back uncounted, so
    neither this conductor nor the next claimant trashes it at ``max_attempts``; a job that
    fails for its own reasons on the same board is trashed there."""
    with TCPProxy.for_url(postgres_url) as proxy:
        persistence = lp.connect(proxy.url_for(postgres_url))
        persistence.upgrade()
        with jb.connect(outage_board_url, persistence=persistence) as board:
            job = tc.post_job(board, persistence, tc.steps_flow, kwargs={"steps": 2})
            poison = tc.post_job(board, persistence, tc.poison_flow)
            proxy.cut()
            registry = CollectorRegistry()
            first = NonBlockingConductor("first", board, persistence, wait_timeout=0.05,
                                         max_attempts=2, backoff_base=0.02, backoff_max=0.1,
                                         metrics=ConductorMetrics(registry))
            events = recorded(first)
            running.append(first)
            threading.Thread(target=first.run, daemon=True).start()
            # Far more claims than max_attempts, every one ended by the outage.
            assert events.wait_for("job_abandoned", count=8)
            first.stop()
            assert first.wait(30)
            ended = events.of("job_abandoned")
            assert {d["job"].uuid for d in ended} == {job.uuid, poison.uuid}
            assert all(d["reason"].startswith("storage unavailable") for d in ended)
            assert events.of("job_trashed") == []
            assert registry.get_sample_value(
                "legato_conductor_storage_errors_total") == len(ended)
            # None of those claims counts: the next claimant sees no attempt.
            assert board.get(job.uuid).attempts == 0
            assert board.get(poison.uuid).attempts == 0
            proxy.restore()
            second = BlockingConductor("second", board, persistence, wait_timeout=0.05,
                                       max_attempts=2, backoff_base=0.02, backoff_max=0.1)
            events = recorded(second)
            running.append(second)
            threading.Thread(target=second.run, daemon=True).start()
            assert events.wait_for("job_consumed") and events.wait_for("job_trashed")
            assert [d["job"] for d in events.of("job_consumed")] == [job]
            [trashed] = events.of("job_trashed")
            assert trashed["job"] == poison
            assert trashed["reason"].startswith("too many attempts: ExecutionFailure")
            assert flow_state(persistence, job) is FlowState.SUCCESS
            persistence.close()


def test_board_outage_past_the_lease_suspends_without_consuming(
        redis_url: str, running: list[ExecutorConductor]) -> None:
    persistence = lp.connect("memory://")
    gate = f"outage-{uuid.uuid4().hex}"
    with TCPProxy.for_url(redis_url) as proxy, \
            jb.connect(proxy.url_for(redis_url), persistence=persistence) as board, \
            jb.connect(redis_url, persistence=persistence) as direct:
        job = tc.post_job(direct, persistence, tc.gated_flow,
                          kwargs={"steps": 3, "gate_name": gate, "at": 1})
        first = BlockingConductor("first", board, persistence, claim_ttl=1.0,
                                  wait_timeout=0.05)
        events = recorded(first)
        running.append(first)
        threading.Thread(target=first.run, kwargs={"max_dispatches": 1}, daemon=True).start()
        assert tc.gate(f"{gate}:reached").wait(30)
        proxy.cut()
        wait_until(lambda: first.statistics["claims_lost"] == 1)  # the lease ran out
        tc.gate(gate).set()
        assert first.wait(30)  # suspended at the next atom boundary, with the board still cut
        assert "job_consumed" not in events.names(job)
        assert events.names(job)[-1] == "job_abandoned"
        flow_detail = persistence.get_logbook(job.book_uuid).flows.popitem()[1]
        assert flow_detail.state is FlowState.SUSPENDED
        last = flow_detail.find_by_name("gated-2")
        assert last is None or last.results is None
        proxy.restore()
        second = NonBlockingConductor("second", direct, persistence, wait_timeout=0.05)
        second_events = recorded(second)
        second.run(max_dispatches=1)  # the lapsed claim is claimable again
        assert second_events.names(job)[-1] == "job_consumed"
        assert flow_state(persistence, job) is FlowState.SUCCESS
        assert direct.job_count == 0


def test_persistence_outage_mid_flow_abandons_then_resumes(
        postgres_url: str, running: list[ExecutorConductor]) -> None:
    gate = f"midflow-{uuid.uuid4().hex}"
    with TCPProxy.for_url(postgres_url) as proxy:
        persistence = lp.connect(proxy.url_for(postgres_url))
        persistence.upgrade()
        with jb.connect(f"memory://midflow-{uuid.uuid4().hex}") as board:
            job = tc.post_job(board, persistence, tc.gated_flow,
                              kwargs={"steps": 3, "gate_name": gate, "at": 1})
            registry = CollectorRegistry()
            conductor = BlockingConductor("c", board, persistence, wait_timeout=0.05,
                                          backoff_base=0.05, backoff_max=0.2,
                                          metrics=ConductorMetrics(registry))
            events = recorded(conductor)
            running.append(conductor)
            threading.Thread(target=conductor.run, daemon=True).start()
            assert tc.gate(f"{gate}:reached").wait(30)
            proxy.cut()
            tc.gate(gate).set()  # the step ends while its result cannot be stored
            assert events.wait_for("job_abandoned")
            assert events.of("job_consumed") == [] and events.of("job_trashed") == []
            assert "StorageFailure" in events.of("job_abandoned")[0]["reason"]
            assert registry.get_sample_value("legato_conductor_storage_errors_total") >= 1
            proxy.restore()
            assert events.wait_for("job_consumed")
            assert flow_state(persistence, job) is FlowState.SUCCESS
            persistence.close()


def _corrupt_middle(path: Path) -> None:
    """Overwrite every page but the first (the header and the schema's root) with garbage."""
    size = path.stat().st_size
    assert size > 8192, "the file should have pages beyond the first"
    with path.open("r+b") as file:
        file.seek(4096)
        file.write(random.Random(7).randbytes(size - 4096))


def test_corrupt_sqlite_persistence_stops_the_conductor_instead_of_abandoning_forever(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A damaged SQLite file once made conductors abandon the same jobs as "storage
    unavailable" over and over (41 times in 15 s): it is no outage, so the conductor stops
    with ``StorageCorrupted``, hands the job back uncounted and trashes nothing."""
    path = tmp_path / "persistence.db"
    writer = lp.connect(f"sqlite:///{path}")
    writer.upgrade()
    with jb.connect(f"memory://corrupt-{uuid.uuid4().hex}") as board:
        jobs = [tc.post_job(board, writer, tc.steps_flow, kwargs={"steps": 2}, name=f"j{i}")
                for i in range(20)]  # enough rows for several pages
        writer.close()  # the last connection checkpoints the WAL into the file
        _corrupt_middle(path)
        persistence = lp.connect(f"sqlite:///{path}")
        conductor = BlockingConductor("c", board, persistence, wait_timeout=0.05,
                                      max_attempts=2, backoff_base=0.01, backoff_max=0.02)
        events = recorded(conductor)
        with pytest.raises(errors.StorageCorrupted, match="damaged"):
            conductor.run(max_dispatches=10)
        assert len(events.of("job_abandoned")) <= 1
        assert events.of("job_trashed") == [] and list(board.iter_trash()) == []
        assert board.job_count == len(jobs)
        assert all(job.attempts == 0 for job in board.iterjobs()), "handed back uncounted"
        loud = [r for r in caplog.records if "corrupted" in r.getMessage()
                and r.levelno >= logging.ERROR]
        assert len(loud) == 1
        persistence.close()
