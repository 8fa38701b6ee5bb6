"""``legato.operations``: the trash, cancel, requeue and post steps the CLI and the dashboard
share, on the memory backends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from legato import errors, jobboard, operations
from legato.jobboard import base as jobboard_base
from legato.jobboard.base import JobBoard
from legato.persistence.memory import MemoryPersistence
from legato.states import JobPriority
from legato.testing.conductor import add_flow, steps_flow


@pytest.fixture
def stack() -> Iterator[tuple[JobBoard, MemoryPersistence]]:
    store = MemoryPersistence()
    with jobboard.connect("memory://", persistence=store) as board:
        yield board, store


def _post(board: JobBoard, store: MemoryPersistence, name: str = "job") -> str:
    spec = operations.job_spec(steps_flow, kwargs={"steps": 2}, name=name)
    return str(operations.post(board, store, spec)["uuid"])


def test_post_records_the_factory_and_names_the_job_in_its_logbook(stack: tuple) -> None:
    board, store = stack
    spec = operations.job_spec(
        steps_flow, kwargs={"steps": 2}, name="two", priority=JobPriority.HIGH
    )
    posted = operations.post(board, store, spec)
    job = board.get(posted["uuid"])
    assert (job.name, job.priority, posted["priority"]) == ("two", JobPriority.HIGH, "HIGH")
    detail = store.get_flow_details(posted["flow_uuid"])
    assert detail.meta["factory"]["name"] == "legato.testing.conductor:steps_flow"
    assert detail.meta["factory"]["kwargs"] == {"steps": 2}
    assert store.get_logbook(posted["book_uuid"]).meta["job_uuid"] == job.uuid


def test_job_spec_refuses_bad_input_before_anything_is_written(stack: tuple) -> None:
    board, store = stack
    with pytest.raises(errors.MissingDependencies, match="needs x, y"):
        operations.job_spec(add_flow)
    with pytest.raises(ValueError, match="cannot be called so"):
        operations.job_spec(steps_flow, kwargs={"bogus": 1})
    with pytest.raises(ValueError, match="NUL"):
        operations.job_spec(steps_flow, name="a\x00b")
    with pytest.raises(ValueError, match="JSON object"):
        operations.job_spec(steps_flow, store=["x"])  # type: ignore[arg-type]
    assert board.job_count == 0 and list(store.get_logbooks()) == []


def test_trash_records_who_and_refuses_a_claimed_job(stack: tuple) -> None:
    board, store = stack
    free, held = _post(board, store, "free"), _post(board, store, "held")
    board.claim(board.get(held), "worker-1")
    result = operations.trash(board, store, board.get(free), "op", reason="not needed")
    assert result == {"uuid": free, "trashed": True, "reason": "not needed"}
    (claim,) = store.job_history(free)
    assert (claim.owner, claim.outcome, claim.reason) == ("op", "trashed", "not needed")
    with pytest.raises(errors.UnclaimableJob, match="claimed by worker-1") as refused:
        operations.trash(board, store, board.get(held), "op", reason="no")
    assert refused.value.owner == "worker-1"
    assert board.get(held).record.effective_owner(board.clock()) == "worker-1"


def test_cancel_trashes_a_waiting_job_and_marks_a_running_one(stack: tuple) -> None:
    board, store = stack
    waiting, running = _post(board, store, "waiting"), _post(board, store, "running")
    board.claim(board.get(running), "worker-1")
    done = operations.cancel(board, store, board.get(waiting), "op", reason="stop")
    assert done == {"uuid": waiting, "trashed": True, "owner": None}
    assert "cancelled by op" in (store.job_history(waiting)[0].reason or "")
    marked = operations.cancel(board, store, board.get(running), "op")
    assert marked == {"uuid": running, "trashed": False, "owner": "worker-1"}
    assert board.get(running).cancel_requested


def test_requeue_by_id_or_reason_and_twice_posts_once(stack: tuple) -> None:
    board, store = stack
    uuids = [_post(board, store, f"job-{i}") for i in range(3)]
    for uuid, reason in zip(uuids, ["disk full", "DISK FULL again", "bad input"], strict=True):
        operations.trash(board, store, board.get(uuid), "op", reason=reason)
    chosen = operations.trashed(board, reason="disk full")
    assert sorted(j.uuid for j in chosen) == sorted(uuids[:2])
    done = operations.requeue_all(board, chosen)
    assert sorted(r["requeued_from"] for r in done) == sorted(uuids[:2])
    assert operations.requeue_all(board, chosen) == []  # already requeued: skipped
    with pytest.raises(errors.NotFound):
        operations.requeue(board, chosen[0])
    (last,) = operations.trashed(board, uuids=[uuids[2]])
    assert operations.requeue(board, last)["name"] == "job-2"
    assert list(board.iter_trash()) == [] and board.job_count == 3


class _Writes(MemoryPersistence):
    """Memory persistence noting each call that writes or reads a logbook or flow detail."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def save_logbook(self, book, **kwargs):  # type: ignore[no-untyped-def]
        self.calls.append("save_logbook")
        return super().save_logbook(book, **kwargs)

    def update_flow_details(self, flow_detail, **kwargs):  # type: ignore[no-untyped-def]
        self.calls.append("update_flow_details")
        return super().update_flow_details(flow_detail, **kwargs)

    def get_logbook(self, book_uuid, **kwargs):  # type: ignore[no-untyped-def]
        self.calls.append("get_logbook")
        return super().get_logbook(book_uuid, **kwargs)


def test_post_saves_the_book_with_its_factory_in_one_write_before_the_job() -> None:
    store = _Writes()
    before_post: list[str] = []
    with jobboard.connect("memory://", persistence=store) as board:
        board.notifier.register(jobboard_base.POSTED, lambda *_: before_post.extend(store.calls))
        spec = operations.job_spec(steps_flow, kwargs={"steps": 1})
        posted = operations.post(board, store, spec)
    # One write reaches the post (the job's start waits for nothing else); the logbook's
    # naming of its job comes after.
    assert before_post == ["save_logbook"]
    detail = store.get_flow_details(posted["flow_uuid"])
    assert detail.meta["factory"]["kwargs"] == {"steps": 1}


def test_testing_post_job_saves_once_and_reads_nothing_back() -> None:
    from legato.testing.conductor import post_job

    store = _Writes()
    before_post: list[str] = []
    with jobboard.connect("memory://", persistence=store) as board:
        board.notifier.register(jobboard_base.POSTED, lambda *_: before_post.extend(store.calls))
        job = post_job(board, store, steps_flow, kwargs={"steps": 1}, meta_store={"a": 1})
    assert before_post == ["save_logbook"]
    assert job.book_uuid is not None
    (detail,) = store.get_logbook(job.book_uuid).flows.values()
    assert detail.meta["factory"]["kwargs"] == {"steps": 1}
    assert detail.meta["store"] == {"a": 1}
