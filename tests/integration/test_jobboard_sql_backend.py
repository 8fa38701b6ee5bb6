"""SQL jobboard specifics: LISTEN/NOTIFY wake-ups, index-only claims, concurrent schema setup."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import threading
import uuid
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

from legato import errors, jobboard
from legato._sql import migrate
from legato.jobboard.sql import PostgresJobBoard, SQLJobBoard
from legato.jobboard.sql import tables as sql_tables


def _engine(url: str) -> sa.Engine:
    parsed = sa.make_url(url)
    driver = "postgresql+psycopg" if parsed.drivername.startswith("postgres") else "sqlite"
    return sa.create_engine(parsed.set(drivername=driver))


def _wait_in_thread(board: jobboard.JobBoard, timeout: float) -> tuple[threading.Thread,
                                                                        list[bool]]:
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(board.wait(timeout)))
    thread.start()
    return thread, result


def test_postgres_wait_wakes_by_notify_not_polling(postgres_url: str) -> None:
    # With a one-minute poll interval, only a notification can end this wait in time.
    with jobboard.connect(postgres_url, poll_interval=60) as waiter, \
            jobboard.connect(postgres_url) as poster:
        assert isinstance(waiter, PostgresJobBoard) and waiter.CAPABILITIES.notifications
        assert waiter.wait(timeout=0.2) is False  # starts the listener
        thread, result = _wait_in_thread(waiter, 20)
        poster.post("wake up")
        thread.join(30)
        assert result == [True]


def test_postgres_listener_reconnects(postgres_url: str) -> None:
    name = f"waiter-{uuid.uuid4().hex[:8]}"
    with jobboard.connect(postgres_url, poll_interval=60, name=name) as waiter, \
            jobboard.connect(postgres_url) as poster:
        assert waiter.wait(timeout=0.2) is False
        engine = _engine(postgres_url)
        try:
            with engine.begin() as conn:  # only this board's listener: others share the server
                killed = conn.execute(sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = :app"), {"app": f"legato-listen:{name}"}).scalar()
        finally:
            engine.dispose()
        assert killed and killed >= 1
        thread, result = _wait_in_thread(waiter, 20)
        poster.post("after the listener was killed")
        thread.join(30)
        assert result == [True]


def test_claim_next_walks_the_claim_order_index_sqlite(sqlite_url: str) -> None:
    with jobboard.connect(sqlite_url) as board:
        board.post("x")
        engine = _engine(sqlite_url)
        try:
            with engine.connect() as conn:
                plan = " ".join(str(row[-1]) for row in conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN SELECT sequence FROM legato_jb_jobs "
                    "WHERE (state = 'UNCLAIMED' OR lease_expires <= 1) "
                    "AND (available_at IS NULL OR available_at <= 1) "
                    "ORDER BY priority DESC, sequence LIMIT 1"))
        finally:
            engine.dispose()
    assert "legato_jb_jobs_claim_order" in plan
    assert "TEMP B-TREE" not in plan  # no sort of the whole table


def test_claim_next_walks_the_claim_order_index_postgres(postgres_url: str) -> None:
    with jobboard.connect(postgres_url) as board:
        assert isinstance(board, SQLJobBoard)
        engine = _engine(postgres_url)
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql(
                    "INSERT INTO legato_jb_jobs (uuid, name, details, priority, created_on, "
                    "state, attempts, fence) SELECT md5(g::text), 'bulk', '{}', mod(g, 5) - 2, 0, "
                    "'UNCLAIMED', 0, 0 FROM generate_series(1, 20000) g")
                conn.exec_driver_sql("ANALYZE legato_jb_jobs")
                plan = " ".join(row[0] for row in conn.exec_driver_sql(
                    "EXPLAIN SELECT sequence FROM legato_jb_jobs "
                    "WHERE (state = 'UNCLAIMED' OR lease_expires <= 1) "
                    "AND (available_at IS NULL OR available_at <= 1) "
                    "ORDER BY priority DESC, sequence LIMIT 1 FOR UPDATE SKIP LOCKED"))
        finally:
            engine.dispose()
        assert board.claim_next("owner-a") is not None
    assert "legato_jb_jobs_claim_order" in plan and "Sort" not in plan


def _create_schema(url: str) -> None:
    engine = jobboard.connect(url)
    assert isinstance(engine, SQLJobBoard)
    engine.connect()
    engine.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_schema_creation_is_safe_from_many_processes(backend: str,
                                                     request: pytest.FixtureRequest) -> None:
    url: str = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "postgres_url")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_create_schema, args=(url,)) for _ in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert [proc.exitcode for proc in procs] == [0, 0, 0]
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            versions = conn.exec_driver_sql(
                f"SELECT version_num FROM {sql_tables.VERSION_TABLE}").scalars().all()
    finally:
        engine.dispose()
    assert versions == [migrate.JOBBOARD.head()]


def test_postgres_trigger_wakes_waiters_on_direct_sql(postgres_url: str) -> None:
    """Notifications come from triggers, so a row inserted by other tools wakes waiters too."""
    with jobboard.connect(postgres_url, poll_interval=60) as waiter:
        assert waiter.wait(timeout=0.2) is False
        thread, result = _wait_in_thread(waiter, 20)
        engine = _engine(postgres_url)
        try:
            with engine.begin() as conn:
                conn.execute(sql_tables.jobs.insert().values(
                    uuid=str(uuid.uuid4()), name="by hand", details="{}", priority=0,
                    created_on=0.0, state="UNCLAIMED", attempts=0, fence=0))
        finally:
            engine.dispose()
        thread.join(30)
        assert result == [True]
        assert [job.name for job in waiter.iterjobs()] == ["by hand"]


# -- garbage rows --------------------------------------------------------------------------------

def _deep_json(depth: int) -> str:
    return '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)


def _plant(url: str, *rows: dict[str, object]) -> None:
    """Insert job rows behind the board's back, as another tool (or an attacker) would."""
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            for values in rows:
                row: dict[str, object] = {
                    "uuid": str(uuid.uuid4()), "name": "garbage", "details": "{}",
                    "priority": 0, "created_on": 1.0, "state": "UNCLAIMED", "attempts": 0,
                    "fence": 0}
                row.update(values)
                conn.execute(sql_tables.jobs.insert().values(**row))
    finally:
        engine.dispose()


