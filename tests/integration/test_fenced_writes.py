"""A conductor whose claim lapsed while a step ran cannot write over the job's new owner.

Conductor A runs a three-step flow whose step 1 blocks; A's claim lapses (its board connection
cut through a TCP proxy, or the board's clock moved past the lease while A noticed nothing);
conductor B takes the job over, runs it to the end and consumes it; then A's step ends. A's
writes carry A's fence, which B's take replaced: they are refused, A stops at once and reverts
nothing, and the record stays B's.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from legato import jobboard as jb
from legato import persistence as lp
from legato.conductor import BlockingConductor, ExecutorConductor
from legato.jobboard.base import Job
from legato.persistence.base import Persistence
from legato.states import AtomState, FlowState
from legato.testing import conductor as tc
from legato.testing.clock import FakeClock
from legato.testing.conductor import recorded, wait_until
from legato.testing.proxy import TCPProxy

STEPS, AT = 3, 1


@pytest.fixture
def running() -> Iterator[list[ExecutorConductor]]:
    conductors: list[ExecutorConductor] = []
    yield conductors
    for conductor in conductors:
        conductor.stop()
        assert conductor.wait(30)


def _post(board: jb.JobBoard, persistence: Persistence, gate: str, log: Path) -> Job:
    return tc.post_job(board, persistence, tc.takeover_flow,
                       kwargs={"steps": STEPS, "gate_name": gate, "at": AT,
                               "log_path": str(log)})


def _start(conductor: ExecutorConductor) -> None:
    threading.Thread(target=conductor.run, kwargs={"max_dispatches": 1}, daemon=True).start()


def _lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def _assert_record_is_the_new_owners(persistence: Persistence, job: Job, log: Path) -> None:
    (flow_detail,) = persistence.get_logbook(job.book_uuid).flows.values()
    assert flow_detail.state is FlowState.SUCCESS
    # Step 0 was A's, recorded before the takeover; step 1 is B's run (its second arrival),
    # not A's late result; step 2 only B ran.
    assert {ad.name: (ad.state, ad.results) for ad in flow_detail} == {
        "step-0": (AtomState.SUCCESS, "0:1"),
        "step-1": (AtomState.SUCCESS, "1:2"),
        "step-2": (AtomState.SUCCESS, "2:1"),
    }
    assert not [line for line in _lines(log) if line.startswith("revert")]


def _refusals(caplog: pytest.LogCaptureFixture, job: Job) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "legato.conductor.executor" and job.uuid in r.getMessage()
            and "claim lost" in r.getMessage()]


@pytest.mark.parametrize("a_step", ["succeeds", "fails"])
def test_stale_owner_cannot_write_over_the_new_owner_redis_postgres(
        redis_url: str, postgres_url: str, tmp_path: Path, running: list[ExecutorConductor],
        caplog: pytest.LogCaptureFixture, a_step: str) -> None:
    caplog.set_level(logging.WARNING, logger="legato.conductor.executor")
    gate, log = f"fenced-{uuid.uuid4().hex}", tmp_path / "effects.log"
    persistence = lp.connect(postgres_url)
    persistence.upgrade()
    with TCPProxy.for_url(redis_url) as proxy, \
            jb.connect(proxy.url_for(redis_url), persistence=persistence) as cut_board, \
            jb.connect(redis_url, persistence=persistence) as direct:
        job = _post(direct, persistence, gate, log)
        first = BlockingConductor("first", cut_board, persistence, claim_ttl=1.0,
                                  wait_timeout=0.05)
        first_events = recorded(first)
        running.append(first)
        _start(first)
        assert tc.gate(f"{gate}:reached").wait(30)
        proxy.cut()
        wait_until(lambda: first.statistics["claims_lost"] == 1)  # A's lease ran out
        second = BlockingConductor("second", direct, persistence, wait_timeout=0.05)
        second_events = recorded(second)
        second.run(max_dispatches=1)  # B takes the job over, finishes and consumes it
        assert second_events.names(job)[-1] == "job_consumed"
        if a_step == "fails":
            tc.gate(f"{gate}:fail").set()
        tc.gate(gate).set()  # A's step 1 ends now, long after B consumed the job
        assert first.wait(30)
        assert "job_consumed" not in first_events.names(job)
        _assert_record_is_the_new_owners(persistence, job, log)
        assert _refusals(caplog, job), "A's engine was not stopped by a refused write"
        persistence.close()


def test_a_failure_after_the_claim_is_known_lost_reverts_nothing(
        redis_url: str, postgres_url: str, tmp_path: Path, running: list[ExecutorConductor],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="legato.conductor.executor")
    gate, log = f"lost-{uuid.uuid4().hex}", tmp_path / "effects.log"
    persistence = lp.connect(postgres_url)
    persistence.upgrade()
    with TCPProxy.for_url(redis_url) as proxy, \
            jb.connect(proxy.url_for(redis_url), persistence=persistence) as cut_board, \
            jb.connect(redis_url, persistence=persistence) as direct:
        job = _post(direct, persistence, gate, log)
        first = BlockingConductor("first", cut_board, persistence, claim_ttl=1.0,
                                  wait_timeout=0.05)
        running.append(first)
        _start(first)
        assert tc.gate(f"{gate}:reached").wait(30)
        proxy.cut()
        wait_until(lambda: first.statistics["claims_lost"] == 1)
        # Nobody took the job yet, so A's writes would still land: A's own knowledge that the
        # claim is lost must keep it out of the revert path.
        tc.gate(f"{gate}:fail").set()
        tc.gate(gate).set()
        assert first.wait(30)
        assert not [line for line in _lines(log) if line.startswith("revert")]
        (flow_detail,) = persistence.get_logbook(job.book_uuid).flows.values()
        assert flow_detail.state is FlowState.RUNNING
        assert _refusals(caplog, job)
        assert flow_detail.find_by_name("step-0").state is AtomState.SUCCESS
        second = BlockingConductor("second", direct, persistence, wait_timeout=0.05)
        second_events = recorded(second)
        second.run(max_dispatches=1)  # the next owner resumes from what was recorded
        assert second_events.names(job)[-1] == "job_consumed"
        _assert_record_is_the_new_owners(persistence, job, log)
        persistence.close()


@pytest.mark.parametrize("a_step", ["succeeds", "fails"])
def test_stale_owner_cannot_write_over_the_new_owner_sqlite(
        tmp_path: Path, running: list[ExecutorConductor],
        caplog: pytest.LogCaptureFixture, a_step: str) -> None:
    """The board's clock jumps past A's lease: A notices nothing (its next renewal is 10 s
    away), so only the persistence fence stops its writes."""
    caplog.set_level(logging.WARNING, logger="legato.conductor.executor")
    gate, log = f"fenced-{uuid.uuid4().hex}", tmp_path / "effects.log"
    url = f"sqlite:///{tmp_path / 'legato.db'}"
    clock = FakeClock()
    persistence = lp.connect(url)
    persistence.upgrade()
    options: dict[str, Any] = {"persistence": persistence, "clock": clock}
    with jb.connect(url, **options) as board_a, jb.connect(url, **options) as board_b:
        job = _post(board_b, persistence, gate, log)
        first = BlockingConductor("first", board_a, persistence, claim_ttl=30.0,
                                  wait_timeout=0.05)
        first_events = recorded(first)
        running.append(first)
        _start(first)
        assert tc.gate(f"{gate}:reached").wait(30)
        clock.advance(60)  # A's lease is over as far as the board knows
        second = BlockingConductor("second", board_b, persistence, claim_ttl=30.0,
                                   wait_timeout=0.05)
        second_events = recorded(second)
        second.run(max_dispatches=1)
        assert second_events.names(job)[-1] == "job_consumed"
        assert first.statistics["claims_lost"] == 0  # A has not noticed anything yet
        if a_step == "fails":
            tc.gate(f"{gate}:fail").set()
        tc.gate(gate).set()
        assert first.wait(30)
        assert "job_consumed" not in first_events.names(job)
        _assert_record_is_the_new_owners(persistence, job, log)
        assert _refusals(caplog, job)
    persistence.close()
