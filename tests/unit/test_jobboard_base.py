"""The jobboard contract's concrete parts: records, Job objects, argument checks, lifecycle."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from legato import errors, jobboard
from legato.jobboard.base import Job, JobBoard, JobCounts, JobRecord, not_owner
from legato.jobboard.memory import MemoryJobBoard
from legato.persistence.models import LogBook
from legato.states import JobPriority, JobState
from legato.testing.clock import FakeClock

NOW = 1_700_000_000.0


def record(**changes: object) -> JobRecord:
    base = JobRecord(uuid="u-1", name="job", details={"a": 1}, book_uuid=None, book_name=None,
                     priority=0, created_on=NOW, last_modified=NOW)
    for key, value in changes.items():
        setattr(base, key, value)
    return base


def test_expired_claim_counts_as_unclaimed() -> None:
    claimed = record(state=JobState.CLAIMED, owner="a", lease_expires=NOW + 10)
    assert claimed.effective_state(NOW) is JobState.CLAIMED
    assert claimed.effective_owner(NOW) == "a"
    assert claimed.effective_state(NOW + 10) is JobState.UNCLAIMED
    assert claimed.effective_owner(NOW + 10) is None
    assert claimed.claimable(NOW + 10)


def test_delayed_job_is_not_claimable_until_due() -> None:
    delayed = record(available_at=NOW + 5)
    assert delayed.effective_state(NOW) is JobState.UNCLAIMED
    assert not delayed.claimable(NOW)
    assert delayed.claimable(NOW + 5)


def test_record_round_trips_through_dict() -> None:
    original = record(state=JobState.CLAIMED, owner="a", fence=3, attempts=2, reason="r")
    data = original.to_dict()
    assert data["state"] == "CLAIMED"
    assert JobRecord.from_dict({**data, "unknown": 1}) == original


def test_record_to_dict_has_every_field_and_shares_nothing() -> None:
    original = record(state=JobState.CLAIMED, details={"a": {"b": [1, 2]}})
    data = original.to_dict()
    assert data == {**dataclasses.asdict(original), "state": "CLAIMED"}
    assert list(data) == [f.name for f in dataclasses.fields(JobRecord)]
    data["details"]["a"]["b"].append(3)
    assert original.details == {"a": {"b": [1, 2]}}


def test_record_copy_is_equal_and_shares_no_details() -> None:
    original = record(state=JobState.CLAIMED, owner="a", fence=3, details={"a": 1})
    copied = original.copy()
    assert copied == original and copied is not original
    copied.details["a"] = 2
    copied.owner = "b"
    assert original.details == {"a": 1} and original.owner == "a"


@pytest.mark.parametrize("change", ["details", "state", "name"])
def test_malformed_record_dict_is_refused(change: str) -> None:
    data = record().to_dict()
    if change == "details":
        data["details"] = [1]
    elif change == "state":
        data["state"] = "LOST"
    else:
        del data["name"]
    with pytest.raises((KeyError, ValueError, TypeError)):
        JobRecord.from_dict(data)


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("uuid", 7, "uuid must be a string, not int"),
    ("book_uuid", 1.5, "book_uuid must be a string or null, not float"),
    ("created_on", "x", "created_on must be a number, not str"),
    ("attempts", True, "attempts must be an integer, not bool"),
    ("fence", 2.0, "fence must be an integer, not float"),
    ("lease_expires", [], "lease_expires must be a number or null, not list"),
    ("cancel", 0, "cancel must be a string or null, not int"),
])
def test_a_field_of_the_wrong_type_is_named(field: str, value: object, expected: str) -> None:
    data = {**record().to_dict(), field: value}
    with pytest.raises(errors.GarbageRecord, match=expected):
        JobRecord.from_dict(data)


def test_every_field_of_the_right_type_decodes_with_or_without_extra_keys() -> None:
    data = record(owner="a", lease_expires=NOW, cancel="c", reason=None).to_dict()
    assert JobRecord.from_dict(data) == JobRecord.from_dict({**data, "extra": object()})


def test_job_properties() -> None:
    board = MemoryJobBoard()
    job = Job(board, record(priority=2, last_modified=NOW + 1, attempts=4))
    assert job.priority is JobPriority.VERY_HIGH
    assert job.created_on == dt.datetime.fromtimestamp(NOW, dt.UTC)
    assert job.last_modified == dt.datetime.fromtimestamp(NOW + 1, dt.UTC)
    assert job.attempts == 4 and job.fence is None
    assert "VERY_HIGH" in repr(job) and "u-1" in repr(job)
    assert job == Job(board, record(name="other")) and hash(job) == hash("u-1")
    assert job != "u-1"
    assert job.book is None  # no book, so no persistence needed


def test_board_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        MemoryJobBoard(ttl=0)
    with pytest.raises(ValueError):
        MemoryJobBoard(poll_interval=0)


def test_unconnected_board_refuses_calls() -> None:
    board = MemoryJobBoard()
    assert not board.connected
    with pytest.raises(errors.JobFailure, match="not connected"):
        board.post("x")
    with pytest.raises(errors.JobFailure):
        next(board.iterjobs())


def test_connect_picks_backend_by_scheme() -> None:
    board = jobboard.connect("memory://", ttl=7)
    assert isinstance(board, MemoryJobBoard) and board.ttl == 7
    with pytest.raises(errors.UnknownBackend):
        jobboard.connect("nosuch://x")


def test_context_manager_connects_and_closes() -> None:
    board: JobBoard
    with jobboard.connect("memory://") as board:
        assert board.connected
    assert not board.connected


def test_not_owner_message_names_real_owner() -> None:
    held = not_owner("u-1", "me", "you")
    assert isinstance(held, errors.JobFailure)
    assert (held.owner, held.actual_owner, held.job_uuid) == ("me", "you", "u-1")
    assert "'you'" in str(held)
    assert "not claimed" in str(not_owner("u-1", "me", None))


def test_post_keeps_book_without_loading_it() -> None:
    book = LogBook(name="b")
    with jobboard.connect("memory://") as board:
        job = board.post("with book", book, priority="very_low")
        assert job.book is book  # no persistence needed: the poster already has it
        assert job.priority is JobPriority.VERY_LOW


def test_job_wait_times_out_and_state_follows_board() -> None:
    clock = FakeClock(NOW)
    with jobboard.connect("memory://", clock=clock) as board:
        job = board.post("x")
        assert job.wait(timeout=0.01) is False
        claimed = board.claim(job, "a", ttl=5)
        assert job.state is JobState.CLAIMED
        clock.advance(5)
        assert board.state_of(job) is JobState.UNCLAIMED
        board.consume(board.claim(job, "b"), "b")
        assert job.wait(timeout=0) is True
        with pytest.raises(errors.NotFound):
            board.renew(claimed, "a")


def test_claim_next_fallback_in_base_skips_taken_jobs() -> None:
    """The base ``_claim_next`` (for backends without their own) claims in order."""
    clock = FakeClock(NOW)
    with jobboard.connect("memory://", clock=clock) as board:
        low = board.post("low", priority="low")
        high = board.post("high", priority="high")
        board.claim(high, "a")
        record_ = JobBoard._claim_next(board, "b", 10.0)
        assert record_ is not None and record_.uuid == low.uuid and record_.fence == 1
        assert JobBoard._claim_next(board, "b", 10.0) is None


def test_job_counts_fallback_in_base_agrees_with_the_memory_board() -> None:
    """The base ``_job_counts`` (for backends without their own) reads every job."""
    clock = FakeClock(NOW)
    with jobboard.connect("memory://", clock=clock) as board:
        _, claimed, lapsing, trashed = (board.post(n) for n in "abcd")
        board.post("later", delay=60)
        board.claim(claimed, "a", ttl=600)
        board.claim(lapsing, "a", ttl=5)
        board.trash(board.claim(trashed, "a"), "a", reason="no")
        assert JobBoard._job_counts(board) == board.job_counts() == JobCounts(
            waiting=1, delayed=1, claimed=2, trashed=1)
        clock.advance(10)
        assert JobBoard._job_counts(board) == board.job_counts() == JobCounts(
            waiting=2, delayed=1, claimed=1, trashed=1)
        clock.advance(60)
        assert JobBoard._job_counts(board) == board.job_counts() == JobCounts(
            waiting=3, delayed=0, claimed=1, trashed=1)