_SQL_GARBAGE: dict[str, dict[str, object]] = {
    "deep": {"details": _deep_json(975)},
    "not an object": {"details": "[1, 2]"},
    "not json": {"details": "{nope"},
    "bad state": {"state": "EXPLODED"},
}


@pytest.mark.parametrize(("backend", "kind"), [
    *((backend, kind) for backend in ("sqlite", "postgresql") for kind in _SQL_GARBAGE),
    # Only SQLite stores such values: PostgreSQL's column types refuse them.
    ("sqlite", "bad types"), ("sqlite", "not utf-8")])
def test_a_garbage_row_is_set_aside_and_the_jobs_after_it_flow(
        backend: str, kind: str, request: pytest.FixtureRequest,
        caplog: pytest.LogCaptureFixture) -> None:
    """A row no board could have written (details nested 975 deep once stopped the board)
    never stops the jobs posted after it: claim_next claims those, skips the garbage with one
    warning and never hands it out; iteration, wait and job_count carry on."""
    url: str = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "postgres_url")
    with jobboard.connect(url) as board:
        if kind == "bad types":  # SQLite keeps text in an integer column
            _plant(url, {"uuid": "garbage-uuid", "priority": "abc", "fence": "abc"})
        elif kind == "not utf-8":
            _plant(url, {"uuid": "garbage-uuid"})
            with _engine(url).begin() as conn:
                conn.execute(sa.text("UPDATE legato_jb_jobs SET details = CAST(x'7b22a0ff22"
                                     "3a317d' AS TEXT), name = CAST(x'ff00fe' AS TEXT)"))
        else:
            _plant(url, {**_SQL_GARBAGE[kind], "uuid": "garbage-uuid"})
        normal = [board.post(f"normal-{i}").uuid for i in range(3)]
        caplog.set_level(logging.WARNING, logger="legato.jobboard")
        assert board.job_count == 4
        listed = [job.uuid for job in board.iterjobs()]
        assert board.wait(timeout=0) is True
        claimed = []
        for _ in range(10):
            job = board.claim_next("worker")
            if job is not None:
                claimed.append(job.uuid)
        if kind == "not utf-8":  # read with replacement characters: an odd job, not garbage
            assert set(claimed) == {"garbage-uuid", *normal}
            return
        assert claimed == normal
        assert listed == normal
        assert board.job_count == 4, "garbage is set aside, never deleted"
        warned = [r.getMessage() for r in caplog.records if "garbage-uuid" in r.getMessage()]
        assert len(warned) == 1, warned
        with pytest.raises(errors.GarbageRecord):
            board.get("garbage-uuid")


