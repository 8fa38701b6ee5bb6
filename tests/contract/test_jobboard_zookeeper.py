"""The shared jobboard conformance suite against a real ZooKeeper, and what the ZooKeeper board
sends per job.

The suite runs twice: with real time (leases end by TTL or by the owner's session) and with an
injected fake clock (TTLs, delays and entity expiry then follow ``FakeClock.advance``).
"""

from __future__ import annotations

import collections
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kazoo.client import KazooClient

from legato import errors
from legato.jobboard.base import Job, JobBoard
from legato.jobboard.zookeeper import ZooKeeperJobBoard
from legato.states import JobPriority, JobState
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


# -- what the ZooKeeper board sends (counted through kazoo's public calls) ------------------------


class _Requests:
    """A ``KazooClient`` class for one board (``make_board(kazoo_client=requests.client)``)
    that counts the requests it sends, by kind: ``transaction``, ``sync``, ``list``, ``exists``,
    ``read`` (a job node) and ``claim read`` (a claim node, the reads the board avoids)."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self.paths: list[str] = []
        counts, paths = self.counts, self.paths

        class Counting(KazooClient):  # type: ignore[misc]
            def transaction(self) -> Any:
                counts["transaction"] += 1
                return super().transaction()

            def get_async(self, path: str, watch: Any = None) -> Any:
                counts["claim read" if "/claims/" in path else "read"] += 1
                paths.append(path)
                return super().get_async(path, watch=watch)

            def sync_async(self, path: str) -> Any:
                counts["sync"] += 1
                return super().sync_async(path)

            def get_children_async(self, *args: Any, **kwargs: Any) -> Any:
                counts["list"] += 1
                return super().get_children_async(*args, **kwargs)

            def exists_async(self, *args: Any, **kwargs: Any) -> Any:
                counts["exists"] += 1
                return super().exists_async(*args, **kwargs)

        self.client = Counting

    def reset(self) -> None:
        self.counts.clear()
        self.paths.clear()


def _with_backlog(make_board: MakeBoard, count: int, requests: _Requests | None = None,
                  ) -> tuple[JobBoard, JobBoard, list[Job]]:
    """A poster with ``count`` jobs, and a worker (counting its ``requests``) that has caught
    up with them."""
    poster = make_board()
    worker = make_board(kazoo_client=(requests or _Requests()).client)
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
    """The worker reads the next jobs ahead (pipelined, in the background): claim_next and
    consume send their transaction and nothing else (no claim node reads, listings, syncs)."""
    requests = _Requests()
    poster, worker, jobs = _with_backlog(make_board, 12, requests)
    first = worker.claim_next("worker")
    assert first == jobs[0]
    requests.reset()
    worker.consume(first, "worker")
    for expected in jobs[1:]:
        job = worker.claim_next("worker")
        assert job == expected and job is not None and job.attempts == 1
        worker.consume(job, "worker")
    assert requests.counts["transaction"] == 2 * 11 + 1
    assert requests.counts["read"] <= 11  # each job node read ahead at most once
    assert set(requests.counts) <= {"transaction", "read"}, requests.counts
    assert poster.job_count == 0


@both_ways
def test_consume_and_claim_next_is_one_transaction(
        make_board: MakeBoard, consume_and_claim_next: ConsumeAndClaimNext) -> None:
    requests = _Requests()
    poster, worker, jobs = _with_backlog(make_board, 6, requests)
    job = worker.claim_next("worker")
    requests.reset()
    for expected in jobs[1:]:
        assert job is not None
        job = consume_and_claim_next(worker, job, "worker")
        assert job == expected and job is not None and poster.find_owner(job) == "worker"
    assert requests.counts["transaction"] == 5
    assert set(requests.counts) <= {"transaction", "read"}, requests.counts
    assert job is not None and consume_and_claim_next(worker, job, "worker") is None
    assert poster.job_count == 0


def test_the_job_an_unread_consume_and_claim_next_claims_is_reserved(
        make_board: MakeBoard) -> None:
    """While the answer is outstanding, the board's other claims pass over the job it claims,
    and everything is still one transaction per claim."""
    requests = _Requests()
    poster, worker, (first, second, third) = _with_backlog(make_board, 3, requests)
    held = worker.claim_next("worker")
    assert held == first and held is not None
    requests.reset()
    pending = worker.consume_and_claim_next_async(held, "worker")
    assert worker.claim_next("other") == third
    assert pending.result() == second
    assert poster.find_owner(second) == "worker" and poster.find_owner(third) == "other"
    assert poster.state_of(first) is JobState.COMPLETE
    assert requests.counts["transaction"] == 2
    assert set(requests.counts) <= {"transaction", "read"}, requests.counts


def test_an_async_consume_and_claim_next_is_answered_before_later_calls(
        make_board: MakeBoard) -> None:
    """kazoo's connection thread sends the requests in order: a read sent after the
    transaction sees it committed."""
    _, worker, (first, second) = _with_backlog(make_board, 2)
    assert isinstance(worker, ZooKeeperJobBoard) and worker.CAPABILITIES.pipelined_sends
    held = worker.claim_next("worker")
    assert held == first and held is not None
    pending = worker.consume_and_claim_next_async(held, "worker")
    assert worker.state_of(first) is JobState.COMPLETE  # a read sent after it: answered after
    assert pending.result() == second


def test_async_consume_and_claim_next_calls_go_out_as_one_transaction(
        make_board: MakeBoard) -> None:
    """As many consumes sent without waiting as the board gathers (``gathered_sends``), each
    claiming the next job, are one ``multi``: it goes out when the last one joins it, and each
    call still gets its own answer."""
    requests = _Requests()
    gathered = ZooKeeperJobBoard.CAPABILITIES.gathered_sends
    assert gathered >= 2
    poster, worker, jobs = _with_backlog(make_board, 2 * gathered, requests)
    held = [worker.claim_next("worker") for _ in range(gathered)]
    assert held == jobs[:gathered]
    requests.reset()
    pending = [worker.consume_and_claim_next_async(job, "worker") for job in held if job]
    assert requests.counts["transaction"] == 1
    assert [p.result() for p in pending] == jobs[gathered:]
    assert requests.counts["transaction"] == 1
    assert set(requests.counts) <= {"transaction", "read"}, requests.counts
    assert all(poster.state_of(job) is JobState.COMPLETE for job in jobs[:gathered])
    assert all(poster.find_owner(job) == "worker" for job in jobs[gathered:])


def test_gathered_transactions_in_a_row_each_claim_from_data_read_ahead(
        make_board: MakeBoard) -> None:
    """The next jobs are read ahead when a gathered transaction goes out: batch after batch of
    consumes sent without waiting, each claiming the next job, stay one transaction each, and
    no claim node is read."""
    requests = _Requests()
    gathered = ZooKeeperJobBoard.CAPABILITIES.gathered_sends
    poster, worker, jobs = _with_backlog(make_board, 3 * gathered, requests)
    held: list[Job | None] = [worker.claim_next("worker") for _ in range(gathered)]
    assert held == jobs[:gathered]
    for batch in (1, 2):
        requests.reset()
        pending = [worker.consume_and_claim_next_async(job, "worker") for job in held if job]
        held = [p.result() for p in pending]
        assert held == jobs[batch * gathered:(batch + 1) * gathered]
        assert requests.counts["transaction"] == 1, requests.counts
        assert requests.counts["claim read"] == 0, requests.paths
    assert poster.job_count == gathered


def test_a_consume_finding_the_next_jobs_data_unread_reads_it_ahead_at_once(
        make_board: MakeBoard) -> None:
    """A consume sent without waiting whose next job's data is not known (posted elsewhere
    since the last reads ahead) has it read at once, not when the gathered transaction goes
    out: the claim that follows is that read and a transaction, without reading the claim
    node."""
    requests = _Requests()
    poster, worker, (first, _) = _with_backlog(make_board, 2, requests)
    held = worker.claim_next("worker")
    assert held == first and held is not None
    urgent = poster.post("urgent", priority=JobPriority.HIGH)
    assert next(iter(worker.iterjobs(ensure_fresh=True))).uuid == urgent.uuid
    requests.reset()
    pending = worker.consume_and_claim_next_async(held, "worker")
    assert pending.result() == urgent
    assert requests.counts["claim read"] == 0, requests.paths
    assert poster.state_of(first) is JobState.COMPLETE
    assert poster.find_owner(urgent) == "worker"


@pytest.mark.parametrize("stale", [0, -1], ids=["first", "last"])
def test_a_gathered_call_is_answered_alone_when_another_one_fails(
        make_board: MakeBoard, zookeeper_url: str, stale: int) -> None:
    """When one call's operations fail the ``multi``, the other calls', rolled back with them,
    are sent again alone: none claims a job it did not get, and every job is consumed."""
    gathered = ZooKeeperJobBoard.CAPABILITIES.gathered_sends
    poster, worker, jobs = _with_backlog(make_board, 2 * gathered)
    held = [worker.claim_next("worker") for _ in range(gathered)]
    assert held == jobs[:gathered] and held[stale] is not None
    # A write behind the board's back: the version it remembers for one claim is stale.
    hosts, _, path = zookeeper_url.removeprefix("zookeeper://").partition("/")
    client = KazooClient(hosts=hosts)
    client.start(timeout=10)
    try:
        claim = f"/{path.split('?', 1)[0]}/claims/"
        (name,) = [n for n in client.get_children(claim) if held[stale].uuid in n]
        data, _ = client.get(claim + name)
        client.set(claim + name, data)
    finally:
        client.stop()
        client.close()
    pending = [worker.consume_and_claim_next_async(job, "worker") for job in held if job]
    answers = [p.result() for p in pending]
    assert sorted(j.uuid for j in answers if j) == sorted(j.uuid for j in jobs[gathered:])
    assert all(poster.state_of(job) is JobState.COMPLETE for job in jobs[:gathered])
    assert all(poster.find_owner(job) == "worker" for job in jobs[gathered:])
    assert poster.job_count == gathered


def test_the_end_of_a_claim_reaches_other_boards_without_reads(make_board: MakeBoard) -> None:
    """Another board learns from its watch on jobs/, without reading the claim node, that an
    abandoned or released job is free, and claims it first."""
    requests = _Requests()
    poster, worker, (first, second) = _with_backlog(make_board, 2, requests)
    claimed = poster.claim_next("poster")
    assert claimed == first and claimed is not None
    poster.abandon(claimed, "poster")
    claimed = poster.claim(first, "poster")
    poster.release(claimed, "poster")
    third = poster.post("third")
    requests.reset()
    # Once the worker knows of the job posted last, it has had the events of everything above
    # (when it does not, it catches up: a sync, after which it has).
    assert worker.get(third.uuid) == third
    again = worker.claim_next("worker")
    assert again == first and again is not None and again.attempts == 2
    # Only the claim itself reads the nodes (its data changed, so it is not known).
    reads = [path for path in requests.paths if "/claims/" in path and first.uuid in path]
    assert len(reads) <= 1, requests.paths
    assert poster.state_of(second) is JobState.UNCLAIMED


@both_ways
def test_consume_and_claim_next_when_the_next_job_changed_meanwhile(
        make_board: MakeBoard, zookeeper_url: str,
        consume_and_claim_next: ConsumeAndClaimNext) -> None:
    """Another process rewrites the next job's node just before the one transaction (its event
    may or may not have come): the claim is still right, made once, and the consume happens."""
    requests = _Requests()
    poster, worker, (first, second) = _with_backlog(make_board, 2, requests)
    held = worker.claim_next("worker")
    assert held == first and held is not None
    with _raw_client(zookeeper_url) as (client, root):
        (name,) = [n for n in client.get_children(f"{root}/jobs") if second.uuid in n]
        data, _ = client.get(f"{root}/jobs/{name}")
        client.set(f"{root}/jobs/{name}", data)  # same data, a new version
    nxt = consume_and_claim_next(worker, held, "worker")
    assert nxt == second and nxt is not None and nxt.attempts == 1
    assert poster.state_of(first) is JobState.COMPLETE
    assert poster.find_owner(second) == "worker"


@both_ways
def test_consume_and_claim_next_when_the_claim_changed_meanwhile(
        make_board: MakeBoard, consume_and_claim_next: ConsumeAndClaimNext) -> None:
    """The claim was renewed through another board object, so the versions the worker
    remembers are out of date: the consume reads and checks the claim (still the caller's),
    consumes, and the next job is claimed."""
    poster, worker, (first, second) = _with_backlog(make_board, 2)
    held = worker.claim_next("worker")
    assert held == first and held is not None
    renewer = make_board()
    renewer.renew(renewer.get(first.uuid), "worker")
    nxt = consume_and_claim_next(worker, held, "worker")
    assert nxt == second and poster.state_of(first) is JobState.COMPLETE
    assert poster.find_owner(second) == "worker"


@contextlib.contextmanager
def _raw_client(zookeeper_url: str) -> Iterator[tuple[KazooClient, str]]:
    """A kazoo client of the test's own, and the board's path."""
    hosts, _, path = zookeeper_url.removeprefix("zookeeper://").partition("/")
    client = KazooClient(hosts=hosts)
    client.start(timeout=10)
    try:
        yield client, f"/{path.split('?', 1)[0]}"
    finally:
        client.stop()
        client.close()


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


def test_a_closed_boards_claims_are_free_at_once(make_board: MakeBoard,
                                                 zookeeper_url: str) -> None:
    """A claim ends with its owner's session; the watch on the claim node tells other boards,
    long before the claim's TTL.

    The test waits until the server has ended the owner's session (its claim node is gone)
    before it claims: kazoo 2.10's ``stop`` returns once the session's close is sent, without
    its answer, so the other board's next call could reach the server first (kazoo 2.11 waits
    for the answer). What is tested is the other board learning of the end, not when."""
    owner, other = make_board(), make_board()
    job = owner.post("work")
    assert owner.claim_next("owner-a", ttl=300) == job
    assert other.claim_next("owner-b") is None  # the other board knows it is claimed
    with _raw_client(zookeeper_url) as (client, path):
        [claim] = client.get_children(f"{path}/claims")
        ended = threading.Event()
        assert client.exists(f"{path}/claims/{claim}", watch=lambda _: ended.set())
        owner.close()
        assert ended.wait(30), "the owner's session did not end"
    again = other.claim_next("owner-b")
    assert again == job and again is not None and again.attempts == 2
