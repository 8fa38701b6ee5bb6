"""A job's final outcome keeps its reason on every path a conductor finishes it by, including
the consume sent without waiting while the next job runs (claiming ahead: Redis, ZooKeeper)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from legato import jobboard as jb
from legato.conductor import BlockingConductor, NonBlockingConductor
from legato.jobboard.base import Capabilities, JobBoard
from legato.jobboard.memory import MemoryJobBoard
from legato.notifier import ANY
from legato.persistence.base import Persistence
from legato.testing import conductor as tc


class _SendsAhead(MemoryJobBoard):
    """A memory board that claims as if its answers came later (as on Redis), so conductors
    claim ahead on it."""

    CAPABILITIES = Capabilities(notifications=True, sends_without_waiting=True)


class _Pipelined(_SendsAhead):
    """The same, with two calls kept in flight (as on ZooKeeper)."""

    CAPABILITIES = Capabilities(notifications=True, sends_without_waiting=True,
                                pipelined_sends=True)


@pytest.fixture(params=["memory-sends-ahead", "memory-pipelined", "redis", "zookeeper",
                        "memory", "sqlite"])
def board(request: pytest.FixtureRequest, persistence: Persistence) -> Iterator[JobBoard]:
    kind: str = request.param
    if kind.startswith("memory-"):
        cls = _Pipelined if kind == "memory-pipelined" else _SendsAhead
        with cls(persistence=persistence) as forced:
            assert forced.CAPABILITIES.sends_without_waiting
            yield forced
        return
    url = (f"memory://reasons-{uuid.uuid4().hex}" if kind == "memory"
           else request.getfixturevalue(f"{kind}_url"))
    with jb.connect(url, persistence=persistence) as real:
        yield real


@pytest.mark.parametrize("kind", ["blocking", "nonblocking"])
def test_validation_failure_is_consumed_with_its_reason(board: JobBoard,
                                                        persistence: Persistence,
                                                        kind: str) -> None:
    # Failing and good jobs alternate, so each failing one finishes while a job is claimed
    # ahead (claim_ahead_below is far above any job's time here).
    jobs: list[tuple[Any, bool]] = []
    for i in range(6):
        failing = i % 2 == 0
        store = {"x": 1} if failing else {"x": 1, "y": 2}
        jobs.append((tc.post_job(board, persistence, tc.add_flow, store=store,
                                 name=f"job-{i}"), failing))
    conductor = (BlockingConductor("c", board, persistence, wait_timeout=0.05,
                                   claim_ahead_below=60) if kind == "blocking"
                 else NonBlockingConductor("c", board, persistence, wait_timeout=0.05))
    events = tc.EventRecorder()
    conductor.notifier.register(ANY, events)
    conductor.run(max_dispatches=len(jobs))
    assert board.job_count == 0
    consumed = {d["job"].uuid: d.get("reason") for d in events.of("job_consumed")}
    assert set(consumed) == {job.uuid for job, _ in jobs}
    for job, failing in jobs:
        reason = consumed[job.uuid]
        if failing:
            assert reason is not None and reason.startswith("validation failed"), \
                f"{job.name}: consumed with reason {reason!r}"
            assert "y" in reason
        else:
            assert reason is None, f"{job.name}: consumed with reason {reason!r}"