@pytest.mark.parametrize("every", [10, 0])
def test_sqlite_board_wal_is_checkpointed_and_truncated_every_n_writes(
        sqlite_url: str, every: int) -> None:
    """The board's writes truncate the ``-wal`` file every ``wal_checkpoint_every`` writes
    (SQLite's automatic checkpoint never shrinks it); with 0 it grows past that."""
    with jobboard.connect(sqlite_url, wal_checkpoint_every=every) as board:
        for i in range(400):  # ~6.5 MB of posts, claims and consumes
            board.post(f"job-{i}", details={"pad": "x" * 16_000})
        while (job := board.claim_next("worker")) is not None:
            board.consume(job, "worker")
        path = sa.make_url(sqlite_url).database
        assert path is not None
        wal = os.path.getsize(path + "-wal")
        bound = 1024 * 1024
        assert (wal <= bound) if every else (wal > bound), wal


def test_wal_checkpoint_every_must_be_a_count(sqlite_url: str) -> None:
    with pytest.raises(ValueError, match="wal_checkpoint_every"):
        jobboard.connect(sqlite_url, wal_checkpoint_every=-1)


def _as_made_by_hand(engine: sa.Engine, version: int) -> None:
    """Turn the board's tables into what releases before the Alembic lineage made by hand:
    no version table of Alembic's, ``legato_jb_schema`` at ``version`` (1: no cancel column)."""
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE {sql_tables.VERSION_TABLE}")
        conn.exec_driver_sql("CREATE TABLE legato_jb_schema (version INTEGER NOT NULL)")
        conn.exec_driver_sql(f"INSERT INTO legato_jb_schema (version) VALUES ({version})")
        if version == 1:
            conn.exec_driver_sql("ALTER TABLE legato_jb_jobs DROP COLUMN cancel")


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_board_made_by_the_hand_written_setup_is_adopted(
        backend: str, version: int, request: pytest.FixtureRequest) -> None:
    """Databases made by earlier releases (tables created by hand, ``legato_jb_schema`` at
    version 1 or 2) keep their jobs, get the cancel column when it is missing and are stamped
    at the lineage's head; on PostgreSQL their triggers still wake waiters."""
    url: str = request.getfixturevalue(f"{backend}_url")
    with jobboard.connect(url) as board:
        job = board.post("made before the Alembic lineage")
    engine = _engine(url)
    try:
        _as_made_by_hand(engine, version)
        with jobboard.connect(url, poll_interval=60) as board:
            claimed = board.claim(board.get(job.uuid), "owner-a", ttl=60)
            assert board.cancel(job, "ops") is False
            mark = board.renew(claimed, "owner-a")
            assert mark is not None and mark.startswith("cancelled by ops at ")
            if backend == "postgres":
                assert board.wait(timeout=0.2) is False  # starts the listener
                thread, result = _wait_in_thread(board, 20)
                with jobboard.connect(url) as poster:
                    poster.post("wake up")
                thread.join(30)
                assert result == [True]
        with engine.connect() as conn:
            assert migrate.JOBBOARD.current(conn) == migrate.JOBBOARD.head()
            assert conn.exec_driver_sql("SELECT version FROM legato_jb_schema").scalar() == 2
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_url_naming_the_driver_is_served_by_it(backend: str,
                                                 request: pytest.FixtureRequest) -> None:
    """``postgresql+psycopg://`` and ``sqlite+pysqlite://`` are the board's own drivers,
    named; the board used to drop the name (and would have used psycopg for any other)."""
    url: str = request.getfixturevalue(f"{backend}_url")
    scheme, rest = url.split("://", 1)
    named = f"{scheme.split('+')[0]}+{'psycopg' if backend == 'postgres' else 'pysqlite'}://"
    with jobboard.connect(named + rest) as board:
        assert isinstance(board, PostgresJobBoard if backend == "postgres" else SQLJobBoard)
        job = board.post("through the named driver")
        assert board.claim_next("owner-a") == job


