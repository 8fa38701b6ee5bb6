"""The shared jobboard conformance suite against a real ZooKeeper, and what the ZooKeeper board
sends per job.

The suite runs twice: with real time (leases end by TTL or by the owner's session) and with an
injected fake clock (TTLs, delays and entity expiry then follow ``FakeClock.advance``).
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from legato import errors
from legato.jobboard.base import Job, JobBoard
from legato.jobboard.zookeeper import ZooKeeperJobBoard
from legato.states import JobState
from legato.testing.jobboard import JobBoardConformance, MakeBoard, board_factory


@pytest.fixture
def make_board(zookeeper_url: str) -> Iterator[MakeBoard]:
    with board_factory(zookeeper_url) as make:
        yield make


class TestZooKeeperRealClock(JobBoardConformance):
    fake_clock = False
    short_ttl = 0.3


class TestZooKeeperFakeClock(JobBoardConformance):
    fake_clock = True


# -- what the ZooKeeper board sends (white-box: requests counted as kazoo queues them) ------------


class _Requests:
    """Counts the requests a board sends to ZooKeeper from now on, by kind."""

    def __init__(self, board: JobBoard) -> None:
        assert isinstance(board, ZooKeeperJobBoard)
        self.counts: collections.Counter[str] = collections.Counter()
        client = board._client
        queue = client._call

        def counted(request: Any, result: Any) -> Any:
            self.counts[type(request).__name__.lstrip("_")] += 1
            return queue(request, result)

        client._call = counted


def _with_backlog(make_board: MakeBoard, count: int) -> tuple[JobBoard, JobBoard, list[Job]]:
    """A poster with ``count`` jobs, and a worker that has caught up with them."""
    poster, worker = make_board(), make_board()
    jobs = [poster.post(f"job-{i}") for i in range(count)]
    assert [j.uuid for j in worker.iterjobs(ensure_fresh=True)] == [j.uuid for j in jobs]
    return poster, worker, jobs


def test_claiming_jobs_posted_elsewhere_costs_one_transaction_each(
        make_board: MakeBoard) -> None:
    """The worker reads the next jobs ahead, several per request: claim_next and consume
    send their transaction and nothing else (no reads, no listings, no syncs)."""
    poster, worker, jobs = _with_backlog(make_board, 12)
    first = worker.claim_next("worker")
    assert first == jobs[0]
    requests = _Requests(worker)
    worker.consume(first, "worker")
    for expected in jobs[1:]:
        job = worker.claim_next("worker")
        assert job == expected and job is not None and job.attempts == 1
        worker.consume(job, "worker")
    assert requests.counts["Transaction"] == 2 * 11 + 1
    assert requests.counts["MultiRead"] <= 3
    assert sum(requests.counts.values()) == requests.counts["Transaction"] + requests.counts[
        "MultiRead"], requests.counts
    assert poster.job_count == 0


def test_consume_and_claim_next_is_one_transaction(make_board: MakeBoard) -> None:
    poster, worker, jobs = _with_backlog(make_board, 6)
    job = worker.claim_next("worker")
    requests = _Requests(worker)
    for expected in jobs[1:]:
        assert job is not None
        job = worker.consume_and_claim_next(job, "worker")
        assert job == expected and job is not None and poster.find_owner(job) == "worker"
    assert requests.counts["Transaction"] == 5
    assert requests.counts["GetData"] + requests.counts["WatchedGet"] == 0, requests.counts
    assert job is not None and worker.consume_and_claim_next(job, "worker") is None
    assert poster.job_count == 0


def test_consume_and_claim_next_when_the_next_job_changed_unseen(make_board: MakeBoard) -> None:
    """The one transaction fails on the next job's version (as if another process had changed
    it and its event had not come yet): nothing happened, so the board consumes, then claims."""
    poster, worker, (first, second) = _with_backlog(make_board, 2)
    held = worker.claim_next("worker")
    assert isinstance(worker, ZooKeeperJobBoard) and held == first and held is not None
    name = worker._index.lookup(second.uuid)
    assert name is not None
    worker._follower.fetched(name)
    known = worker._index.cached(name)
    assert known is not None
    worker._index.job_data(name, (known[0], known[1] + 7), seen=worker._index.token())
    requests = _Requests(worker)
    nxt = worker.consume_and_claim_next(held, "worker")
    assert nxt == second and nxt is not None and nxt.attempts == 1
    assert poster.state_of(first) is JobState.COMPLETE
    assert poster.find_owner(second) == "worker"
    assert requests.counts["Transaction"] == 3  # both at once (failed), consume, claim


def test_consume_and_claim_next_when_the_claim_changed_unseen(make_board: MakeBoard) -> None:
    """The one transaction fails on the consumed claim's version: the consume then reads and
    checks the claim (still the caller's), consumes, and the next job is claimed."""
    poster, worker, (first, second) = _with_backlog(make_board, 2)
    held = worker.claim_next("worker")
    assert isinstance(worker, ZooKeeperJobBoard) and held == first and held is not None
    name = worker._index.lookup(first.uuid)
    assert name is not None
    worker._holds[name] = dataclasses.replace(worker._holds[name], claim_version=5)
    nxt = worker.consume_and_claim_next(held, "worker")
    assert nxt == second and poster.state_of(first) is JobState.COMPLETE
    assert poster.find_owner(second) == "worker"


def test_consume_and_claim_next_with_an_old_fence_claims_nothing(make_board: MakeBoard) -> None:
    board = make_board()
    job, waiting = board.post("work"), board.post("waiting")
    old = board.claim(job, "owner-a")
    board.abandon(old, "owner-a")
    board.claim(job, "owner-a")  # this board remembers the newer claim
    with pytest.raises(errors.NotOwner):
        board.consume_and_claim_next(old, "owner-a")
    assert board.state_of(waiting) is JobState.UNCLAIMED
    assert board.find_owner(job) == "owner-a"


def test_a_closed_boards_claims_are_free_at_once(make_board: MakeBoard) -> None:
    """A claim ends with its owner's session; the watch on the claim node tells other boards,
    long before the claim's TTL."""
    owner, other = make_board(), make_board()
    job = owner.post("work")
    assert owner.claim_next("owner-a", ttl=300) == job
    assert other.claim_next("owner-b") is None  # the other board knows it is claimed
    owner.close()
    again = other.claim_next("owner-b")
    assert again == job and again is not None and again.attempts == 2
