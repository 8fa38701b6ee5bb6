"""The jobboard conformance suite, shipped so every backend (yours too) is held to one contract.

Use it from a test module::

    import pytest
    from legato.testing.jobboard import JobBoardConformance, board_factory

    class TestMyBoard(JobBoardConformance):
        @pytest.fixture
        def make_board(self, my_url):
            with board_factory(my_url) as make:
                yield make

``make_board(**options)`` returns a connected board; every board one call site makes shares the
same storage. Options the suite passes: ``persistence``, ``ttl`` and, when ``fake_clock`` is True,
``clock``. Class attributes tune the suite to a backend:

* ``fake_clock``: the backend reads time only from an injected ``clock`` (leases, delays and
  entity expiry then move with ``FakeClock.advance`` and no real time passes).
* ``short_ttl``: the lease (seconds) used where real time must pass on other backends.
* ``time_slack``: how long past a lease the suite polls before it calls a backend wrong.
* ``counts_unread_delays``: ``job_counts`` on one board object counts as delayed a job another
  one posted with a delay (False: it counts as waiting until this object reads the job).

A backend whose server can lose its data without an error (it has an ``epoch``) also overrides
the ``lose_data`` fixture: a function that deletes everything the board stores, as a server
that lost its data would (a Redis persisting nothing, restarted). ``loss_found_by_every_call``
says whether every call (``claim_next`` and ``wait`` too) finds such a loss, or only calls about
a job that is gone (``Job.state``, ``wait``, the finishing calls) and ``post``.

The acceptance helpers below (``run_claim_race``, ``run_dead_owner``, ``run_renewal``,
``run_outage``) take a board URL, run real processes, and raise ``AssertionError`` when the board
breaks its contract.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

import pytest

from legato import errors
from legato import jobboard as jb
from legato.jobboard import base as jobboard_base
from legato.jobboard.base import POSTED, REMOVAL, Entity, Job, JobBoard
from legato.states import JobPriority, JobState
from legato.testing.clock import FakeClock
from legato.testing.jobboard_acceptance import (
    DeadOwnerResult,
    finishing_calls,
    run_claim_race,
    run_dead_owner,
    run_outage,
    run_renewal,
    until,
)
from legato.testing.jobboard_listing import ListingConformance

__all__ = [
    "DeadOwnerResult",
    "JobBoardConformance",
    "MakeBoard",
    "RedisWipeable",
    "board_factory",
    "redis_data_loser",
    "run_claim_race",
    "run_dead_owner",
    "run_outage",
    "run_renewal",
]

MakeBoard = Callable[..., JobBoard]


def _nested(depth: int) -> dict[str, Any]:
    """Details ``depth`` levels deep (the object itself is level 1), built without recursion."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@contextlib.contextmanager
def board_factory(url: str, **defaults: Any) -> Iterator[MakeBoard]:
    """A ``make_board(**options)`` for the suite: connected boards on ``url`` (``defaults``
    overridden by ``options``), every one closed on exit."""
    boards: list[JobBoard] = []

    def make(**options: Any) -> JobBoard:
        board = jb.connect(url, **{**defaults, **options})
        board.connect()
        boards.append(board)
        return board

    try:
        yield make
    finally:
        for board in boards:
            with contextlib.suppress(errors.LegatoError):
                board.close()


