"""Board and persistence in one SQL database: a job's consume (and the next claim) rides in the
transaction that writes its flow's end, fenced on both sides, all or nothing."""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from legato import errors, jobboard
from legato import persistence as lp
from legato.conductor import BlockingConductor, NonBlockingConductor
from legato.conductor._joined import JoinedConsume
from legato.jobboard.base import Job, JobBoard
from legato.jobboard.sql.tables import jobs
from legato.persistence.base import FlowWrites, Persistence
from legato.persistence.models import Claim, Fence, FlowDetail, LogBook, TaskDetail, utcnow
from legato.states import AtomState, FlowState, JobState
from legato.testing import conductor as tc


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite"
                                       else "postgres_url")
    return url


@pytest.fixture
def store(shared_url: str) -> Iterator[Persistence]:
    backend = lp.connect(shared_url)
    backend.upgrade()
    yield backend
    backend.close()


@pytest.fixture
def board(shared_url: str, store: Persistence) -> Iterator[JobBoard]:
    with jobboard.connect(shared_url, persistence=store) as connected:
        yield connected


def _claimed_flow(board: JobBoard, store: Persistence,
                  owner: str = "owner-a") -> tuple[Job, FlowDetail, Fence]:
    """A posted job with a one-atom flow, claimed by ``owner``, its flow taken."""
    book = LogBook("book")
    flow = FlowDetail("flow", state=FlowState.RUNNING)
    flow.add(TaskDetail("task", state=AtomState.RUNNING))
    book.add(flow)
    store.save_logbook(book)
    board.post("job", book=book)
    job = board.claim_next(owner)
    assert job is not None and job.fence is not None
    fence = Fence(job.uuid, job.fence)
    store.take_flow(flow.uuid, fence)
    return job, flow, fence


def _ending(flow: FlowDetail, then: Callable[[Any], None]) -> FlowWrites:
    atom = next(iter(flow))
    atom.state = AtomState.SUCCESS
    return FlowWrites(flow.uuid, state=FlowState.SUCCESS, atoms=[atom], then=then)


def test_the_same_url_is_the_same_database(shared_url: str, store: Persistence,
                                           board: JobBoard) -> None:
    assert store.database is not None and store.database == board.database
    with jobboard.connect("memory://elsewhere") as memory:
        assert memory.database is None


def test_consume_rides_with_the_flow_end(board: JobBoard, store: Persistence) -> None:
    job, flow, fence = _claimed_flow(board, store)
    store.update_many(_ending(flow, lambda tx: board.consume_in(tx, job, "owner-a")),
                      fence=fence)
    board.consumed(job)
    assert board.state_of(job) is JobState.COMPLETE and board.job_count == 0
    assert store.get_flow_details(flow.uuid).state is FlowState.SUCCESS


def test_a_stale_claim_on_the_board_rolls_the_flow_end_back(board: JobBoard,
                                                           store: Persistence) -> None:
    job, flow, fence = _claimed_flow(board, store)
    board.abandon(job, "owner-a")
    newer = board.claim(job, "owner-b")  # the board's fence moved on; the flow's did not
    with pytest.raises(errors.NotOwner):
        store.update_many(_ending(flow, lambda tx: board.consume_in(tx, job, "owner-a")),
                          fence=fence)
    assert store.get_flow_details(flow.uuid).state is FlowState.RUNNING
    assert board.find_owner(newer) == "owner-b" and board.job_count == 1


def test_a_stale_fence_on_the_flow_rolls_the_consume_back(board: JobBoard,
                                                         store: Persistence) -> None:
    job, flow, fence = _claimed_flow(board, store)
    store.take_flow(flow.uuid, Fence(job.uuid, fence.number + 1))  # a newer claim's take
    with pytest.raises(errors.FencedOut):
        store.update_many(_ending(flow, lambda tx: board.consume_in(tx, job, "owner-a")),
                          fence=fence)
    assert board.find_owner(job) == "owner-a" and board.job_count == 1
    assert store.get_flow_details(flow.uuid).state is FlowState.RUNNING


def test_a_failure_after_the_consume_rolls_both_back(board: JobBoard,
                                                    store: Persistence) -> None:
    job, flow, fence = _claimed_flow(board, store)

    def consume_then_fail(tx: Any) -> None:
        board.consume_in(tx, job, "owner-a")
        raise errors.FencedOut("refused after the consume")

    with pytest.raises(errors.FencedOut, match="after the consume"):
        store.update_many(_ending(flow, consume_then_fail), fence=fence)
    assert board.find_owner(job) == "owner-a"
    assert store.get_flow_details(flow.uuid).state is FlowState.RUNNING


