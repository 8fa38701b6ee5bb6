"""The shared jobboard conformance suite against a real ZooKeeper, and what the ZooKeeper board
sends per job.

The suite runs twice: with real time (leases end by TTL or by the owner's session) and with an
injected fake clock (TTLs, delays and entity expiry then follow ``FakeClock.advance``).
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Iterator
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


class _Wipeable:
    loss_found_by_every_call = False  # a job that is gone, and post, find it (see the board)

    @pytest.fixture
    def lose_data(self, zookeeper_url: str) -> Iterator[Callable[[], None]]:
        """Deletes the board's path (the test's own node) with everything under it."""
        from kazoo.client import KazooClient

        hosts, _, path = zookeeper_url.removeprefix("zookeeper://").partition("/")
        client = KazooClient(hosts=hosts)
        client.start(timeout=10)

        def lose() -> None:
            client.delete(f"/{path.split('?', 1)[0]}", recursive=True)

        yield lose
        client.stop()
        client.close()


class TestZooKeeperRealClock(_Wipeable, JobBoardConformance):
    fake_clock = False
    short_ttl = 0.3
    counts_unread_delays = False


class TestZooKeeperFakeClock(_Wipeable, JobBoardConformance):
    fake_clock = True
    counts_unread_delays = False


# -- what the ZooKeeper board sends (white-box: requests counted as kazoo queues them) ------------


def _kind(request: Any) -> str:
    """A request's kind: kazoo's class name, or the name of ZooKeeper's opcode."""
    return "Transaction" if request.type == 14 else type(request).__name__.lstrip("_")


class _Requests:
    """Counts the requests a board sends to ZooKeeper from now on, by kind."""

    def __init__(self, board: JobBoard) -> None:
        assert isinstance(board, ZooKeeperJobBoard)
        self.counts: collections.Counter[str] = collections.Counter()
        client = board._client
        queue = client._call

        def counted(request: Any, result: Any) -> Any:
            self.counts[_kind(request)] += 1
            return queue(request, result)

        client._call = counted


def _with_backlog(make_board: MakeBoard, count: int) -> tuple[JobBoard, JobBoard, list[Job]]:
    """A poster with ``count`` jobs, and a worker that has caught up with them."""
    poster, worker = make_board(), make_board()
    jobs = [poster.post(f"job-{i}") for i in range(count)]
    assert [j.uuid for j in worker.iterjobs(ensure_fresh=True)] == [j.uuid for j in jobs]
    return poster, worker, jobs


ConsumeAndClaimNext = Callable[[JobBoard, Job, str], Job | None]


def _sent_and_read(board: JobBoard, job: Job, who: str) -> Job | None:
    return board.consume_and_claim_next_async(job, who).result()


#: ``consume_and_claim_next`` both ways: at once, and sent then read.
both_ways = pytest.mark.parametrize(
    "consume_and_claim_next", [JobBoard.consume_and_claim_next, _sent_and_read],
    ids=["sync", "async"])


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


@both_ways
def test_consume_and_claim_next_is_one_transaction(
        make_board: MakeBoard, consume_and_claim_next: ConsumeAndClaimNext) -> None:
    poster, worker, jobs = _with_backlog(make_board, 6)
    job = worker.claim_next("worker")
    requests = _Requests(worker)
    for expected in jobs[1:]:
        assert job is not None
        job = consume_and_claim_next(worker, job, "worker")
        assert job == expected and job is not None and poster.find_owner(job) == "worker"
    assert requests.counts["Transaction"] == 5
    assert requests.counts["GetData"] + requests.counts["WatchedGet"] == 0, requests.counts
    assert job is not None and consume_and_claim_next(worker, job, "worker") is None
    assert poster.job_count == 0


def test_the_job_an_unread_consume_and_claim_next_claims_is_reserved(
        make_board: MakeBoard) -> None:
    """While the answer is outstanding, the board's other claims pass over the job it claims,
    and everything is still one transaction per claim."""
    poster, worker, (first, second, third) = _with_backlog(make_board, 3)
    held = worker.claim_next("worker")
    assert held == first and held is not None
    requests = _Requests(worker)
    pending = worker.consume_and_claim_next_async(held, "worker")
    assert worker.claim_next("other") == third
    assert pending.result() == second
    assert poster.find_owner(second) == "worker" and poster.find_owner(third) == "other"
    assert poster.state_of(first) is JobState.COMPLETE
    assert requests.counts["Transaction"] == 2
    assert requests.counts["GetData"] + requests.counts["WatchedGet"] == 0, requests.counts


