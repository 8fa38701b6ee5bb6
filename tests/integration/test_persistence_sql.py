"""SQL persistence specifics: URLs and drivers, migrations from many processes, SQLite cascades
checked with raw SQL, and outages through a TCP proxy."""

from __future__ import annotations

import contextlib
import multiprocessing
import socket
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import sqlalchemy as sa

from legato import errors, persistence
from legato.persistence.base import Persistence
from legato.persistence.models import LogBook, TaskDetail
from legato.persistence.sql import SQLPersistence, tables
from legato.states import AtomState
from legato.testing.persistence import make_book, run_concurrent_upgrade
from legato.testing.proxy import TCPProxy

# -- URLs and drivers ----------------------------------------------------------------------


@pytest.mark.parametrize(("url", "dialect", "driver"), [
    ("sqlite:///x.db", "sqlite", "pysqlite"),
    ("postgresql://u@h/db", "postgresql", "psycopg"),
    ("postgres://u@h/db", "postgresql", "psycopg"),
    ("mysql://u@h/db", "mysql", "pymysql"),
    ("mariadb://u@h/db", "mariadb", "pymysql"),
    ("postgres+psycopg://u@h/db", "postgresql", "psycopg"),
])
def test_url_schemes_pick_a_driver(url: str, dialect: str, driver: str) -> None:
    backend = persistence.connect(url)
    try:
        assert isinstance(backend, SQLPersistence)
        assert backend._engine.dialect.name == dialect
        assert backend._engine.dialect.driver == driver
    finally:
        backend.close()


def test_missing_driver_names_the_extra() -> None:
    try:  # psycopg2 is not a dependency of any extra
        import psycopg2  # noqa: F401
    except ModuleNotFoundError:
        pass
    else:
        pytest.skip("psycopg2 happens to be installed")
    with pytest.raises(errors.MissingDriver, match=r"legato\[postgres\]") as info:
        persistence.connect("postgresql+psycopg2://u@h/db")
    assert info.value.extra == "postgres"


def test_unknown_option_is_refused() -> None:
    with pytest.raises(TypeError, match="conect_timeout"):
        persistence.connect("sqlite:///x.db", conect_timeout=3)


def test_password_is_hidden_in_repr() -> None:
    backend = persistence.connect("postgresql://user:s3cret@127.0.0.1/db")
    try:
        assert "s3cret" not in repr(backend)
    finally:
        backend.close()


def test_unknown_driver_is_unknown_backend() -> None:
    with pytest.raises(errors.UnknownBackend, match="nosuchdriver"):
        persistence.connect("postgresql+nosuchdriver://u@h/db")


# -- migrations ----------------------------------------------------------------------------


def test_validate_before_upgrade_fails(sqlite_url: str) -> None:
    with persistence.connect(sqlite_url) as backend:
        with pytest.raises(errors.StorageFailure, match="upgrade"):
            backend.validate()
        backend.upgrade()
        backend.validate()