def test_a_retry_after_a_lost_answer_goes_on_as_consumed(board: JobBoard,
                                                         store: Persistence) -> None:
    """The persistence makes a transaction again when its answer was lost; if the first one
    landed, the job is gone and the flow still ours: the retry is the same consume, not a lost
    claim. A first attempt that finds the job gone is refused."""
    job, flow, fence = _claimed_flow(board, store)
    committed: list[bool] = []
    joined = JoinedConsume(board, job, "owner-a", claim_next=None, ttl=None,
                           committed=lambda: committed.append(True))
    writes = _ending(flow, joined)
    store.update_many(writes, fence=fence)
    joined.committed()
    store.update_many(writes, fence=fence)  # as a retry after a lost answer makes it
    assert joined.done and committed == [True]
    assert board.job_count == 0
    fresh = JoinedConsume(board, job, "owner-a", claim_next=None, ttl=None,
                          committed=lambda: None)
    with pytest.raises(errors.FencedOut, match="consuming job"):
        store.update_many(_ending(flow, fresh), fence=fence)


def _plant_garbage_row(shared_url: str) -> sa.Engine:
    """A waiting job row whose details are not JSON, written around the board's API; returns
    the engine that wrote it (the caller disposes of it)."""
    engine = sa.create_engine(sa.make_url(shared_url).set(
        drivername="postgresql+psycopg" if shared_url.startswith("postgresql") else "sqlite"))
    with engine.begin() as conn:
        conn.execute(jobs.insert().values(
            uuid="bad-row", name="garbage", details="{not json", priority=2,
            created_on=0.0, state="UNCLAIMED", attempts=0, fence=0))
    return engine


