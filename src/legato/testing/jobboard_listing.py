"""The listing part of the jobboard conformance suite: ``oldest_waiting``, ``iter_claimed`` and
pages of ``iterjobs`` that start ``after`` a position. ``JobBoardConformance`` runs it; it is
apart only to keep that module readable."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import ClassVar

import pytest

from legato.jobboard.base import Job, JobBoard
from legato.states import JobPriority
from legato.testing.clock import FakeClock
from legato.testing.jobboard_acceptance import until

__all__ = ["ListingConformance"]


class ListingConformance:
    """Contract tests of the board's listings; mixed into ``JobBoardConformance``, which
    provides the fixtures (``board``, ``other``, ``clock``) and the helpers below."""

    time_slack: ClassVar[float] = 5.0

    def pass_time(self, clock: FakeClock | None, seconds: float,
                  check: Callable[[], bool]) -> None:
        raise NotImplementedError  # JobBoardConformance's

    def ttl(self, clock: FakeClock | None) -> float:
        raise NotImplementedError  # JobBoardConformance's

    def _eventually(self, check: Callable[[], bool]) -> None:
        """Another board object may learn of a change a moment later (ZooKeeper's watches):
        a condition to wait for, never a time."""
        assert until(check, self.time_slack), "still not true"

    # -- oldest_waiting --------------------------------------------------------------------

    def test_oldest_waiting_is_the_first_posted_whatever_its_priority(
            self, board: JobBoard, other: JobBoard) -> None:
        assert board.oldest_waiting() is None
        board.post("later", delay=3600)  # delayed: not waiting
        old = board.post("old", priority=JobPriority.VERY_LOW)
        high = board.post("high", priority=JobPriority.VERY_HIGH)
        board.post("mid", priority=JobPriority.NORMAL)
        assert board.oldest_waiting() == old
        self._eventually(lambda: other.oldest_waiting() == old)
        assert other.claim_next("owner-a") == high  # the next to claim is not the oldest
        assert board.oldest_waiting() == old

    def test_oldest_waiting_skips_claims_made_elsewhere(self, board: JobBoard,
                                                        other: JobBoard) -> None:
        first, second, third = (board.post(name, priority=priority) for name, priority in
                                (("first", "low"), ("second", "low"), ("third", "high")))
        other.claim(other.get(first.uuid), "owner-b")
        self._eventually(lambda: board.oldest_waiting() == second)
        board.claim(second, "owner-a")
        assert board.oldest_waiting() == third
        board.claim(third, "owner-a")
        assert board.oldest_waiting() is None

    def test_oldest_waiting_again_once_a_claim_lapses(self, board: JobBoard, other: JobBoard,
                                                      clock: FakeClock | None) -> None:
        job = board.post("short-lived claim")
        board.claim(job, "owner-a", ttl=self.ttl(clock))
        assert board.oldest_waiting() is None
        self.pass_time(clock, self.ttl(clock) + 1, lambda: other.oldest_waiting() == job)

    # -- iterjobs(after=...) ---------------------------------------------------------------

    def test_iterjobs_after_a_position_lists_the_rest_of_the_claim_order(
            self, board: JobBoard, other: JobBoard) -> None:
        rng = random.Random(15)
        plan = [p for p in JobPriority for _ in range(3)]
        rng.shuffle(plan)
        for number, priority in enumerate(plan):
            board.post(f"{priority.name}-{number}", priority=priority)
        listed = list(other.iterjobs(ensure_fresh=True))
        assert len(listed) == len(plan)
        for at, job in enumerate(listed):
            assert list(other.iterjobs(after=job.position)) == listed[at + 1:], job.position
        # The job at the position may be gone: the listing still starts there.
        gone = board.claim(listed[4], "owner-a")
        board.consume(gone, "owner-a")
        self._eventually(
            lambda: list(other.iterjobs(after=gone.position)) == listed[5:])

    def test_iterjobs_after_with_only_unclaimed(self, board: JobBoard, other: JobBoard) -> None:
        a, b, c, d = (board.post(name) for name in "abcd")
        board.claim(c, "owner-a")
        self._eventually(lambda: list(other.iterjobs(only_unclaimed=True, after=a.position))
                         == [b, d])
        assert list(board.iterjobs(after=d.position)) == []

    @pytest.mark.parametrize("position", ["", "7", "0:x", "9:1", "0:-1", "a:b:c"])
    def test_iterjobs_after_refuses_what_is_no_position(self, board: JobBoard,
                                                        position: str) -> None:
        with pytest.raises(ValueError, match="not a job position"):
            next(board.iterjobs(after=position), None)

    # -- iter_claimed ----------------------------------------------------------------------

    def test_iter_claimed_lists_live_claims_and_their_owners(
            self, board: JobBoard, other: JobBoard, clock: FakeClock | None) -> None:
        a, b, c, _ = (board.post(name) for name in "abcd")
        board.claim(a, "owner-a", ttl=60)
        other.claim(other.get(b.uuid), "owner-b", ttl=60)
        short = board.claim(c, "owner-a", ttl=self.ttl(clock))

        def held(seen: JobBoard) -> set[tuple[str, str | None]]:
            now = seen.clock()
            return {(job.uuid, job.record.effective_owner(now)) for job in seen.iter_claimed()}

        both = {(a.uuid, "owner-a"), (b.uuid, "owner-b"), (c.uuid, "owner-a")}
        self._eventually(lambda: held(board) == both and held(other) == both)
        board.consume(short, "owner-a")
        self._eventually(lambda: held(other) == both - {(c.uuid, "owner-a")})
        lapsing = board.claim(board.get(board.post("e").uuid), "owner-a", ttl=self.ttl(clock))
        self._eventually(lambda: (lapsing.uuid, "owner-a") in held(other))
        self.pass_time(clock, self.ttl(clock) + 1,
                       lambda: held(other) == {(a.uuid, "owner-a"), (b.uuid, "owner-b")})
        assert all(isinstance(job, Job) for job in other.iter_claimed())