@pytest.mark.parametrize("url", ["postgresql+psycopg2://u@localhost/db",
                                 "postgresql+pg8000://u@localhost/db",
                                 "sqlite+aiosqlite:///x.db"])
def test_a_driver_the_board_does_not_take_is_refused_by_name(url: str) -> None:
    with pytest.raises(errors.UnknownBackend, match=r"does not work with the '\w+' driver"):
        jobboard.connect(url)


def _sqlite_plan(url: str, query: str) -> str:
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            return " ".join(str(row[-1]) for row in conn.exec_driver_sql(
                f"EXPLAIN QUERY PLAN {query}"))
    finally:
        engine.dispose()


def test_iter_claimed_and_deep_pages_read_indexes_sqlite(sqlite_url: str) -> None:
    """``iter_claimed`` reads the partial index of claimed rows; a page after a position is two
    range reads of the claim order index (what ``_page`` sends), never a walk from its top."""
    with jobboard.connect(sqlite_url) as board:
        board.claim(board.post("x"), "owner-a")
        assert [job.uuid for job in board.iter_claimed()] == [job.uuid for job in
                                                              board.iterjobs()]
    claimed = _sqlite_plan(sqlite_url, "SELECT * FROM legato_jb_jobs WHERE state = 'CLAIMED' "
                                       "AND lease_expires > 1")
    assert "legato_jb_jobs_claimed" in claimed
    for where in ("priority = 0 AND sequence > 40", "priority < 0"):
        plan = _sqlite_plan(sqlite_url, f"SELECT * FROM legato_jb_jobs WHERE {where} "
                                        "ORDER BY priority DESC, sequence LIMIT 5")
        assert "SEARCH" in plan and "legato_jb_jobs_claim_order" in plan, plan
        assert "TEMP B-TREE" not in plan


def test_iter_claimed_reads_the_claimed_index_postgres(postgres_url: str) -> None:
    with jobboard.connect(postgres_url) as board:
        engine = _engine(postgres_url)
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql(
                    "INSERT INTO legato_jb_jobs (uuid, name, details, priority, created_on, "
                    "state, attempts, fence) SELECT md5(g::text), 'bulk', '{}', 0, 0, "
                    "'UNCLAIMED', 0, 0 FROM generate_series(1, 20000) g")
                conn.exec_driver_sql("ANALYZE legato_jb_jobs")
                plan = " ".join(row[0] for row in conn.exec_driver_sql(
                    "EXPLAIN SELECT * FROM legato_jb_jobs WHERE state = 'CLAIMED' "
                    "AND lease_expires > 1"))
        finally:
            engine.dispose()
        assert list(board.iter_claimed()) == []
    assert "legato_jb_jobs_claimed" in plan


def test_postgres_post_is_one_statement_without_begin_or_commit(postgres_url: str) -> None:
    # A post is one INSERT: on PostgreSQL it runs as its own transaction (autocommit), so it
    # costs no BEGIN and no COMMIT round trip, and still wakes a waiter (its trigger notifies).
    transactions: list[object] = []

    def began(conn: sa.Connection) -> None:
        if not _autocommit(conn):
            transactions.append(conn)

    with jobboard.connect(postgres_url, poll_interval=60) as waiter, \
            jobboard.connect(postgres_url) as poster:
        assert waiter.wait(timeout=0.2) is False  # starts the listener
        thread, result = _wait_in_thread(waiter, 20)
        sa.event.listen(sa.Engine, "begin", began)
        try:
            job = poster.post("one statement", details={"a": 1})
        finally:
            sa.event.remove(sa.Engine, "begin", began)
        thread.join(30)
        assert result == [True]
        assert transactions == []
        assert waiter.get(job.uuid).details == {"a": 1}
        assert job.record.sequence > 0  # RETURNING gave the post's place in line