def test_an_async_consume_and_claim_next_goes_out_at_the_callers_next_wait(
        make_board: MakeBoard) -> None:
    """kazoo's connection thread writes the requests, in order. The call returns without waiting
    for that: the caller's next wait (a conductor waits for an earlier answer right after
    sending) lets the thread write it, before anything sent later."""
    _, worker, (first, second) = _with_backlog(make_board, 2)
    assert isinstance(worker, ZooKeeperJobBoard) and worker.CAPABILITIES.pipelined_sends
    held = worker.claim_next("worker")
    assert held == first and held is not None
    pending = worker.consume_and_claim_next_async(held, "worker")
    assert worker.state_of(first) is JobState.COMPLETE  # a read sent after it: answered after
    queued = [_kind(request) for request, _ in list(worker._client._queue)]
    assert "Transaction" not in queued
    assert pending.result() == second


def test_the_end_of_a_claim_reaches_other_boards_without_reads(make_board: MakeBoard) -> None:
    """Another board learns from its watch on jobs/, without reading the claim node, that an
    abandoned or released job is free, and claims it first."""
    poster, worker, (first, second) = _with_backlog(make_board, 2)
    assert isinstance(worker, ZooKeeperJobBoard)
    claimed = poster.claim_next("poster")
    assert claimed == first and claimed is not None
    poster.abandon(claimed, "poster")
    claimed = poster.claim(first, "poster")
    poster.release(claimed, "poster")
    requests = _Requests(worker)
    worker._follower.catch_up()  # every event of the above has reached the worker's index
    assert worker._index.unknown_claims() == []
    assert requests.counts == {"Sync": 1}  # no claim node read
    again = worker.claim_next("worker")
    assert again == first and again is not None and again.attempts == 2
    assert poster.state_of(second) is JobState.UNCLAIMED


@both_ways
def test_consume_and_claim_next_when_the_next_job_changed_unseen(
        make_board: MakeBoard, consume_and_claim_next: ConsumeAndClaimNext) -> None:
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
    nxt = consume_and_claim_next(worker, held, "worker")
    assert nxt == second and nxt is not None and nxt.attempts == 1
    assert poster.state_of(first) is JobState.COMPLETE
    assert poster.find_owner(second) == "worker"
    assert requests.counts["Transaction"] == 3  # both at once (failed), consume, claim


@both_ways
def test_consume_and_claim_next_when_the_claim_changed_unseen(
        make_board: MakeBoard, consume_and_claim_next: ConsumeAndClaimNext) -> None:
    """The one transaction fails on the consumed claim's version: the consume then reads and
    checks the claim (still the caller's), consumes, and the next job is claimed."""
    poster, worker, (first, second) = _with_backlog(make_board, 2)
    held = worker.claim_next("worker")
    assert isinstance(worker, ZooKeeperJobBoard) and held == first and held is not None
    name = worker._index.lookup(first.uuid)
    assert name is not None
    worker._holds[name] = dataclasses.replace(worker._holds[name], claim_version=5)
    nxt = consume_and_claim_next(worker, held, "worker")
    assert nxt == second and poster.state_of(first) is JobState.COMPLETE
    assert poster.find_owner(second) == "worker"


@both_ways
def test_consume_and_claim_next_with_an_old_fence_claims_nothing(
        make_board: MakeBoard, consume_and_claim_next: ConsumeAndClaimNext) -> None:
    board = make_board()
    job, waiting = board.post("work"), board.post("waiting")
    old = board.claim(job, "owner-a")
    board.abandon(old, "owner-a")
    board.claim(job, "owner-a")  # this board remembers the newer claim
    with pytest.raises(errors.NotOwner):
        consume_and_claim_next(board, old, "owner-a")
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