@pytest.mark.parametrize("url_fixture", ["sqlite_url", "postgres_url", "mysql_url"])
def test_use_before_upgrade_says_so(url_fixture: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(url_fixture)
    with persistence.connect(url, retries=0) as backend, \
            pytest.raises(errors.StorageFailure, match=r"upgrade\(\)"):
        backend.get_logbook("nope")


def test_non_json_book_meta_is_serialization_error(sqlite_backend: Persistence) -> None:
    book = make_book()
    book.meta["bad"] = object()
    with pytest.raises(errors.SerializationError, match="logbook"):
        sqlite_backend.save_logbook(book)


@pytest.mark.parametrize("url_fixture", ["sqlite_url", "mysql_url"])
def test_upgrade_finishes_a_half_done_migration(url_fixture: str,
                                                request: pytest.FixtureRequest) -> None:
    # As left by a process killed mid-migration on MySQL, where DDL commits at once.
    url = request.getfixturevalue(url_fixture)
    with persistence.connect(url) as backend:
        assert isinstance(backend, SQLPersistence)
        with backend._engine.begin() as conn:
            tables.logbooks.create(conn)
        backend.upgrade()
        backend.validate()
        _assert_usable(url)


def test_concurrent_upgrade_sqlite(sqlite_url: str) -> None:
    run_concurrent_upgrade(sqlite_url, processes=4)
    _assert_usable(sqlite_url)


def test_concurrent_upgrade_postgres(postgres_url: str) -> None:
    run_concurrent_upgrade(postgres_url, processes=4)
    _assert_usable(postgres_url)


def test_concurrent_upgrade_mariadb(mysql_url: str) -> None:
    run_concurrent_upgrade(mysql_url, processes=4)
    _assert_usable(mysql_url)


def _assert_usable(url: str) -> None:
    with persistence.connect(url) as backend:
        backend.validate()
        book = make_book()
        backend.save_logbook(book)
        assert backend.get_logbook(book.uuid).flows == book.flows


# -- SQLite specifics ----------------------------------------------------------------------


@pytest.fixture
def sqlite_backend(sqlite_url: str) -> Iterator[Persistence]:
    backend = persistence.connect(sqlite_url)
    backend.upgrade()
    yield backend
    backend.close()


def _raw(sqlite_url: str) -> sqlite3.Connection:
    """A plain sqlite3 connection to the file, with none of the backend's settings."""
    path = sa.make_url(sqlite_url).database
    assert path
    return sqlite3.connect(path)


def test_sqlite_destroy_leaves_no_orphan_rows(sqlite_url: str,
                                              sqlite_backend: Persistence) -> None:
    doomed, kept = make_book(flows=2, atoms=3), make_book(flows=1, atoms=2)
    sqlite_backend.save_logbook(doomed)
    sqlite_backend.save_logbook(kept)
    sqlite_backend.destroy_logbook(doomed.uuid)
    raw = _raw(sqlite_url)
    try:
        counts = [raw.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                  for t in ("legato_logbooks", "legato_flowdetails", "legato_atomdetails")]
        orphans = raw.execute(
            "SELECT COUNT(*) FROM legato_atomdetails WHERE flow_uuid NOT IN "
            "(SELECT uuid FROM legato_flowdetails)").fetchone()[0]
        orphan_flows = raw.execute(
            "SELECT COUNT(*) FROM legato_flowdetails WHERE book_uuid NOT IN "
            "(SELECT uuid FROM legato_logbooks)").fetchone()[0]
    finally:
        raw.close()
    assert counts == [1, 1, 2]
    assert (orphans, orphan_flows) == (0, 0)


def test_sqlite_connections_enforce_foreign_keys_and_use_wal(
        sqlite_url: str, sqlite_backend: Persistence) -> None:
    assert isinstance(sqlite_backend, SQLPersistence)
    with sqlite_backend._engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    raw = _raw(sqlite_url)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()


def test_sqlite_second_object_sees_writes(sqlite_url: str,
                                          sqlite_backend: Persistence) -> None:
    book = make_book(atoms=2)
    sqlite_backend.save_logbook(book)
    with persistence.connect(sqlite_url) as other:
        atom = next(iter(next(iter(book))))
        atom.state = AtomState.SUCCESS
        other.update_atom_details(atom)
    assert sqlite_backend.get_atom_details(atom.uuid).state is AtomState.SUCCESS


# -- outages -------------------------------------------------------------------------------


def _outage(url: str, target: tuple[str, int], *, pre_ping: bool = True) -> None:
    with TCPProxy(*target) as proxy:
        backend = persistence.connect(proxy.url_for(url), connect_timeout=2, pre_ping=pre_ping,
                                      read_timeout=5, retries=2, retry_delay=0.05)
        try:
            backend.upgrade()
            book = make_book(atoms=2)
            backend.save_logbook(book)
            first, second = list(next(iter(book)))
            first.state, first.results = AtomState.SUCCESS, {"before": "cut"}
            backend.update_atom_details(first)

            proxy.cut()
            second.state = AtomState.SUCCESS
            with pytest.raises(errors.StorageFailure) as info:
                backend.update_atom_details(second)
            assert info.value.__cause__ is not None
            with pytest.raises(errors.StorageFailure):
                backend.get_logbook(book.uuid)
            with pytest.raises(errors.StorageFailure):
                backend.validate()

            proxy.restore()
            backend.update_atom_details(second)
            stored = {a.name: a for a in backend.get_atoms_for_flow(next(iter(book)).uuid)}
            assert stored[first.name] == first
            assert stored[second.name].state is AtomState.SUCCESS
            backend.validate()
        finally:
            backend.close()


@pytest.mark.parametrize("pre_ping", [True, False])
def test_postgres_outage_fails_then_recovers(postgres_url: str, pre_ping: bool) -> None:
    parts = urlsplit(postgres_url)
    _outage(postgres_url, (parts.hostname or "127.0.0.1", parts.port or 5432),
            pre_ping=pre_ping)


def test_mariadb_outage_fails_then_recovers(mysql_url: str) -> None:
    parts = urlsplit(mysql_url)
    _outage(mysql_url, (parts.hostname or "127.0.0.1", parts.port or 3306))


def test_unreachable_server_is_storage_failure() -> None:
    with TCPProxy("127.0.0.1", 1) as proxy:  # nothing listens on port 1
        proxy.cut()
        backend = persistence.connect(
            f"postgresql://postgres@127.0.0.1:{proxy.port}/test", connect_timeout=1, retries=0)
        try:
            with pytest.raises(errors.StorageFailure):
                backend.upgrade()
            with pytest.raises(errors.StorageFailure):
                backend.save_logbook(make_book())
        finally:
            backend.close()


@pytest.mark.parametrize("scheme", ["postgresql", "mysql"])
def test_silent_server_fails_instead_of_hanging(scheme: str) -> None:
    # A listener that never answers (the kernel completes the handshake, nobody speaks): the
    # driver must give up, not wait forever. pytest-timeout is the guard. PostgreSQL's
    # connect_timeout covers the whole start-up; PyMySQL reads the server's greeting under
    # read_timeout (EngineSettings), so both are short here.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        backend = persistence.connect(f"{scheme}://root@127.0.0.1:{port}/test",
                                      connect_timeout=1, read_timeout=2, retries=0)
        try:
            with pytest.raises(errors.StorageFailure):
                backend.get_logbook("any")
        finally:
            backend.close()