def test_postgres_wait_woken_by_a_post_returns_without_reading_again(postgres_url: str) -> None:
    # Woken by a post's notification, wait() answers at once: the claim that follows finds
    # the job, so reading the board first would only add a round trip to the job's start.
    with jobboard.connect(postgres_url, poll_interval=60) as waiter, \
            jobboard.connect(postgres_url) as poster:
        assert waiter.wait(timeout=0.2) is False  # starts the listener
        asleep = threading.Event()
        sleep = waiter._wait_for_change  # watched, not replaced

        def watched(timeout: float) -> bool:
            asleep.set()
            return sleep(timeout)

        waiter._wait_for_change = watched  # type: ignore[method-assign]
        statements: list[str] = []
        thread, result = _wait_in_thread(waiter, 20)

        def executed(*args: object) -> None:
            if threading.current_thread() is thread:
                statements.append(str(args[2]))

        assert asleep.wait(20)
        sa.event.listen(sa.Engine, "before_cursor_execute", executed)
        try:
            posted = poster.post("wake up")
            thread.join(30)
        finally:
            sa.event.remove(sa.Engine, "before_cursor_execute", executed)
        assert result == [True]
        assert statements == []
        assert waiter.claim_next("owner-a") == posted


def test_postgres_reads_and_single_writes_switch_no_isolation_level(postgres_url: str) -> None:
    # The board's PostgreSQL connections are in autocommit for good: a post, a claim and a
    # read set no isolation level on their connection (and none is reset on its return);
    # a transaction of many statements still runs in one (BEGIN ... COMMIT).
    switched: list[object] = []
    began: list[bool] = []
    here = threading.get_ident()  # this test's calls, not another thread's

    def options(_conn: sa.Connection, opts: dict[str, object]) -> None:
        if "isolation_level" in opts and threading.get_ident() == here:
            switched.append(opts["isolation_level"])

    def begin(conn: sa.Connection) -> None:
        if threading.get_ident() == here:
            began.append(_autocommit(conn))

    with jobboard.connect(postgres_url) as board:
        sa.event.listen(sa.Engine, "set_connection_execution_options", options)
        try:
            job = board.post("autocommit")
            assert board.get(job.uuid) == job
            claimed = board.claim_next("worker")
            assert switched == []
            sa.event.listen(sa.Engine, "begin", begin)
            try:
                assert claimed is not None
                board.consume(claimed, "worker")
            finally:
                sa.event.remove(sa.Engine, "begin", begin)
        finally:
            sa.event.remove(sa.Engine, "set_connection_execution_options", options)
        assert began == [False]
        assert board.job_count == 0


def test_postgres_claim_next_is_one_statement_without_begin_or_commit(postgres_url: str) -> None:
    # The claim and the row as it was, in one autocommitted UPDATE: no BEGIN/COMMIT round trip.
    seen: list[tuple[str, bool]] = []

    def executed(conn: sa.Connection, *args: object) -> None:
        autocommit = _autocommit(conn)
        seen.append((str(args[1]).split(None, 1)[0], autocommit))

    with jobboard.connect(postgres_url) as board:
        posted = board.post("one statement")
        sa.event.listen(sa.Engine, "before_cursor_execute", executed)
        try:
            job = board.claim_next("worker")
        finally:
            sa.event.remove(sa.Engine, "before_cursor_execute", executed)
        assert job == posted and job is not None and job.fence == 1
        assert seen == [("UPDATE", True)]


def test_postgres_an_undecodable_row_claimed_is_put_back_as_it_was(postgres_url: str) -> None:
    # The claim lands (one autocommitted statement), then a second one puts the row back.
    with jobboard.connect(postgres_url) as board:
        _plant(postgres_url, {"uuid": "garbage-uuid", "details": "{nope", "priority": 2,
                              "attempts": 3, "fence": 7, "available_at": 0.5})
        normal = board.post("normal")
        assert board.claim_next("worker") == normal
        engine = _engine(postgres_url)
        try:
            with engine.connect() as conn:
                row = conn.execute(sa.select(sql_tables.jobs).where(
                    sql_tables.jobs.c.uuid == "garbage-uuid")).one()
        finally:
            engine.dispose()
        assert (row.state, row.owner, row.fence, row.attempts, row.lease_expires,
                row.available_at) == ("UNCLAIMED", None, 7, 3, None, 0.5)