def test_the_next_claim_rides_too_and_skips_garbage(shared_url: str, board: JobBoard,
                                                    store: Persistence,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    job, flow, fence = _claimed_flow(board, store)
    engine = _plant_garbage_row(shared_url)
    nxt = board.post("next")
    claimed: list[Job | None] = []
    with caplog.at_level(logging.WARNING, logger="legato.jobboard.sql"):
        store.update_many(_ending(flow, lambda tx: claimed.append(
            board.consume_in(tx, job, "owner-a", claim_next=True))), fence=fence)
    assert claimed == [nxt] and claimed[0] is not None
    assert board.find_owner(claimed[0]) == "owner-a" and claimed[0].fence == 1
    assert "cannot be decoded" in caplog.text
    assert board.state_of(job) is JobState.COMPLETE
    with engine.connect() as conn:  # the bad row untouched
        row = conn.execute(sa.select(jobs.c.state, jobs.c.attempts)
                           .where(jobs.c.uuid == "bad-row")).one()
    assert tuple(row) == ("UNCLAIMED", 0)
    engine.dispose()


def test_the_consume_and_the_next_claim_are_one_statement(shared_url: str, board: JobBoard,
                                                          store: Persistence) -> None:
    """On PostgreSQL the consume and the claim behind it are one statement in the flow's last
    transaction (SQLite: one per step)."""
    job, flow, fence = _claimed_flow(board, store)
    nxt = board.post("next")
    sent: list[str] = []
    claimed: list[Job | None] = []

    def consume(tx: Any) -> None:
        sa.event.listen(tx, "before_cursor_execute",
                        lambda _c, _cur, statement, *_rest: sent.append(statement))
        claimed.append(board.consume_in(tx, job, "owner-a", claim_next=True))

    store.update_many(_ending(flow, consume), fence=fence)
    assert claimed == [nxt] and board.find_owner(nxt) == "owner-a"
    assert board.state_of(job) is JobState.COMPLETE
    if shared_url.startswith("postgresql"):
        assert len(sent) == 1 and "DELETE" in sent[0] and "UPDATE" in sent[0]
    else:
        assert len(sent) > 1


def test_a_stale_claim_claims_nothing_behind_it(board: JobBoard, store: Persistence) -> None:
    """A consume refused in the statement that also claims: the claim rolls back with it."""
    job, flow, fence = _claimed_flow(board, store)
    board.abandon(job, "owner-a")
    newer = board.claim(job, "owner-b")
    nxt = board.post("next")
    with pytest.raises(errors.NotOwner):
        store.update_many(_ending(flow, lambda tx: board.consume_in(
            tx, job, "owner-a", claim_next=True)), fence=fence)
    assert board.find_owner(newer) == "owner-b" and board.find_owner(nxt) is None
    assert board.state_of(nxt) is JobState.UNCLAIMED
    assert store.get_flow_details(flow.uuid).state is FlowState.RUNNING


# -- the flow's end, the consume and the next claim as one statement (JoinableThen) ----------

def _joined(board: JobBoard, job: Job, *, claim_next: bool = True) -> JoinedConsume:
    """The consume a conductor hands the persistence (a ``JoinableThen``)."""
    return JoinedConsume(board, job, "owner-a", claim_next=(lambda: True) if claim_next else None,
                         ttl=None, committed=lambda: None)


def _ending_claim(flow: FlowDetail, then: JoinedConsume, job: Job) -> FlowWrites:
    """``_ending`` with the claim's end, as a conductor writes it."""
    writes = _ending(flow, then)
    writes.ended = Claim(job_uuid=job.uuid, fence=job.fence or 0, owner="owner-a",
                         claimed_at=utcnow(), ended_at=utcnow(), outcome="consumed")
    return writes


def test_the_flow_end_consume_and_claim_are_one_autocommitted_statement(
        shared_url: str, board: JobBoard, store: Persistence) -> None:
    """On PostgreSQL the flow's end write, the consume and the next claim are ONE statement,
    run in autocommit (no BEGIN/COMMIT); SQLite keeps its transaction of several."""
    job, flow, fence = _claimed_flow(board, store)
    nxt = board.post("next")
    sent: list[tuple[str, bool]] = []

    def record(conn: sa.Connection, _cursor: Any, statement: str, *_rest: Any) -> None:
        sent.append((statement, not conn.in_transaction() or bool(
            getattr(conn.connection.driver_connection, "autocommit", False))))

    joined = _joined(board, job)
    sa.event.listen(sa.Engine, "before_cursor_execute", record)
    try:
        store.update_many(_ending_claim(flow, joined, job), fence=fence)
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", record)
    joined.committed()
    assert joined.following is not None and joined.following[0] == nxt
    assert board.find_owner(nxt) == "owner-a" and board.state_of(job) is JobState.COMPLETE
    assert store.get_flow_details(flow.uuid).state is FlowState.SUCCESS
    history = store.job_history(job.uuid)
    assert [c.outcome for c in history] == ["consumed"]
    if shared_url.startswith("postgresql"):
        [(statement, autocommit)] = [(s, a) for s, a in sent if "legato_flowdetails" in s
                                     or "legato_jb_jobs" in s]
        assert autocommit
        assert "UPDATE legato_flowdetails" in statement and "DELETE FROM legato_jb_jobs" in \
            statement and "UPDATE legato_jb_jobs" in statement
        assert "legato_job_history" in statement
    else:
        assert len(sent) > 1


def test_a_stale_flow_fence_consumes_and_claims_nothing(board: JobBoard,
                                                        store: Persistence) -> None:
    job, flow, fence = _claimed_flow(board, store)
    nxt = board.post("next")
    store.take_flow(flow.uuid, Fence(job.uuid, fence.number + 1))  # a newer claim's take
    joined = _joined(board, job)
    with pytest.raises(errors.FencedOut, match="flow detail"):
        store.update_many(_ending(flow, joined), fence=fence)
    assert board.find_owner(job) == "owner-a" and board.job_count == 2
    assert board.state_of(nxt) is JobState.UNCLAIMED and board.find_owner(nxt) is None
    assert store.get_flow_details(flow.uuid).state is FlowState.RUNNING
    assert joined.following is None and not joined.done


def test_a_stale_job_fence_writes_no_flow_end(board: JobBoard, store: Persistence) -> None:
    job, flow, fence = _claimed_flow(board, store)
    board.abandon(job, "owner-a")
    newer = board.claim(job, "owner-a")  # the same owner, a newer fence on the board
    nxt = board.post("next")
    joined = _joined(board, job)
    with pytest.raises(errors.FencedOut, match="consuming job"):
        store.update_many(_ending_claim(flow, joined, job), fence=fence)
    fd = store.get_flow_details(flow.uuid)
    assert fd.state is FlowState.RUNNING
    assert next(iter(fd)).state is AtomState.RUNNING  # the atom's write did not land either
    assert board.find_owner(newer) == "owner-a" and board.job_count == 2
    assert board.state_of(nxt) is JobState.UNCLAIMED
    assert store.job_history(job.uuid) == []  # nor the claim's end


def test_an_undecodable_next_job_is_put_back_after_the_joined_statement(
        shared_url: str, board: JobBoard, store: Persistence,
        caplog: pytest.LogCaptureFixture) -> None:
    job, flow, fence = _claimed_flow(board, store)
    engine = _plant_garbage_row(shared_url)
    nxt = board.post("next")
    joined = _joined(board, job)
    with caplog.at_level(logging.WARNING, logger="legato.jobboard.sql"):
        store.update_many(_ending(flow, joined), fence=fence)
    joined.committed()
    assert joined.following is not None and joined.following[0] == nxt
    assert board.find_owner(nxt) == "owner-a"
    assert "cannot be decoded" in caplog.text
    assert board.state_of(job) is JobState.COMPLETE
    assert store.get_flow_details(flow.uuid).state is FlowState.SUCCESS
    with engine.connect() as conn:  # the bad row as it was
        row = conn.execute(sa.select(jobs.c.state, jobs.c.attempts, jobs.c.owner, jobs.c.fence)
                           .where(jobs.c.uuid == "bad-row")).one()
    assert tuple(row) == ("UNCLAIMED", 0, None, 0)
    engine.dispose()


def test_a_joined_consume_without_a_next_claim(board: JobBoard, store: Persistence) -> None:
    job, flow, fence = _claimed_flow(board, store)
    nxt = board.post("next")
    joined = _joined(board, job, claim_next=False)
    store.update_many(_ending(flow, joined), fence=fence)
    joined.committed()
    assert joined.following is None and board.state_of(nxt) is JobState.UNCLAIMED
    assert board.state_of(job) is JobState.COMPLETE
    assert store.get_flow_details(flow.uuid).state is FlowState.SUCCESS


def test_a_board_without_a_shared_database_refuses(store: Persistence) -> None:
    with jobboard.connect("memory://alone", persistence=store) as memory:
        memory.post("job")
        job = memory.claim_next("owner-a")
        assert job is not None
        with pytest.raises(ValueError, match="no shared database"):
            memory.consume_in(object(), job, "owner-a")
        assert memory.job_count == 1


@pytest.mark.parametrize("service", ["sqlite_url", "postgres_url", "mysql_url"])
def test_then_writes_commit_and_roll_back_with_the_flow(service: str,
                                                        request: pytest.FixtureRequest) -> None:
    """The persistence half on every SQL database (MariaDB has no SQL board): what ``then``
    writes on the handle it gets lands with the flow's writes, or neither does."""
    url: str = request.getfixturevalue(service)
    backend = lp.connect(url)
    backend.upgrade()
    engine = sa.create_engine(sa.make_url(url).set(
        drivername={"sqlite_url": "sqlite", "postgres_url": "postgresql+psycopg",
                    "mysql_url": "mysql+pymysql"}[service]))
    other = sa.Table("other_component", sa.MetaData(), sa.Column("n", sa.Integer))
    other.create(engine)
    try:
        book = LogBook("book")
        flow = FlowDetail("flow", state=FlowState.RUNNING)
        book.add(flow)
        backend.save_logbook(book)
        fence = Fence("job", 1)
        backend.take_flow(flow.uuid, fence)

        def insert(n: int, fail: bool) -> Callable[[Any], None]:
            def then(tx: Any) -> None:
                tx.execute(other.insert().values(n=n))
                if fail:
                    raise errors.FencedOut("refused")
            return then

        with pytest.raises(errors.FencedOut):
            backend.update_many(FlowWrites(flow.uuid, state=FlowState.SUCCESS,
                                           then=insert(1, True)), fence=fence)
        with pytest.raises(errors.FencedOut):  # a stale fence: ``then`` never writes
            backend.update_many(FlowWrites(flow.uuid, state=FlowState.SUCCESS,
                                           then=insert(2, False)), fence=Fence("job", 0))
        assert backend.get_flow_details(flow.uuid).state is FlowState.RUNNING
        backend.update_many(FlowWrites(flow.uuid, state=FlowState.SUCCESS,
                                       then=insert(3, False)), fence=fence)
        assert backend.get_flow_details(flow.uuid).state is FlowState.SUCCESS
        with engine.connect() as conn:
            assert conn.execute(sa.select(other.c.n)).scalars().all() == [3]
    finally:
        other.drop(engine)
        engine.dispose()
        backend.close()


class _Counting:
    """Counts a board's finishing primitives."""

    def __init__(self, board: JobBoard) -> None:
        self.calls: collections.Counter[str] = collections.Counter()
        for name in ("_consume", "_consume_and_claim_next", "_consume_in_transaction",
                     "_claim_next_with_book"):
            self._wrap(board, name)

    def _wrap(self, board: JobBoard, name: str) -> None:
        inner = getattr(board, name)

        def counted(*args: Any) -> Any:
            self.calls[name] += 1
            return inner(*args)

        setattr(board, name, counted)


@pytest.mark.parametrize("kind", ["blocking", "nonblocking"])
def test_a_conductor_consumes_with_the_flow_end(kind: str, board: JobBoard,
                                               store: Persistence) -> None:
    posted = [tc.post_job(board, store, tc.steps_flow, kwargs={"steps": 2}, name=f"job-{i}")
              for i in range(4)]
    counting = _Counting(board)
    conductor_class = BlockingConductor if kind == "blocking" else NonBlockingConductor
    recorder = tc.EventRecorder()
    conductor = conductor_class("shared", board, store, wait_timeout=0.05,
                                allowed_factories=["legato.testing"])
    conductor.notifier.register("job_consumed", recorder)
    conductor.run(max_dispatches=len(posted))
    assert board.job_count == 0
    assert len([e for e, _ in recorder.events if e == "job_consumed"]) == len(posted)
    calls = counting.calls
    assert calls["_consume"] == calls["_consume_and_claim_next"] == 0
    assert calls["_consume_in_transaction"] == len(posted)
    if kind == "blocking":  # the first claim alone; the others rode with a consume
        assert calls["_claim_next_with_book"] == 1
    for job in posted:
        assert job.book_uuid is not None
        (flow,) = store.get_logbook(job.book_uuid).flows.values()
        assert flow.state is FlowState.SUCCESS
        assert [c.outcome for c in store.job_history(job.uuid)] == ["consumed"]


def test_a_claim_reads_the_job_book_in_its_transaction(board: JobBoard,
                                                       store: Persistence) -> None:
    job, flow, fence = _claimed_flow(board, store)
    assert job.loaded_book is not None  # read with the claim, nothing else asked for it
    assert list(job.loaded_book.flows) == [flow.uuid]
    (read,) = job.loaded_book.flows.values()
    assert [a.name for a in read] == ["task"]
    nxt_book = LogBook("next book")
    nxt_book.add(FlowDetail("next flow"))
    store.save_logbook(nxt_book)
    board.post("next", book=nxt_book)
    claimed: list[Job | None] = []
    store.update_many(_ending(flow, lambda tx: claimed.append(
        board.consume_in(tx, job, "owner-a", claim_next=True))), fence=fence)
    (following,) = claimed
    assert following is not None and following.loaded_book is not None
    assert [f.name for f in following.loaded_book.flows.values()] == ["next flow"]


def test_a_board_apart_from_its_persistence_reads_no_book(shared_url: str,
                                                          store: Persistence) -> None:
    with jobboard.connect("memory://apart", persistence=store) as apart:
        book = LogBook("book")
        book.add(FlowDetail("flow"))
        store.save_logbook(book)
        apart.post("job", book=book)
        job = apart.claim_next("owner")
        assert job is not None and job.loaded_book is None


def test_a_conductor_reads_no_book_of_its_own(board: JobBoard, store: Persistence,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    posted = [tc.post_job(board, store, tc.steps_flow, kwargs={"steps": 1}, name=f"job-{i}")
              for i in range(3)]
    reads: list[str] = []
    read = store.get_logbook
    monkeypatch.setattr(store, "get_logbook", lambda uuid, **kw: (reads.append(uuid),
                                                                   read(uuid, **kw))[1])
    conductor = BlockingConductor("shared", board, store, wait_timeout=0.05,
                                  allowed_factories=["legato.testing"])
    conductor.run(max_dispatches=len(posted))
    assert board.job_count == 0
    assert reads == []  # each book came with its job's claim


def test_a_book_that_cannot_be_read_does_not_fail_the_claim(shared_url: str, board: JobBoard,
                                                           store: Persistence) -> None:
    book = LogBook("book")
    book.add(FlowDetail("flow"))
    store.save_logbook(book)
    posted = board.post("job", book=book)
    engine = sa.create_engine(sa.make_url(shared_url).set(
        drivername="postgresql+psycopg" if shared_url.startswith("postgresql") else "sqlite"))
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE legato_logbooks SET meta = '{nope' WHERE uuid = :u"),
                         {"u": book.uuid})
    finally:
        engine.dispose()
    job = board.claim_next("owner")
    assert job == posted and job is not None and job.loaded_book is None
    assert board.find_owner(job) == "owner"


def _book_with_atoms(store: Persistence) -> LogBook:
    book = LogBook("book")
    for name in ("first flow", "second flow"):
        flow = FlowDetail(name)
        flow.add(TaskDetail("a"))
        flow.add(TaskDetail("b"))
        book.add(flow)
    book.add(FlowDetail("empty flow"))
    store.save_logbook(book)
    return book


def test_a_claim_and_its_book_are_one_statement(shared_url: str, board: JobBoard,
                                                store: Persistence) -> None:
    """On PostgreSQL the claim and the read of the claimed job's book (its flows and atoms)
    are one statement; SQLite: the claim, then the book."""
    book = _book_with_atoms(store)
    posted = board.post("job", book=book)
    sent: list[str] = []
    listener = _sent_by(sent)
    sa.event.listen(sa.Engine, "before_cursor_execute", listener)
    try:
        job = board.claim_next("owner")
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", listener)
    assert job == posted and job is not None and board.find_owner(job) == "owner"
    assert job.loaded_book is not None
    assert [(f.name, [a.name for a in f]) for f in job.loaded_book.flows.values()] == [
        ("first flow", ["a", "b"]), ("second flow", ["a", "b"]), ("empty flow", [])]
    if shared_url.startswith("postgresql"):
        assert len(sent) == 1 and "UPDATE" in sent[0] and "legato_logbooks" in sent[0]
    else:
        assert len(sent) > 1
    assert board.claim_next("other") is None


def test_a_claim_with_its_book_of_a_job_without_one(board: JobBoard) -> None:
    posted = board.post("job")
    job = board.claim_next("owner")
    assert job == posted and job is not None and job.loaded_book is None


def test_a_claim_with_its_book_of_a_gone_book(board: JobBoard, store: Persistence) -> None:
    book = _book_with_atoms(store)
    posted = board.post("job", book=book)
    store.destroy_logbook(book.uuid)
    job = board.claim_next("owner")
    assert job == posted and job is not None and job.loaded_book is None


def test_an_undecodable_row_claimed_with_its_book_is_put_back(
        shared_url: str, board: JobBoard, store: Persistence,
        caplog: pytest.LogCaptureFixture) -> None:
    engine = _plant_garbage_row(shared_url)
    book = _book_with_atoms(store)
    posted = board.post("job", book=book)
    with caplog.at_level(logging.WARNING, logger="legato.jobboard.sql"):
        job = board.claim_next("owner")
    assert job == posted and job is not None and job.loaded_book is not None
    assert len(job.loaded_book.flows) == 3
    assert "'bad-row'" in caplog.text and "set aside" in caplog.text
    with engine.connect() as conn:  # the bad row as it was
        row = conn.execute(sa.select(jobs.c.state, jobs.c.attempts, jobs.c.owner)
                           .where(jobs.c.uuid == "bad-row")).one()
    assert tuple(row) == ("UNCLAIMED", 0, None)
    engine.dispose()


class _FailingParts:
    """A persistence's ``BookParts`` whose statement fails on the server (a division by
    zero in its columns)."""

    def __init__(self, parts: Any) -> None:
        self._parts = parts

    def columns(self) -> list[Any]:
        return [*self._parts.columns(), (sa.literal_column("1") / sa.literal_column("0"))
                .label("lb_broken")]

    def join(self, source: Any, book_uuid: Any) -> Any:
        return self._parts.join(source, book_uuid)

    def order_by(self) -> list[Any]:
        return list(self._parts.order_by())

    def book(self, rows: Any) -> LogBook:
        raise AssertionError("not reached")


def test_a_failing_claim_with_its_book_claims_without_it(
        postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A statement of the claim and its book that the server refuses claims nothing: the
    board claims in a statement of its own, and reads the book after it."""
    store = lp.connect(postgres_url)
    store.upgrade()
    try:
        parts = store.book_parts()
        assert parts is not None
        monkeypatch.setattr(store, "book_parts", lambda: _FailingParts(parts))
        with jobboard.connect(postgres_url, persistence=store) as board:
            book = _book_with_atoms(store)
            posted = board.post("job", book=book)
            job = board.claim_next("owner")
            assert job == posted and job is not None and board.find_owner(job) == "owner"
            assert job.loaded_book is not None and len(job.loaded_book.flows) == 3
    finally:
        store.close()


# -- a post and its logbook ---------------------------------------------------------------------

def _sent_by(engine_events: list[str]) -> Callable[..., None]:
    return lambda _c, _cur, statement, *_rest: engine_events.append(statement)


def test_a_post_writes_its_book_in_the_same_statement(shared_url: str, board: JobBoard,
                                                      store: Persistence) -> None:
    """``post(save_book_in=...)`` with a persistence sharing the board's database: the book
    (naming its job from its first write) and the job in one transaction; on PostgreSQL one
    statement."""
    sent: list[str] = []
    record = _sent_by(sent)
    sa.event.listen(sa.Engine, "before_cursor_execute", record)
    try:
        job = tc.post_job(board, store, tc.steps_flow, kwargs={"steps": 1}, name="with-book")
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", record)
    assert job.book_uuid is not None
    book = store.get_logbook(job.book_uuid)
    assert book.meta == {"job_uuid": job.uuid, "job_name": "with-book"}
    assert [fd.meta["factory"]["kwargs"] for fd in book] == [{"steps": 1}]
    if shared_url.startswith("postgresql"):
        assert len(sent) == 1
        assert "legato_logbooks" in sent[0] and "INSERT INTO legato_jb_jobs" in sent[0]
    else:
        assert sent[-1].startswith("INSERT INTO legato_jb_jobs")
        assert any("legato_logbooks" in s for s in sent[:-1])
    claimed = board.claim_next("owner-a")
    assert claimed == job and claimed.loaded_book is not None
    assert claimed.loaded_book.meta["job_uuid"] == job.uuid


def test_a_postgres_post_with_its_book_runs_sql_rendered_once(postgres_url: str) -> None:
    """On PostgreSQL the post's one statement goes to the driver as SQL rendered once (no
    compiled-cache lookup or parameter processing per post), its float parameters still
    processed: the job reads back as posted."""
    store = lp.connect(postgres_url)
    store.upgrade()
    try:
        with jobboard.connect(postgres_url, persistence=store) as board:
            _post_rendered(board, store)
    finally:
        store.close()


def _post_rendered(board: JobBoard, store: Persistence) -> None:
    compiled: list[object] = []

    def executed(_conn: Any, _cursor: Any, _statement: str, _params: Any, context: Any,
                 _many: bool) -> None:
        compiled.append(context.compiled)

    sa.event.listen(sa.Engine, "before_cursor_execute", executed)
    try:
        job = tc.post_job(board, store, tc.steps_flow, kwargs={"steps": 1}, name="rendered")
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", executed)
    assert compiled == [None]
    assert board.get(job.uuid).created_on == job.created_on
    claimed = board.claim_next("owner-a")
    assert claimed == job and claimed.loaded_book is not None


def test_a_delayed_post_with_its_book(board: JobBoard, store: Persistence) -> None:
    book = LogBook("later")
    job = board.post("later", book, delay=3600, save_book_in=store)
    assert store.get_logbook(book.uuid).meta["job_uuid"] == job.uuid
    assert board.claim_next("owner-a") is None
    assert board.state_of(job) is JobState.UNCLAIMED


def _refuse_posts_named(url: str, name: str) -> sa.Engine:
    """A trigger that makes the database refuse the insert of a job called ``name``: the
    failure comes after the book's writes, inside the post's statement or transaction."""
    engine = sa.create_engine(sa.make_url(url).set(
        drivername="postgresql+psycopg" if url.startswith("postgres") else "sqlite"))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "CREATE OR REPLACE FUNCTION legato_test_refuse() RETURNS trigger "
                "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$")
            conn.exec_driver_sql(
                "CREATE TRIGGER legato_test_refuse BEFORE INSERT ON legato_jb_jobs FOR EACH "
                f"ROW WHEN (NEW.name = '{name}') EXECUTE FUNCTION legato_test_refuse()")
        else:
            conn.exec_driver_sql(
                "CREATE TRIGGER legato_test_refuse BEFORE INSERT ON legato_jb_jobs FOR EACH "
                f"ROW WHEN NEW.name = '{name}' BEGIN SELECT RAISE(ABORT, 'refused'); END")
    return engine


def _books_and_jobs(store: Persistence, board: JobBoard) -> tuple[list[str], list[str]]:
    return ([b.uuid for b in store.get_logbooks(lazy=True)],
            [j.name for j in board.iterjobs()])


@pytest.mark.parametrize("layout", ["shared", "apart"])
def test_a_refused_post_leaves_neither_book_nor_job(layout: str, shared_url: str,
                                                    store: Persistence, board: JobBoard,
                                                    request: pytest.FixtureRequest) -> None:
    """A post the board refuses (details too large, a NUL, a book that is not JSON, the
    database refusing the job's row after the book's writes) leaves neither its book nor a
    job, whether the persistence shares the board's database (one transaction) or not (the
    book written first, destroyed again)."""
    if layout == "shared":
        books: Persistence = store
    else:  # the book in another database than the board's
        books = lp.connect(request.getfixturevalue(
            "postgres_url" if shared_url.startswith("sqlite") else "sqlite_url"))
        books.upgrade()
    engine = _refuse_posts_named(shared_url, "refused")
    try:
        assert board.shares_database(books) is (layout == "shared")
        before = _books_and_jobs(books, board)
        with pytest.raises(errors.JobTooLarge):
            board.post("big", LogBook("big"), {"x": "y" * (2 << 20)}, save_book_in=books)
        with pytest.raises(ValueError, match="NUL"):
            board.post("nul", LogBook("a\x00b"), save_book_in=books)
        bad = LogBook("bad")
        bad.meta["x"] = object()
        with pytest.raises(errors.SerializationError):
            board.post("bad", bad, save_book_in=books)
        with pytest.raises(errors.BoardUnavailable):
            board.post("refused", LogBook("refused"), save_book_in=books)
        assert _books_and_jobs(books, board) == before
        ok = board.post("fine", LogBook("fine"), save_book_in=books)
        assert ok.book_uuid in _books_and_jobs(books, board)[0]
    finally:
        engine.dispose()
        if books is not store:
            books.close()


def test_save_book_in_needs_a_book(board: JobBoard, store: Persistence) -> None:
    with pytest.raises(ValueError, match="needs a book"):
        board.post("no book", save_book_in=store)
    assert board.job_count == 0


def test_a_persistence_without_a_database_writes_in_no_transaction() -> None:
    memory = lp.connect("memory://")
    with pytest.raises(ValueError, match="no shared database"):
        memory.save_logbook_in(object(), LogBook("book"))
    assert memory.saves_in_one_statement(LogBook("book")) is False


def test_a_book_too_big_for_one_statement_still_posts_all_or_nothing(
        shared_url: str, board: JobBoard, store: Persistence) -> None:
    """A book of more rows than one statement takes: its writes and the job's run in one
    transaction (on PostgreSQL too, not in autocommit), and a refused job takes them back."""
    def big(name: str) -> LogBook:
        book = LogBook(name)
        flow = FlowDetail("flow")
        for index in range(80):
            flow.add(TaskDetail(f"task-{index}"))
        book.add(flow)
        return book

    assert store.saves_in_one_statement(big("big")) is False
    engine = _refuse_posts_named(shared_url, "refused")
    try:
        with pytest.raises(errors.BoardUnavailable):
            board.post("refused", big("refused"), save_book_in=store)
        assert _books_and_jobs(store, board) == ([], [])
        seen: list[tuple[str, bool]] = []

        def executed(conn: sa.Connection, _cursor: Any, statement: str, *_rest: Any) -> None:
            autocommit = _autocommit(conn)
            seen.append((statement.split(None, 1)[0], autocommit))

        sa.event.listen(sa.Engine, "before_cursor_execute", executed)
        try:
            job = board.post("fine", big("fine"), save_book_in=store)
        finally:
            sa.event.remove(sa.Engine, "before_cursor_execute", executed)
        assert len(seen) > 1 and not any(autocommit for _, autocommit in seen)
        assert job.book_uuid is not None
        assert len(next(iter(store.get_logbook(job.book_uuid)))) == 80
    finally:
        engine.dispose()


def _autocommit(conn: sa.Connection) -> bool:
    """Whether ``conn`` runs each statement as its own transaction: the driver's connection
    says (autocommit may be set on the engine, not in the connection's options)."""
    return getattr(conn.connection.driver_connection, "autocommit", None) is True