def test_update_of_unsaved_atom_is_not_retried_as_failure(sqlite_backend: Persistence) -> None:
    with pytest.raises(errors.NotFound):
        sqlite_backend.update_atom_details(TaskDetail("nobody"))


# -- fork ----------------------------------------------------------------------------------


@pytest.mark.parametrize("url_fixture", ["sqlite_url", "postgres_url"])
def test_forked_child_opens_its_own_connections(url_fixture: str,
                                                request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(url_fixture)
    with persistence.connect(url) as backend:
        backend.upgrade()
        book = make_book(atoms=2)
        backend.save_logbook(book)  # the pool now holds a connection
        first, second = list(next(iter(book)))

        def child() -> None:
            first.state = AtomState.SUCCESS
            backend.update_atom_details(first)

        proc = multiprocessing.get_context("fork").Process(target=child)
        proc.start()
        proc.join(30)
        assert proc.exitcode == 0
        second.state = AtomState.FAILURE
        backend.update_atom_details(second)  # the parent's pooled connection still works
        states = [a.state for a in backend.get_atoms_for_flow(next(iter(book)).uuid)]
        assert states == [AtomState.SUCCESS, AtomState.FAILURE]


# -- the SQLite WAL is truncated on a schedule ---------------------------------------------------


def _fill(backend: Persistence, writes: int) -> None:
    """``writes`` write transactions of ~16 KB each: books, then atom updates."""
    book = make_book(atoms=1)
    backend.save_logbook(book)
    (flow,) = book.flows.values()
    (atom,) = flow.atoms.values()
    for i in range(writes // 2):
        backend.save_logbook(LogBook(f"book-{i}", meta={"pad": "x" * 16_000}))
        atom.state, atom.results = AtomState.SUCCESS, {"pad": "y" * 16_000, "i": i}
        backend.update_atom_details(atom)


@pytest.mark.parametrize("every", [10, 0])
def test_sqlite_wal_is_checkpointed_and_truncated_every_n_writes(tmp_path: Path,
                                                                  every: int) -> None:
    """SQLite's automatic checkpoint never shrinks the ``-wal`` file (a full small volume
    stayed full): with ``wal_checkpoint_every`` the writers truncate it, so it stays within
    what that many writes take; with 0 it grows past that."""
    path = tmp_path / "p.db"
    backend = persistence.connect(f"sqlite:///{path}", wal_checkpoint_every=every)
    try:
        backend.upgrade()
        _fill(backend, 400)  # ~6.5 MB written in all
        wal = path.with_name(path.name + "-wal").stat().st_size
        bound = 1024 * 1024  # ten ~16 KB writes and their index pages, with room to spare
        assert (wal <= bound) if every else (wal > bound), wal
    finally:
        backend.close()


def test_wal_checkpoint_every_must_be_a_count() -> None:
    with pytest.raises(ValueError, match="wal_checkpoint_every"):
        persistence.connect("sqlite:///x.db", wal_checkpoint_every=-1)


@pytest.mark.parametrize("url_fixture", ["sqlite_url", "postgres_url", "mysql_url"])
def test_upgrade_from_0001_adds_the_fence_and_keeps_the_data(
        request: pytest.FixtureRequest, url_fixture: str) -> None:
    from alembic import command

    from legato._sql import migrate as _migrate
    from legato.persistence.models import Fence, new_uuid

    url = request.getfixturevalue(url_fixture)
    backend = persistence.connect(url)
    assert isinstance(backend, SQLPersistence)
    try:
        with backend._engine.begin() as conn:  # a database made before fenced writes
            _old_logbooks(conn)
            config = _migrate.PERSISTENCE.config()
            config.attributes["connection"] = conn
            command.upgrade(config, "0001")
        with backend._engine.connect() as conn:
            assert "fence" not in {c["name"] for c in sa.inspect(conn).get_columns("flowdetails")}
        book = make_book(atoms=1)
        with backend._engine.begin() as conn:  # the tables' names before migration 0004
            conn.execute(_old_table("logbooks", "uuid", "name", "created_at").insert(),
                         {"uuid": book.uuid, "name": book.name, "created_at": 0})
            (flow,) = book.flows.values()
            conn.execute(_old_table("flowdetails", "uuid", "book_uuid", "name", "state")
                         .insert().values(uuid=flow.uuid, book_uuid=book.uuid, name=flow.name,
                                          state="RUNNING"))
        backend.upgrade()
        backend.validate()
        fence = Fence(new_uuid(), 1)
        assert backend.take_flow(flow.uuid, fence) is True
        backend.update_flow_state(flow.uuid, None, fence=fence)
        with pytest.raises(errors.FencedOut):
            backend.update_flow_state(flow.uuid, None, fence=Fence(fence.job, 2))
        assert backend.get_logbook(book.uuid, lazy=True).name == book.name
    finally:
        backend.close()


def _old_logbooks(conn: sa.Connection) -> None:
    """Create ``logbooks`` as older Legatos named it: migration 0001 then makes the other
    tables under their old names too, as those did (it finishes their half-done runs)."""
    old = sa.MetaData()
    tables.logbooks.to_metadata(old, name="logbooks")
    old.create_all(conn)


@pytest.mark.parametrize("url_fixture", ["sqlite_url", "postgres_url", "mysql_url"])
def test_an_applications_own_logbooks_table_is_left_alone(
        request: pytest.FixtureRequest, url_fixture: str) -> None:
    url = request.getfixturevalue(url_fixture)
    backend = persistence.connect(url)
    assert isinstance(backend, SQLPersistence)
    try:
        with backend._engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE logbooks (id INTEGER PRIMARY KEY, title TEXT)"))
            conn.execute(sa.text("INSERT INTO logbooks (id, title) VALUES (1, 'mine')"))
        backend.upgrade()
        backend.validate()
        book = make_book()
        backend.save_logbook(book)
        assert backend.get_logbook(book.uuid).flows == book.flows
        with backend._engine.connect() as conn:
            assert conn.execute(sa.text("SELECT title FROM logbooks")).scalar() == "mine"
    finally:
        backend.close()


def _old_table(name: str, *columns: str) -> sa.TableClause:
    """A table as an older migration named it (``tables`` describes the newest schema)."""
    return sa.table(name, *(sa.column(c) for c in columns))


@pytest.mark.parametrize("url_fixture", ["sqlite_url", "postgres_url", "mysql_url"])
def test_upgrade_from_0002_prefixes_the_tables_and_keeps_the_data(
        request: pytest.FixtureRequest, url_fixture: str) -> None:
    """A database made at 0002 (tables ``logbooks``, ``flowdetails``, ``atomdetails``) is
    upgraded to ``legato_``-prefixed tables with every row, the foreign keys' cascade and the
    fence; an application's own ``logbooks`` table can live beside them afterwards."""
    from alembic import command

    from legato._sql import migrate as _migrate
    from legato.persistence.models import Fence, new_uuid

    url = request.getfixturevalue(url_fixture)
    backend = persistence.connect(url)
    assert isinstance(backend, SQLPersistence)
    try:
        with backend._engine.begin() as conn:  # a database made before the prefix
            _old_logbooks(conn)
            config = _migrate.PERSISTENCE.config()
            config.attributes["connection"] = conn
            command.upgrade(config, "0002")
        with backend._engine.connect() as conn:
            assert {"logbooks", "flowdetails", "atomdetails"} <= set(
                sa.inspect(conn).get_table_names())
        book = make_book(atoms=2)
        (flow,) = book.flows.values()
        atoms = list(flow)
        fence = Fence(new_uuid(), 3)
        with backend._engine.begin() as conn:
            conn.execute(_old_table("logbooks", "uuid", "name", "created_at", "meta").insert(),
                         {"uuid": book.uuid, "name": book.name, "created_at": 0,
                          "meta": '{"k": 1}'})
            conn.execute(_old_table("flowdetails", "uuid", "book_uuid", "name", "state",
                                    "fence_job", "fence").insert(),
                         {"uuid": flow.uuid, "book_uuid": book.uuid, "name": flow.name,
                          "state": "RUNNING", "fence_job": fence.job, "fence": fence.number})
            conn.execute(_old_table("atomdetails", "uuid", "flow_uuid", "kind", "name", "state",
                                    "intention", "results").insert(),
                         [{"uuid": a.uuid, "flow_uuid": flow.uuid, "kind": "task",
                           "name": a.name, "state": "SUCCESS", "intention": "EXECUTE",
                           "results": "42"} for a in atoms])
        backend.upgrade()
        backend.validate()
        with backend._engine.connect() as conn:
            names = set(sa.inspect(conn).get_table_names())
        assert {"legato_logbooks", "legato_flowdetails", "legato_atomdetails",
                "legato_job_history"} <= names
        assert not {"logbooks", "flowdetails", "atomdetails"} & names
        got = backend.get_logbook(book.uuid)
        assert got.meta == {"k": 1}
        (got_flow,) = got.flows.values()
        assert [a.results for a in got_flow] == [42, 42]
        backend.update_flow_state(flow.uuid, None, fence=fence)  # the fence survived
        with pytest.raises(errors.FencedOut):
            backend.update_flow_state(flow.uuid, None, fence=Fence(fence.job, 2))
        with backend._engine.begin() as conn:  # an application's table of the old name
            conn.execute(sa.text("CREATE TABLE logbooks (id INTEGER PRIMARY KEY)"))
        backend.destroy_logbook(book.uuid)  # cascades through the renamed tables
        with pytest.raises(errors.NotFound):
            backend.get_flow_details(flow.uuid)
        with pytest.raises(errors.NotFound):
            backend.get_atom_details(atoms[0].uuid)
    finally:
        backend.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_get_logbook_reads_book_flows_and_atoms_in_one_statement(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = (f"sqlite:///{tmp_path / 'flows.db'}" if backend == "sqlite"
           else request.getfixturevalue("postgres_url"))
    store = persistence.connect(url)
    store.upgrade()
    try:
        book = make_book(flows=2, atoms=2)
        empty = LogBook("no flows")
        store.save_logbook(book)
        store.save_logbook(empty)
        statements: list[str] = []

        def executed(*args: object) -> None:
            statements.append(str(args[2]))

        sa.event.listen(sa.Engine, "before_cursor_execute", executed)
        try:
            got = store.get_logbook(book.uuid)
            got_empty = store.get_logbook(empty.uuid)
            with pytest.raises(errors.NotFound):
                store.get_logbook("no-such-book")
        finally:
            sa.event.remove(sa.Engine, "before_cursor_execute", executed)
        assert len(statements) == 3  # one per get_logbook: full book, empty book, missing
        assert (got.name, got.meta, [fd.uuid for fd in got]) == (
            book.name, book.meta, [fd.uuid for fd in book])
        assert [[ad.uuid for ad in fd] for fd in got] == [[ad.uuid for ad in fd] for fd in book]
        assert (got_empty.name, list(got_empty)) == ("no flows", [])
    finally:
        store.close()


def test_postgres_first_write_is_one_statement_without_begin_or_commit(
        postgres_url: str) -> None:
    # The take, the claim's start, the flow's row and its atoms: one autocommitted statement.
    from legato.persistence.base import FlowWrites
    from legato.persistence.models import Claim, Fence, FlowDetail, utcnow
    from legato.states import FlowState

    backend = persistence.connect(postgres_url)
    backend.upgrade()
    try:
        book = LogBook("book")
        flow = FlowDetail("flow")
        book.add(flow)
        backend.save_logbook(book)
        flow.state = FlowState.RUNNING
        flow.add(TaskDetail("task", state=AtomState.RUNNING))
        claim = Claim(job_uuid="job-1", fence=1, owner="me", claimed_at=utcnow(), job_name="job",
                      book_uuid=book.uuid, flow_uuid=flow.uuid)
        with _statements_seen() as seen:
            backend.update_many(FlowWrites(flow.uuid, flow=flow, take=True, started=claim),
                                fence=Fence("job-1", 1))
        assert seen == [("WITH", True)]
        read = backend.get_flow_details(flow.uuid)
        assert read.state is FlowState.RUNNING and [a.name for a in read] == ["task"]
        assert [(c.job_uuid, c.fence) for c in backend.job_history("job-1")] == [("job-1", 1)]
        # A take refused (another job's fence recorded) writes nothing, the claim's start
        # and the atoms included.
        other = FlowDetail("other")
        book.add(other)
        backend.save_logbook(book)
        backend.take_flow(other.uuid, Fence("job-2", 1))
        other.add(TaskDetail("late", state=AtomState.RUNNING))
        late = Claim(job_uuid="job-3", fence=1, owner="me", claimed_at=utcnow(), job_name="job",
                     book_uuid=book.uuid, flow_uuid=other.uuid)
        with pytest.raises(errors.FencedOut):
            backend.update_many(FlowWrites(other.uuid, flow=other, take=True, started=late),
                                fence=Fence("job-3", 1))
        assert list(backend.get_flow_details(other.uuid)) == []
        assert list(backend.job_history("job-3")) == []
    finally:
        backend.close()


def _flow_with_atoms(backend: Persistence, *names: str) -> tuple[Any, list[TaskDetail]]:
    """A saved book with one flow of ``names`` (pending) atoms: the flow and its atoms."""
    from legato.persistence.models import FlowDetail

    book = LogBook("book")
    flow = FlowDetail("flow")
    book.add(flow)
    atoms = [TaskDetail(name, state=AtomState.PENDING) for name in names]
    for atom in atoms:
        flow.add(atom)
    backend.save_logbook(book)
    return flow, atoms


@pytest.mark.parametrize("rendered", [True, False])
def test_postgres_step_write_is_one_statement_without_begin_or_commit(
        postgres_url: str, rendered: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # An engine step's write (an atom's end, the next one's start, fenced, the flow's row not
    # written): one autocommitted statement, gated on the flow's fence; sent as text rendered
    # once per shape, or (a dialect that needs parameter processing) as the statement itself.
    from legato.persistence.base import FlowWrites
    from legato.persistence.models import Fence
    from legato.persistence.sql import backend as sql_backend

    if not rendered:
        monkeypatch.setattr(sql_backend, "pg_many_sql", lambda shape, dialect: None)
    backend = persistence.connect(postgres_url)
    backend.upgrade()
    try:
        flow, (first, second) = _flow_with_atoms(backend, "first", "second")
        fence = Fence("job-1", 1)
        backend.take_flow(flow.uuid, fence)
        first.state, first.results = AtomState.SUCCESS, {"n": 1}
        second.state = AtomState.RUNNING
        with _statements_seen() as seen:
            backend.update_many(FlowWrites(flow.uuid, atoms=[first, second]), fence=fence)
        assert seen == [("WITH", True)]
        read = backend.get_flow_details(flow.uuid)
        assert [(a.state, a.results) for a in read] == [
            (AtomState.SUCCESS, {"n": 1}), (AtomState.RUNNING, None)]
    finally:
        backend.close()


@pytest.mark.parametrize("backend_name", ["sqlite", "postgresql", "mysql"])
@pytest.mark.parametrize("case", ["missing atom", "missing atom with the flow's state",
                                  "stale fence", "stale fence with the flow's state",
                                  "missing atom, no fence", "missing flow"])
def test_update_many_refused_writes_nothing(
        backend_name: str, case: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    # Every refusal of update_many (an atom never saved, a stale fence, a flow never saved)
    # raises what the same writes made one at a time would, and writes nothing: on PostgreSQL
    # one autocommitted statement whose writes are all gated on the flow and its atoms.
    from legato.persistence.base import FlowWrites
    from legato.persistence.models import Fence
    from legato.states import FlowState

    url = {"sqlite": f"sqlite:///{tmp_path / 'refused.db'}",
           "postgresql": "postgres_url", "mysql": "mysql_url"}[backend_name]
    backend = persistence.connect(url if backend_name == "sqlite"
                                  else request.getfixturevalue(url))
    backend.upgrade()
    try:
        flow, (first, second) = _flow_with_atoms(backend, "first", "second")
        fence = Fence("job-1", 2)
        backend.take_flow(flow.uuid, fence)
        first.state, second.state = AtomState.SUCCESS, AtomState.RUNNING
        unsaved = TaskDetail("unsaved", state=AtomState.RUNNING)
        state = FlowState.SUCCESS if "flow's state" in case else None
        flow_uuid, expected = flow.uuid, errors.NotFound
        atoms: list[TaskDetail] = [first, unsaved]
        used: Fence | None = fence
        if case.startswith("stale fence"):
            atoms, used, expected = [first, second], Fence("job-1", 1), errors.FencedOut
        elif case == "missing atom, no fence":
            used = None
        elif case == "missing flow":
            flow_uuid, atoms, state = "no-such-flow", [], FlowState.SUCCESS
        with pytest.raises(expected):
            backend.update_many(FlowWrites(flow_uuid, state=state, atoms=atoms), fence=used)
        read = backend.get_flow_details(flow.uuid)
        assert read.state is None
        assert [a.state for a in read] == [AtomState.PENDING, AtomState.PENDING]
    finally:
        backend.close()


@pytest.mark.parametrize("atoms", [2, 70])
def test_postgres_save_logbook_is_one_statement_without_begin_or_commit(
        postgres_url: str, atoms: int) -> None:
    # A book, its flow and its atoms: one autocommitted statement (a book too large for one:
    # a statement per table in one transaction), read back whole either way.
    from legato.persistence.models import FlowDetail

    backend = persistence.connect(postgres_url)
    backend.upgrade()
    try:
        book = LogBook("book")
        flow = FlowDetail("flow")
        book.add(flow)
        for index in range(atoms):
            flow.add(TaskDetail(f"task-{index}", state=AtomState.PENDING))
        with _statements_seen() as seen:
            backend.save_logbook(book)
        if atoms == 2:
            assert seen == [("WITH", True)]
        else:
            assert [verb for verb, _ in seen] == ["INSERT"] * 3 and not seen[0][1]
        (read,) = backend.get_logbook(book.uuid).flows.values()
        assert [a.name for a in read] == [f"task-{index}" for index in range(atoms)]
        backend.save_logbook(book)  # again: every row updated in place
        (read,) = backend.get_logbook(book.uuid).flows.values()
        assert len(list(read)) == atoms
    finally:
        backend.close()


@contextlib.contextmanager
def _statements_seen() -> Iterator[list[tuple[str, bool]]]:
    """Each statement sent meanwhile: its first word, and whether it ran in autocommit."""
    seen: list[tuple[str, bool]] = []

    def executed(conn: sa.Connection, *args: object) -> None:
        # The driver's own flag: whether the pool's connections or this checkout autocommit.
        autocommit = bool(getattr(conn.connection.dbapi_connection, "autocommit", False))
        seen.append((str(args[1]).split(None, 1)[0], autocommit))

    sa.event.listen(sa.Engine, "before_cursor_execute", executed)
    try:
        yield seen
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", executed)


@pytest.mark.parametrize(("rest", "first_call_fails"), [(3600.0, True), (1e-9, False)])
def test_postgres_connection_tested_only_after_it_rested(postgres_url: str, rest: float,
                                                         first_call_fails: bool) -> None:
    """With ``ping_after_idle``, a pooled connection is tested on checkout only once it rested
    that long: a connection the server dropped while it rested is replaced before the call
    (no failure); one handed back a moment ago is used untested, its death found on first use
    (one failed call, then the pool recovers)."""
    app = f"legato-rest-{uuid.uuid4().hex[:8]}"
    sep = "&" if "?" in postgres_url else "?"
    backend = persistence.connect(f"{postgres_url}{sep}application_name={app}", retries=0,
                                  ping_after_idle=rest)
    try:
        backend.upgrade()
        book = make_book()
        backend.save_logbook(book)
        with psycopg.connect(postgres_url.replace("postgresql+psycopg", "postgresql"),
                             autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = %s", (app,)).fetchone()
        assert killed is not None and killed[0] >= 1
        if first_call_fails:
            with pytest.raises(errors.StorageFailure):
                backend.get_logbook(book.uuid)
        assert backend.get_logbook(book.uuid).uuid == book.uuid
    finally:
        backend.close()