class JobBoardConformance(ListingConformance):
    """Contract tests every jobboard passes. Subclass it and provide a ``make_board`` fixture.
    The listing tests (``oldest_waiting``, ``iter_claimed``, ``iterjobs(after=...)``) come
    from ``ListingConformance``."""

    fake_clock: ClassVar[bool] = False
    short_ttl: ClassVar[float] = 0.5
    time_slack: ClassVar[float] = 5.0
    loss_found_by_every_call: ClassVar[bool] = True
    counts_unread_delays: ClassVar[bool] = True

    # -- fixtures and helpers -------------------------------------------------------------

    @pytest.fixture
    def clock(self) -> FakeClock | None:
        return FakeClock(time.time()) if self.fake_clock else None

    @pytest.fixture
    def board_options(self, clock: FakeClock | None) -> dict[str, Any]:
        return {"clock": clock} if clock is not None else {}

    @pytest.fixture
    def board(self, make_board: MakeBoard, board_options: dict[str, Any]) -> JobBoard:
        return make_board(**board_options)

    @pytest.fixture
    def other(self, make_board: MakeBoard, board_options: dict[str, Any]) -> JobBoard:
        """A second board object on the same storage (another conductor, say)."""
        return make_board(**board_options)

    def pass_time(self, clock: FakeClock | None, seconds: float,
                  check: Callable[[], bool]) -> None:
        """Let ``seconds`` pass (fake or real), then assert ``check`` comes true."""
        if clock is not None:
            clock.advance(seconds + 0.001)
            # Another board object may learn of a change a moment later (ZooKeeper's watches):
            # a condition to wait for, never a time.
            assert until(check, self.time_slack), (
                f"still not true after advancing the clock {seconds}s")
        else:
            assert until(check, seconds + self.time_slack), (
                f"still not true {seconds + self.time_slack}s later")

    def elapse(self, clock: FakeClock | None, seconds: float) -> None:
        """Let ``seconds`` pass: advance the fake clock, or let real time go by."""
        if clock is not None:
            clock.advance(seconds)
        else:
            end = time.monotonic() + seconds
            until(lambda: time.monotonic() >= end, seconds + 1.0)

    def ttl(self, clock: FakeClock | None) -> float:
        return 10.0 if clock is not None else self.short_ttl

    @pytest.fixture
    def lose_data(self) -> Callable[[], None] | None:
        """Deletes everything the board stores; None where data cannot vanish without an
        error (boards with no ``epoch``)."""
        return None

    # -- posting and reading --------------------------------------------------------------

    def test_post_and_get_round_trip(self, board: JobBoard, other: JobBoard) -> None:
        details = {"store": {"x": [1, 2.5, "three", None, True]}, "nested": {"a": {"b": 1}}}
        job = board.post("resize", details=details, priority="high")
        got = other.get(job.uuid)
        assert got == job
        assert (got.name, got.details, got.priority) == ("resize", details, JobPriority.HIGH)
        assert got.book_uuid is None and got.book_name is None
        assert got.attempts == 0
        assert abs(got.created_on.timestamp() - job.created_on.timestamp()) < 1.0
        assert got.state is JobState.UNCLAIMED
        assert other.find_owner(got) is None

    def test_get_unknown_raises_not_found(self, board: JobBoard) -> None:
        with pytest.raises(errors.NotFound):
            board.get("00000000-0000-0000-0000-000000000000")

    def test_job_count_and_iterjobs(self, board: JobBoard, other: JobBoard) -> None:
        assert board.job_count == 0
        assert list(board.iterjobs()) == []
        jobs = [board.post(f"job-{i}") for i in range(3)]
        assert other.job_count == 3
        assert list(other.iterjobs(ensure_fresh=True)) == jobs
        claimed = other.claim(jobs[0], "owner-a")
        other.consume(claimed, "owner-a")
        assert board.job_count == 2
        claimed = board.claim(jobs[1], "owner-a")
        board.trash(claimed, "owner-a", reason="broken")
        assert other.job_count == 1
        assert [j.uuid for j in other.iterjobs(ensure_fresh=True)] == [jobs[2].uuid]

    def test_job_counts_by_state(self, board: JobBoard, other: JobBoard,
                                 clock: FakeClock | None) -> None:
        """``job_counts``: waiting, delayed, claimed and trashed, as another board object sees
        them; a lapsed claim counts as waiting again."""
        assert other.job_counts() == jobboard_base.JobCounts(0, 0, 0, 0)
        ttl = self.ttl(clock)
        a, b, c, _ = (board.post(n) for n in "abcd")
        board.post("later", delay=3600)
        board.claim(a, "owner-a", ttl=60)
        board.trash(board.claim(b, "owner-a"), "owner-a", reason="broken")
        board.claim(c, "owner-a", ttl=ttl)
        self.pass_time(clock, 0, lambda: self._counts_are(other.job_counts(), 1, 2))
        # A second more than the TTL: ZooKeeper measures claims on the server's clock, which a
        # board estimates without ever running ahead of it (a fake clock does not move with the
        # real time the calls above took).
        self.pass_time(clock, ttl + 1, lambda: self._counts_are(other.job_counts(), 2, 1))
        assert board.job_counts().delayed == 1

    def _counts_are(self, counts: jobboard_base.JobCounts, waiting: int, claimed: int) -> bool:
        """``counts`` with ``waiting`` claimable jobs, one delayed, ``claimed`` and one trashed;
        a board that does not count delays it has not read yet may count the delayed job as
        waiting, until it reads it."""
        expected = jobboard_base.JobCounts(waiting, 1, claimed, 1)
        if counts == expected or self.counts_unread_delays:
            return counts == expected
        return counts == jobboard_base.JobCounts(waiting + 1, 0, claimed, 1)

    def test_counts_are_job_counts(self, board: JobBoard) -> None:
        board.post("a")
        board.post("later", delay=3600)
        assert board.counts() == dataclasses.asdict(board.job_counts())
        assert sum(board.counts().values()) == 2

    def test_iterjobs_only_unclaimed(self, board: JobBoard, other: JobBoard) -> None:
        a, b, c = (board.post(n) for n in "abc")
        board.claim(b, "owner-a")
        board.post("later", delay=3600)
        assert list(other.iterjobs(only_unclaimed=True, ensure_fresh=True)) == [a, c]
        assert len(list(other.iterjobs(ensure_fresh=True))) == 4

    def test_priority_order_higher_first_then_oldest(self, board: JobBoard,
                                                     other: JobBoard) -> None:
        rng = random.Random(7)
        plan = [p for p in JobPriority for _ in range(4)]
        rng.shuffle(plan)
        posted = [(int(p), i, board.post(f"{p.name}-{i}", priority=p).uuid)
                  for i, p in enumerate(plan)]
        expected = [uuid for _, _, uuid in sorted(posted, key=lambda t: (-t[0], t[1]))]
        assert [j.uuid for j in other.iterjobs(ensure_fresh=True)] == expected
        claimed = []
        while (job := other.claim_next("owner-a")) is not None:
            claimed.append(job.uuid)
        assert claimed == expected

    def test_post_rejects_bad_arguments(self, board: JobBoard) -> None:
        with pytest.raises(ValueError):
            board.post("")
        with pytest.raises(ValueError):
            board.post("x", delay=-1)
        with pytest.raises(TypeError):
            board.post("x", details=["not", "a", "dict"])  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            board.post("x", priority="urgent")
        assert board.job_count == 0

    @pytest.mark.parametrize(("args", "field"), [
        (("a\x00b",), "name"),
        (("x", None, {"k": "a\x00b"}), "details['k']"),
        (("x", None, {"k\x00": 1}), "details"),
        (("x", None, {"k": [1, {"deep": ["\x00"]}]}), "details['k'][1]['deep'][0]"),
    ])
    def test_post_refuses_nul_characters(self, board: JobBoard, args: tuple[Any, ...],
                                         field: str) -> None:
        """No board stores a NUL (U+0000) character (PostgreSQL cannot): ``post`` refuses it
        with a ``ValueError`` naming where it is, and nothing is posted."""
        with pytest.raises(ValueError, match="NUL") as info:
            board.post(*args)
        assert field in str(info.value)
        assert board.job_count == 0

    def test_post_refuses_a_nul_in_the_book_name(self, board: JobBoard) -> None:
        from legato.persistence.models import LogBook

        with pytest.raises(ValueError, match="book name"):
            board.post("x", LogBook("b\x00"))
        assert board.job_count == 0

    def test_other_control_characters_round_trip(self, board: JobBoard,
                                                 other: JobBoard) -> None:
        name, details = "tab\there\x01\x1b[31m\n", {"k\x7f": ["\r\x1f"]}
        job = board.post(name, details=details)
        got = other.get(job.uuid)
        assert (got.name, got.details) == (name, details)

    def test_post_refuses_details_too_deep_or_too_large(self, board: JobBoard) -> None:
        """``post`` refuses details nested deeper than ``MAX_DETAILS_DEPTH`` (975 levels made
        a raw ``RecursionError`` once) or larger than ``MAX_DETAILS_BYTES``, naming the
        limit; details at the limits are posted."""
        limit = jobboard_base.MAX_DETAILS_DEPTH
        for depth in (limit + 1, 975, 5000):
            with pytest.raises(errors.JobTooLarge, match=f"{limit} levels"):
                board.post("deep", details=_nested(depth))
        with pytest.raises(ValueError, match=str(jobboard_base.MAX_DETAILS_BYTES)):
            board.post("big", details={"blob": "x" * jobboard_base.MAX_DETAILS_BYTES})
        assert board.job_count == 0
        at_limit = board.post("deep enough", details=_nested(limit))
        assert board.get(at_limit.uuid).details == _nested(limit)

    # -- claims ----------------------------------------------------------------------------

    def test_claim_consume(self, board: JobBoard, other: JobBoard) -> None:
        job = board.post("work")
        claimed = other.claim(job, "owner-a")
        assert claimed == job and claimed.fence is not None
        assert claimed.attempts == 1
        assert job.state is JobState.CLAIMED
        assert board.find_owner(job) == "owner-a"
        other.consume(claimed, "owner-a")
        assert board.state_of(job) is JobState.COMPLETE
        with pytest.raises(errors.NotFound):
            board.get(job.uuid)

    def test_claim_claimed_job_is_unclaimable(self, board: JobBoard, other: JobBoard) -> None:
        job = board.post("work")
        board.claim(job, "owner-a")
        with pytest.raises(errors.UnclaimableJob):
            other.claim(job, "owner-b")
        with pytest.raises(errors.UnclaimableJob):
            board.claim(job, "owner-a")  # a second claim by the same owner is no different
        assert other.claim_next("owner-b") is None

    def test_claim_gone_job_is_not_found(self, board: JobBoard, other: JobBoard) -> None:
        job = board.post("work")
        board.consume(board.claim(job, "owner-a"), "owner-a")
        with pytest.raises(errors.NotFound):
            other.claim(job, "owner-b")
        with pytest.raises(errors.NotFound):
            other.find_owner(job)

    def test_claim_next_empty_and_skips_claimed(self, board: JobBoard, other: JobBoard) -> None:
        assert board.claim_next("owner-a") is None
        first, second = board.post("first"), board.post("second")
        got = other.claim_next("owner-a")
        assert got == first and got is not None and got.fence is not None
        assert board.claim_next("owner-b") == second
        assert other.claim_next("owner-c") is None

    def test_consume_and_claim_next(self, board: JobBoard, other: JobBoard) -> None:
        first, second, third = board.post("first"), board.post("second"), board.post("third")
        held = other.claim_next("owner-a")
        assert held == first and held is not None
        assert other.claim(second, "owner-b") == second  # someone else holds the second
        nxt = other.consume_and_claim_next(held, "owner-a")
        assert nxt == third and nxt is not None
        assert nxt.fence is not None and nxt.attempts == 1
        assert board.state_of(first) is JobState.COMPLETE
        assert board.find_owner(third) == "owner-a"
        assert other.consume_and_claim_next(nxt, "owner-a") is None  # nothing left to claim
        assert board.job_count == 1 and board.find_owner(second) == "owner-b"

    def test_consume_and_claim_next_checks_the_claim_first(self, board: JobBoard,
                                                           other: JobBoard) -> None:
        job, waiting = board.post("work"), board.post("waiting")
        claimed = board.claim(job, "owner-a")
        with pytest.raises(errors.NotOwner):
            other.consume_and_claim_next(claimed, "owner-b")
        board.abandon(claimed, "owner-a")
        again = board.claim(job, "owner-a")
        with pytest.raises(errors.NotOwner):  # the first claim's fence is out of date
            other.consume_and_claim_next(claimed, "owner-a")
        assert board.state_of(waiting) is JobState.UNCLAIMED  # nothing was claimed
        other.consume(again, "owner-a")
        with pytest.raises(errors.NotFound):
            other.consume_and_claim_next(again, "owner-a")
        assert board.state_of(waiting) is JobState.UNCLAIMED

    def test_consume_and_claim_next_skips_delayed_jobs(self, board: JobBoard,
                                                       other: JobBoard) -> None:
        job = board.post("work")
        board.post("later", delay=60)
        low = board.post("low", priority=JobPriority.LOW)
        high = board.post("high", priority=JobPriority.HIGH)
        held = other.claim(job, "owner-a")
        assert other.consume_and_claim_next(held, "owner-a") == high
        following = other.claim_next("owner-a")
        assert following == low

    def test_consume_and_claim_next_async(self, board: JobBoard, other: JobBoard) -> None:
        first, second, third = board.post("first"), board.post("second"), board.post("third")
        held = other.claim_next("owner-a")
        assert held == first and held is not None
        pending = other.consume_and_claim_next_async(held, "owner-a")
        # The board stays usable while the answer is outstanding.
        assert other.claim_next("owner-b") is not None
        answers: list[Job | None] = []
        reader = threading.Thread(target=lambda: answers.append(pending.result()))
        reader.start()
        reader.join(30)
        assert len(answers) == 1 and answers[0] is not None
        assert answers[0] in (second, third)
        assert pending.result() is answers[0]  # read once, the same answer every time
        assert answers[0].fence is not None and answers[0].attempts == 1
        assert board.find_owner(answers[0]) == "owner-a"
        assert board.state_of(first) is JobState.COMPLETE
        last = other.consume_and_claim_next_async(answers[0], "owner-a")
        assert last.result() is None  # the other job is held by owner-b
        assert board.job_count == 1

    def test_consume_and_claim_next_async_errors(self, board: JobBoard, other: JobBoard) -> None:
        job, waiting = board.post("work"), board.post("waiting")
        claimed = board.claim(job, "owner-a")
        with pytest.raises(ValueError):
            other.consume_and_claim_next_async(claimed, " ")
        with pytest.raises(ValueError):
            other.consume_and_claim_next_async(claimed, "owner-a", ttl=0)
        refused = other.consume_and_claim_next_async(claimed, "owner-b")
        for _ in range(2):
            with pytest.raises(errors.NotOwner):
                refused.result()
        assert board.state_of(waiting) is JobState.UNCLAIMED  # nothing was claimed
        board.consume(claimed, "owner-a")
        with pytest.raises(errors.NotFound):
            other.consume_and_claim_next_async(claimed, "owner-a").result()
        assert board.state_of(waiting) is JobState.UNCLAIMED

    def test_release_hands_a_claim_back_uncounted(self, board: JobBoard,
                                                  other: JobBoard) -> None:
        job, later = board.post("work"), board.post("later")
        first = board.claim(job, "owner-a")
        board.abandon(first, "owner-a", reason="storage down")
        second = board.claim(job, "owner-a")
        assert second.attempts == 2
        board.release(second, "owner-a")
        assert board.state_of(job) is JobState.UNCLAIMED
        record = other.get(job.uuid)
        assert record.attempts == 1
        assert record.reason == "storage down"
        again = other.claim_next("owner-b")  # claimable at once, still first in order
        assert again == job and again is not None
        assert again.attempts == 2
        assert again.fence is not None and second.fence is not None
        assert again.fence > second.fence
        with pytest.raises(errors.NotOwner):  # the released claim is over
            board.release(second, "owner-a")
        other.consume(again, "owner-b")
        assert board.state_of(later) is JobState.UNCLAIMED

    def test_exactly_one_concurrent_claimer_wins(self, board: JobBoard, other: JobBoard) -> None:
        job = board.post("contested")
        threads_n = 8
        barrier = threading.Barrier(threads_n)
        outcomes: list[str] = []
        lock = threading.Lock()

        def contend(i: int) -> None:
            target = board if i % 2 else other
            barrier.wait()
            try:
                target.claim(job, f"owner-{i}")
                result = "won"
            except errors.UnclaimableJob:
                result = "lost"
            with lock:
                outcomes.append(result)

        threads = [threading.Thread(target=contend, args=(i,)) for i in range(threads_n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(outcomes) == ["lost"] * (threads_n - 1) + ["won"]

    def test_owner_checks(self, board: JobBoard, other: JobBoard) -> None:
        job = board.post("work")
        mine = board.claim(job, "owner-a")
        theirs = other.get(job.uuid)
        for call in finishing_calls(other, theirs, "owner-b"):
            with pytest.raises(errors.NotOwner) as info:
                call()
            assert info.value.actual_owner == "owner-a"
            assert info.value.job_uuid == job.uuid
            assert isinstance(info.value, errors.JobFailure)
        assert board.find_owner(job) == "owner-a"
        board.consume(mine, "owner-a")

    def test_unclaimed_job_cannot_be_consumed(self, board: JobBoard) -> None:
        job = board.post("work")
        with pytest.raises(errors.NotOwner) as info:
            board.consume(job, "owner-a")
        assert info.value.actual_owner is None
        assert board.job_count == 1

    def test_operations_on_gone_job_raise_not_found(self, board: JobBoard,
                                                    other: JobBoard) -> None:
        job = board.post("work")
        claimed = board.claim(job, "owner-a")
        board.trash(claimed, "owner-a", reason="x")
        for call in finishing_calls(other, claimed, "owner-a"):
            with pytest.raises(errors.NotFound):
                call()

    def test_owner_without_fence_may_finish(self, board: JobBoard, other: JobBoard) -> None:
        """A ``Job`` read from the board (no fence) is checked by owner only (operators' tools)."""
        job = board.post("work")
        board.claim(job, "owner-a")
        unfenced = other.get(job.uuid)
        assert unfenced.fence is None
        other.consume(unfenced, "owner-a")
        assert board.job_count == 0

    def test_abandon_makes_job_claimable_and_counts_attempts(self, board: JobBoard,
                                                            other: JobBoard) -> None:
        job = board.post("work")
        first = board.claim(job, "owner-a")
        board.abandon(first, "owner-a", reason="storage down")
        assert job.state is JobState.UNCLAIMED
        assert other.get(job.uuid).reason == "storage down"
        second = other.claim(job, "owner-b")
        assert second.attempts == 2
        assert other.get(job.uuid).attempts == 2
        assert second.fence is not None and first.fence is not None
        assert second.fence > first.fence
        other.consume(second, "owner-b")

    def test_abandoned_job_keeps_its_place_in_order(self, board: JobBoard,
                                                    other: JobBoard) -> None:
        first, second = board.post("first"), board.post("second")
        claimed = board.claim_next("owner-a")
        assert claimed == first and claimed is not None
        board.abandon(claimed, "owner-a")
        again = board.claim_next("owner-b")
        assert again == first, f"got {again!r}"  # still the oldest post
        assert board.claim_next("owner-b") == second

    def test_fencing_rejects_older_claim_of_same_owner(self, board: JobBoard) -> None:
        job = board.post("work")
        old = board.claim(job, "owner-a")
        board.abandon(old, "owner-a")
        new = board.claim(job, "owner-a")
        assert new.fence is not None and old.fence is not None and new.fence > old.fence
        calls: list[Callable[[], object]] = [
            *finishing_calls(board, old, "owner-a"),
            lambda: board.consume_and_claim_next(old, "owner-a")]
        for call in calls:
            with pytest.raises(errors.NotOwner) as info:
                call()
            assert info.value.actual_owner == "owner-a"
            # The refusal names both fences: the caller's and the job's current one.
            assert (info.value.fence, info.value.actual_fence) == (old.fence, new.fence)
            assert f"fence {old.fence}" in str(info.value)
            assert f"fence {new.fence}" in str(info.value)
        board.renew(new, "owner-a")
        board.consume(new, "owner-a")

    def test_lease_expires_and_fence_grows(self, board: JobBoard, other: JobBoard,
                                          clock: FakeClock | None) -> None:
        ttl = self.ttl(clock)
        job = board.post("work")
        old = board.claim(job, "owner-a", ttl=ttl)
        with pytest.raises(errors.UnclaimableJob):
            other.claim(job, "owner-b")
        self.pass_time(clock, ttl, lambda: other.find_owner(job) is None)
        assert other.get(job.uuid).state is JobState.UNCLAIMED
        assert job in list(other.iterjobs(only_unclaimed=True, ensure_fresh=True))
        new = other.claim(job, "owner-b", ttl=60)
        assert new.attempts == 2
        assert new.fence is not None and old.fence is not None and new.fence > old.fence
        for call in finishing_calls(board, old, "owner-a"):
            with pytest.raises(errors.NotOwner) as info:
                call()
            assert info.value.actual_owner == "owner-b"
            assert (info.value.fence, info.value.actual_fence) == (old.fence, new.fence)
        other.consume(new, "owner-b")

    def test_expired_claim_is_found_by_claim_next(self, board: JobBoard, other: JobBoard,
                                                 clock: FakeClock | None) -> None:
        ttl = self.ttl(clock)
        job = board.post("work")
        assert board.claim_next("owner-a", ttl=ttl) == job
        assert other.claim_next("owner-b") is None
        self.pass_time(clock, ttl, lambda: other.find_owner(job) is None)
        again = other.claim_next("owner-b")
        assert again == job and again is not None and again.attempts == 2

    def test_renew_keeps_claim(self, board: JobBoard, other: JobBoard,
                               clock: FakeClock | None) -> None:
        ttl = self.ttl(clock)
        job = board.post("work")
        claimed = board.claim(job, "owner-a", ttl=ttl)
        board.renew(claimed, "owner-a", ttl=60)
        self.elapse(clock, ttl * 1.5)
        assert other.find_owner(job) == "owner-a"
        with pytest.raises(errors.UnclaimableJob):
            other.claim(job, "owner-b")
        board.consume(claimed, "owner-a")

    def test_a_renewal_shows_in_last_modified(self, board: JobBoard, other: JobBoard,
                                             clock: FakeClock | None) -> None:
        """A claimed job's ``last_modified`` is its claim's last write (the claim or its last
        renewal), so ``lease_expires - last_modified`` is the lease's length as another board
        reads it (operators' tools tell a lease about to lapse by it)."""
        job = board.post("work")
        claimed = board.claim(job, "owner-a", ttl=60)
        self.elapse(clock, self.ttl(clock))
        board.renew(claimed, "owner-a", ttl=90)
        for seen in (other.get(job.uuid), next(iter(other.iterjobs(ensure_fresh=True)))):
            record = seen.record
            assert record.lease_expires is not None and record.last_modified is not None
            assert abs(record.lease_expires - record.last_modified - 90) < self.ttl(clock) / 2
        board.consume(claimed, "owner-a")

    def test_delay_on_post(self, board: JobBoard, other: JobBoard,
                           clock: FakeClock | None) -> None:
        delay = self.ttl(clock)
        job = board.post("later", delay=delay)
        assert board.job_count == 1
        assert list(other.iterjobs(only_unclaimed=True, ensure_fresh=True)) == []
        assert other.claim_next("owner-a") is None
        with pytest.raises(errors.UnclaimableJob):
            other.claim(job, "owner-a")
        self.pass_time(clock, delay,
                       lambda: job in list(other.iterjobs(only_unclaimed=True, ensure_fresh=True)))
        assert other.claim_next("owner-a") == job

    def test_delay_on_abandon(self, board: JobBoard, other: JobBoard,
                              clock: FakeClock | None) -> None:
        delay = self.ttl(clock)
        job = board.post("work")
        claimed = board.claim(job, "owner-a")
        board.abandon(claimed, "owner-a", delay=delay, reason="back off")
        assert other.claim_next("owner-b") is None
        with pytest.raises(errors.UnclaimableJob):
            other.claim(job, "owner-b")
        self.pass_time(clock, delay,
                       lambda: job in list(other.iterjobs(only_unclaimed=True, ensure_fresh=True)))
        again = other.claim_next("owner-b")
        assert again == job and again is not None and again.attempts == 2

    def test_claim_rejects_bad_arguments(self, board: JobBoard) -> None:
        job = board.post("work")
        for bad in ("", "   "):
            with pytest.raises(ValueError):
                board.claim(job, bad)
            with pytest.raises(ValueError):
                board.claim_next(bad)
        for ttl in (0, -1):
            with pytest.raises(ValueError):
                board.claim(job, "owner-a", ttl=ttl)
        claimed = board.claim(job, "owner-a")
        with pytest.raises(ValueError):
            board.abandon(claimed, "owner-a", delay=-1)
        with pytest.raises(ValueError):
            board.renew(claimed, "owner-a", ttl=-1)
        with pytest.raises(ValueError):
            board.consume(claimed, "")
        assert board.find_owner(job) == "owner-a"

    # -- cancel --------------------------------------------------------------------------------

    def test_cancel_trashes_a_waiting_or_delayed_job_at_once(self, board: JobBoard,
                                                            other: JobBoard) -> None:
        waiting, later, kept = board.post("waiting"), board.post("later", delay=600), board.post(
            "kept")
        assert other.cancel(other.get(waiting.uuid), "ops", reason="not needed") is True
        assert other.cancel(later, "ops") is True
        trashed = {job.uuid: job.reason for job in board.iter_trash()}
        assert set(trashed) == {waiting.uuid, later.uuid}
        assert trashed[waiting.uuid] is not None
        assert trashed[waiting.uuid].startswith("cancelled by ops at ")
        assert trashed[waiting.uuid].endswith(": not needed")
        assert waiting.state is JobState.COMPLETE
        assert list(board.iterjobs(ensure_fresh=True)) == [kept]
        assert board.claim_next("owner-a") == kept
        with pytest.raises(errors.NotFound):
            board.cancel(waiting, "ops")

    def test_cancel_of_a_claimed_job_is_told_to_its_owner(self, board: JobBoard,
                                                          other: JobBoard) -> None:
        job = board.post("work")
        claimed = board.claim(job, "owner-a", ttl=60)
        assert board.renew(claimed, "owner-a", ttl=60) is None
        assert other.cancel(job, "ops", reason="wrong input") is False
        assert other.find_owner(job) == "owner-a"  # still running, still on the board
        mark = board.renew(claimed, "owner-a", ttl=60)
        assert mark is not None and mark.startswith("cancelled by ops at ")
        assert mark.endswith(": wrong input")
        assert other.get(job.uuid).cancel_requested == mark
        board.trash(claimed, "owner-a", reason=mark)
        assert [(j.uuid, j.reason) for j in other.iter_trash()] == [(job.uuid, mark)]

    def test_cancel_mark_survives_abandon_and_reaches_the_next_claim(
            self, board: JobBoard, other: JobBoard) -> None:
        job = board.post("work")
        claimed = board.claim(job, "owner-a", ttl=60)
        assert other.cancel(job, "ops", reason="stop it") is False
        board.abandon(claimed, "owner-a", reason="conductor stopping")
        again = other.claim_next("owner-b")
        assert again == job and again is not None
        assert again.cancel_requested is not None
        assert again.cancel_requested.endswith(": stop it")

    def test_cancel_after_the_claim_lapsed_trashes(self, board: JobBoard, other: JobBoard,
                                                  clock: FakeClock | None) -> None:
        ttl = self.ttl(clock)
        job = board.post("work")
        board.claim(job, "owner-a", ttl=ttl)
        assert other.find_owner(job) == "owner-a"
        self.pass_time(clock, ttl, lambda: other.find_owner(job) is None)
        assert other.cancel(job, "ops") is True
        assert [j.uuid for j in board.iter_trash()] == [job.uuid]
        assert other.claim_next("owner-b") is None

    # -- trash, waiting, notifications, books --------------------------------------------------

    def test_iter_trash_newest_first_with_reason(self, board: JobBoard, other: JobBoard,
                                                 clock: FakeClock | None) -> None:
        assert list(board.iter_trash()) == []
        first, second, kept = board.post("first"), board.post("second"), board.post("kept")
        board.trash(board.claim(first, "owner-a"), "owner-a", reason="bad factory")
        self.elapse(clock, 0.05)  # trash times must differ for the order to mean anything
        board.trash(board.claim(second, "owner-a"), "owner-a", reason="too many attempts")
        trashed = list(other.iter_trash())
        assert trashed == [second, first]
        assert [j.reason for j in trashed] == ["too many attempts", "bad factory"]
        assert first.state is JobState.COMPLETE
        assert list(other.iterjobs(ensure_fresh=True)) == [kept]

    def test_requeue_posts_once_and_takes_the_job_out_of_the_trash(
            self, board: JobBoard, other: JobBoard) -> None:
        job = board.post("requeued", details={"store": {"x": 1}}, priority=JobPriority.HIGH)
        board.trash(board.claim(job, "owner-a"), "owner-a", reason="bad factory")
        (trashed,) = other.iter_trash()
        new = other.requeue(trashed)
        assert new.uuid != job.uuid and new.name == "requeued"
        assert new.details == {"store": {"x": 1}} and new.priority is JobPriority.HIGH
        assert list(board.iter_trash()) == []
        with pytest.raises(errors.NotFound):
            board.requeue(trashed)  # requeued already: nothing more is posted
        assert [j.uuid for j in board.iterjobs(ensure_fresh=True)] == [new.uuid]
        claimed = board.claim_next("owner-b")
        assert claimed is not None and claimed.uuid == new.uuid
        assert claimed.attempts == 1 and claimed.reason is None

    def test_requeue_races_post_the_job_once(self, board: JobBoard, other: JobBoard) -> None:
        job = board.post("raced")
        board.trash(board.claim(job, "owner-a"), "owner-a", reason="why")
        (trashed,) = board.iter_trash()
        barrier = threading.Barrier(2)
        outcomes: list[str] = []

        def requeue(on: JobBoard) -> None:
            barrier.wait(10)
            try:
                on.requeue(trashed)
                outcomes.append("posted")
            except errors.NotFound:
                outcomes.append("not found")

        threads = [threading.Thread(target=requeue, args=(b,)) for b in (board, other)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sorted(outcomes) == ["not found", "posted"]
        assert board.job_count == 1 and list(other.iter_trash()) == []

    def test_requeue_of_a_job_not_in_the_trash_is_not_found(self, board: JobBoard) -> None:
        job = board.post("waiting")
        with pytest.raises(errors.NotFound):
            board.requeue(job)
        assert board.job_count == 1

    def test_wait_wakes_on_post_from_another_board(self, board: JobBoard,
                                                   other: JobBoard) -> None:
        assert board.wait(timeout=0.1) is False
        result: list[bool] = []
        started = threading.Event()

        def waiter() -> None:
            started.set()
            result.append(board.wait(timeout=30))

        thread = threading.Thread(target=waiter)
        thread.start()
        started.wait(5)
        other.post("wake up")
        thread.join(35)
        assert result == [True]
        assert board.wait(timeout=0) is True

    def test_wait_false_when_only_claimed_jobs(self, board: JobBoard) -> None:
        job = board.post("work")
        board.claim(job, "owner-a")
        assert board.wait(timeout=0.2) is False

    def test_job_wait(self, board: JobBoard, other: JobBoard) -> None:
        job = board.post("work")
        assert job.wait(timeout=0.1) is False
        claimed = other.claim(job, "owner-a")
        done = threading.Event()

        def finish() -> None:
            done.wait(5)
            other.consume(claimed, "owner-a")

        thread = threading.Thread(target=finish)
        thread.start()
        done.set()
        assert job.wait(timeout=30) is True
        thread.join(10)
        assert job.state is JobState.COMPLETE

    def test_consumed_and_trashed_jobs_are_complete(self, board: JobBoard,
                                                    other: JobBoard) -> None:
        consumed, trashed = board.post("consumed"), board.post("trashed")
        other.consume(other.claim(consumed, "owner-a"), "owner-a")
        other.trash(other.claim(trashed, "owner-a"), "owner-a")
        for job in (consumed, trashed):
            assert job.state is JobState.COMPLETE
            assert other.state_of(job) is JobState.COMPLETE
            assert job.wait(timeout=0) is True
            with pytest.raises(errors.NotFound):
                board.get(job.uuid)

    def test_a_board_that_lost_its_data_says_so(
            self, make_board: MakeBoard, board_options: dict[str, Any],
            lose_data: Callable[[], None] | None) -> None:
        producer, claimer, waiter, poster = (make_board(**board_options) for _ in range(4))
        if lose_data is None:  # data that cannot vanish without an error needs no epoch
            assert producer.epoch is None and claimer.epoch is None
            return
        assert producer.epoch is not None and claimer.epoch == producer.epoch
        jobs = [producer.post(f"job-{i}") for i in range(3)]
        held = claimer.claim(jobs[0], "owner-a")
        lose_data()
        with pytest.raises(errors.BoardDataLost):  # the first post after the loss
            poster.post("after the loss")
        assert poster.state_of(poster.post("again")) is JobState.UNCLAIMED
        with pytest.raises(errors.BoardDataLost):
            _ = jobs[1].state
        if self.loss_found_by_every_call:
            with pytest.raises(errors.BoardDataLost):
                claimer.claim_next("owner-b")
            with pytest.raises(errors.BoardDataLost):
                waiter.wait(timeout=0.1)
        # Each board said it once and works on; the lost jobs stay lost, never COMPLETE.
        for job in jobs:
            with pytest.raises(errors.BoardDataLost, match=job.uuid):
                _ = job.state
            with pytest.raises(errors.BoardDataLost):
                job.wait(timeout=0)
        with pytest.raises(errors.BoardDataLost):
            claimer.consume(held, "owner-a")
        again = claimer.claim_next("owner-b")
        assert again is not None and again.name == "again"
        claimer.consume(again, "owner-b")
        assert claimer.claim_next("owner-b") is None
        assert waiter.wait(timeout=0.05) is False
        later = producer.post("later")
        assert producer.state_of(later) is JobState.UNCLAIMED
        claimed = claimer.claim_next("owner-b")
        assert claimed == later
        claimer.consume(claimed, "owner-b")
        assert producer.state_of(later) is JobState.COMPLETE

    def test_notifications(self, board: JobBoard) -> None:
        seen: list[tuple[str, str]] = []
        board.notifier.register(POSTED, lambda e, d: seen.append((e, d["job"].uuid)))
        board.notifier.register(REMOVAL, lambda e, d: seen.append((e, d["job"].uuid)))
        a, b = board.post("a"), board.post("b")
        board.consume(board.claim(a, "owner-a"), "owner-a")
        board.trash(board.claim(b, "owner-a"), "owner-a")
        assert seen == [(POSTED, a.uuid), (POSTED, b.uuid), (REMOVAL, a.uuid), (REMOVAL, b.uuid)]

    def test_book_loads_lazily_from_persistence(self, make_board: MakeBoard,
                                                board_options: dict[str, Any]) -> None:
        from legato.persistence.memory import MemoryPersistence
        from legato.persistence.models import LogBook

        persistence = MemoryPersistence()
        book = LogBook(name="book-1", meta={"k": "v"})
        persistence.save_logbook(book)
        poster = make_board(persistence=persistence, **board_options)
        reader = make_board(persistence=persistence, **board_options)
        bare = make_board(**board_options)
        job = poster.post("work", book)
        assert job.book_uuid == book.uuid and job.book_name == "book-1"
        got = reader.get(job.uuid)
        assert (got.book_uuid, got.book_name) == (book.uuid, "book-1")
        loaded = got.book
        assert loaded is not None and loaded.uuid == book.uuid and loaded.meta == {"k": "v"}
        assert got.book is loaded  # loaded once
        with pytest.raises(errors.JobFailure):
            _ = bare.get(job.uuid).book
        assert poster.post("no book").book is None

    # -- entities ----------------------------------------------------------------------------

    def test_entities(self, board: JobBoard, other: JobBoard) -> None:
        worker = Entity("conductor", "worker-1@host:1", {"host": "host", "pid": 1})
        board.register_entity(worker)
        board.register_entity(Entity("watcher", "w@host:2"))
        assert list(other.iter_entities("conductor")) == [worker]
        assert {e.name for e in other.iter_entities()} == {"worker-1@host:1", "w@host:2"}
        board.register_entity(worker)  # registering again refreshes, never duplicates
        assert list(other.iter_entities("conductor")) == [worker]
        board.unregister_entity(worker)
        board.unregister_entity(worker)  # no error when absent
        assert list(other.iter_entities("conductor")) == []

    def test_entity_lapses_after_ttl(self, board: JobBoard, other: JobBoard,
                                     clock: FakeClock | None) -> None:
        ttl = self.ttl(clock)
        lapsing = Entity("conductor", "lapsing@host:1")
        lasting = Entity("conductor", "lasting@host:2")
        board.register_entity(lapsing, ttl=ttl)
        board.register_entity(lasting, ttl=3600)
        assert lapsing in list(other.iter_entities("conductor"))
        self.pass_time(clock, ttl, lambda: lapsing not in list(other.iter_entities()))
        assert list(other.iter_entities("conductor")) == [lasting]
        with pytest.raises(ValueError):
            board.register_entity(lasting, ttl=0)

    # -- lifecycle ----------------------------------------------------------------------------

    def test_closed_board_refuses_calls(self, other: JobBoard, make_board: MakeBoard,
                                        board_options: dict[str, Any]) -> None:
        board = make_board(**board_options)
        job = other.post("work")
        assert board.connected
        board.close()
        assert not board.connected
        with pytest.raises(errors.JobFailure):
            board.post("x")
        board.close()  # closing twice is harmless
        board.connect()
        assert board.get(job.uuid) == job


class RedisWipeable:
    """Mix into a conformance class on Redis: ``lose_data`` deletes the board's keys (its
    namespace of the server), as a Redis that persists nothing loses them when it restarts."""

    @pytest.fixture
    def lose_data(self, redis_url: str) -> Iterator[Callable[[], None]]:
        yield from redis_data_loser(redis_url)


def redis_data_loser(url: str) -> Iterator[Callable[[], None]]:
    """A ``lose_data`` for a Redis board on ``url`` (TLS and Sentinel URLs too): deletes its
    namespace's keys, through a client made from the same URL."""
    from legato.jobboard.redis import RedisSettings

    namespace = dict(parse_qsl(urlsplit(url).query))["namespace"]
    client = RedisSettings.from_url(url).client()

    def lose() -> None:
        keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
        assert keys
        client.delete(*keys)

    yield lose
    client.close()