# -- one notification per post -------------------------------------------------------------------

@pytest.fixture
def own_database_url(postgres_url: str) -> Iterator[str]:
    """A PostgreSQL database of this test's own: notification channels are per database, and
    other tests' schemas share the usual one."""
    import psycopg

    base = sa.make_url(postgres_url).set(query={})
    name = f"legato_notify_{uuid.uuid4().hex[:10]}"
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _notifications(url: str, act: Callable[[], object], *, channel: str | None = None
                   ) -> list[str]:
    """The payloads sent on the board's channel (``CHANNEL_QUERY``'s, or ``channel``) while
    ``act`` runs, in order (a sentinel sent after it marks the end: notifications arrive in
    commit order)."""
    import psycopg

    conninfo = sa.make_url(url).set(drivername="postgresql").render_as_string(
        hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as listener, \
            psycopg.connect(conninfo, autocommit=True) as sender:
        if channel is None:
            row = listener.execute(sql_tables.CHANNEL_QUERY).fetchone()
            assert row is not None
            channel = str(row[0])
        listener.execute(f"LISTEN {channel}")
        act()
        sender.execute("SELECT pg_notify(%s, 'test-end')", (channel,))
        payloads: list[str] = []
        for note in listener.notifies(timeout=30):
            if note.payload == "test-end":
                return payloads
            payloads.append(note.payload)
    raise AssertionError(f"no end sentinel; got {payloads}")


def _posts(board: jobboard.JobBoard, url: str) -> Callable[[], None]:
    from legato import persistence as lp
    from legato.persistence.models import LogBook

    def act() -> None:
        board.post("plain")
        store = lp.connect(url)
        store.upgrade()
        try:
            board.post("with book", LogBook("book"), save_book_in=store)
        finally:
            store.close()
        board.post("later", delay=3600)
    return act


def test_postgres_a_post_sends_one_notification(own_database_url: str) -> None:
    """The insert trigger alone notifies: ``POST_PAYLOAD`` for a job claimable now, an empty
    payload for a delayed one, one per post (the board's INSERT used to send its own as
    well); a consume's delete sends one, empty."""
    with jobboard.connect(own_database_url) as board:
        assert _notifications(own_database_url, _posts(board, own_database_url)) == [
            sql_tables.POST_PAYLOAD, sql_tables.POST_PAYLOAD, ""]
        job = board.claim_next("owner-a")
        assert job is not None
        assert _notifications(own_database_url, lambda: board.consume(job, "owner-a")) == [""]


#: The one channel of every board in the database, before revision j0004.
_OLD_CHANNEL = "legato_jobboard"


def _as_at_j0002(url: str) -> None:
    """Put a board's PostgreSQL schema back where revision j0002 left it: one trigger for
    inserts and deletes, its notification's payload empty, on the database's one channel."""
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE OR REPLACE FUNCTION legato_jb_notify() RETURNS trigger LANGUAGE plpgsql "
                f"AS $$ BEGIN PERFORM pg_notify('{_OLD_CHANNEL}', ''); RETURN NULL; END $$")
            conn.exec_driver_sql("DROP TRIGGER legato_jb_jobs_posted ON legato_jb_jobs")
            conn.exec_driver_sql("DROP TRIGGER legato_jb_jobs_gone ON legato_jb_jobs")
            conn.exec_driver_sql("DROP FUNCTION legato_jb_posted()")
            conn.exec_driver_sql(
                "CREATE TRIGGER legato_jb_jobs_posted_or_gone AFTER INSERT OR DELETE ON "
                "legato_jb_jobs FOR EACH STATEMENT EXECUTE FUNCTION legato_jb_notify()")
            conn.exec_driver_sql(f"UPDATE {sql_tables.VERSION_TABLE} SET version_num = 'j0002'")
    finally:
        engine.dispose()


def test_postgres_a_j0002_schema_is_upgraded_to_one_notification_per_post_per_schema(
        own_database_url: str) -> None:
    with jobboard.connect(own_database_url) as board:
        kept = board.post("posted at j0002")
    _as_at_j0002(own_database_url)
    engine = _engine(own_database_url)
    try:
        def insert_by_hand() -> None:
            with engine.begin() as conn:
                conn.exec_driver_sql(
                    "INSERT INTO legato_jb_jobs (uuid, name, details, priority, created_on, "
                    "state, attempts, fence) VALUES ('by-hand', 'by hand', '{}', 2, 0, "
                    "'UNCLAIMED', 0, 0)")
        assert _notifications(own_database_url, insert_by_hand,
                              channel=_OLD_CHANNEL) == [""]  # j0002's trigger
        with jobboard.connect(own_database_url) as board:
            with engine.connect() as conn:
                assert migrate.JOBBOARD.current(conn) == migrate.JOBBOARD.head() == "j0004"
            assert _notifications(own_database_url, _posts(board, own_database_url)) == [
                sql_tables.POST_PAYLOAD, sql_tables.POST_PAYLOAD, ""]
            # j0004: the schema's own channel, nothing on the database's
            assert _notifications(own_database_url, _posts(board, own_database_url),
                                  channel=_OLD_CHANNEL) == []
            assert board.get(kept.uuid) == kept and board.get("by-hand").name == "by hand"
    finally:
        engine.dispose()


# -- one channel per schema ----------------------------------------------------------------------

@contextlib.contextmanager
def _schema_url(postgres_url: str, schema: str) -> Iterator[str]:
    """A URL of ``postgres_url``'s database whose connections find their tables in ``schema``
    (made here, dropped afterwards)."""
    import psycopg
    from psycopg import sql

    base = sa.make_url(postgres_url).set(query={})
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        quoted = '"' + schema.replace('"', '""') + '"'
        yield base.set(query={"options": f"-csearch_path={quoted}"}).render_as_string(
            hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(schema)))


def _schema_pair(kind: str) -> tuple[str, str]:
    tag = uuid.uuid4().hex[:10]
    if kind == "63-characters":  # the longest names; they differ in their last character
        stem = f"legato_t_{tag}_".ljust(62, "x")
        return stem + "a", stem + "b"
    if kind == "quoted":  # names to quote, differing only in case
        return f'Legato-"{tag}".A', f'legato-"{tag}".a'
    return f"legato_t_{tag}_a", f"legato_t_{tag}_b"


@pytest.mark.parametrize("kind", ["plain", "63-characters", "quoted"])
def test_postgres_a_board_is_not_woken_by_another_schema(postgres_url: str, kind: str) -> None:
    """Two boards in two schemas of one database: a post, claim or consume on one sends
    nothing on the other's channel and wakes nobody there, and each still wakes for its own."""
    mine, theirs = _schema_pair(kind)
    with _schema_url(postgres_url, mine) as my_url, \
            _schema_url(postgres_url, theirs) as their_url, \
            jobboard.connect(my_url, poll_interval=60) as waiter, \
            jobboard.connect(their_url) as other:
        assert waiter.wait(timeout=0.2) is False  # starts the listener

        def their_job() -> None:
            other.post("posted in the other schema")
            claimed = other.claim_next("owner-b")
            assert claimed is not None
            other.consume(claimed, "owner-b")

        # Notifications arrive in commit order: what was sent on a channel during the calls
        # is known once a note sent after them comes back.
        assert _notifications(my_url, their_job) == []
        assert _notifications(their_url, their_job) == [sql_tables.POST_PAYLOAD, ""]
        other.post("waiting in the other schema")
        assert waiter.wait(timeout=0.2) is False
        posted = waiter.post("claimable")
        assert waiter.wait(timeout=20) is True
        assert waiter.claim_next("owner-a") == posted
        assert [job.name for job in other.iterjobs()] == ["waiting in the other schema"]


def _autocommit(conn: sa.Connection) -> bool:
    """Whether ``conn`` runs each statement as its own transaction: the driver's connection
    says (autocommit may be set on the engine, not in the connection's options)."""
    return getattr(conn.connection.driver_connection, "autocommit", None) is True
