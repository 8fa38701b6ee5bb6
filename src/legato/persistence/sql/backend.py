"""``SQLPersistence``: logbooks, flows and atoms in SQLite, PostgreSQL or MySQL/MariaDB."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import sqlalchemy as sa

from legato import errors
from legato._sql import engine as _engine
from legato._sql import migrate as _migrate
from legato._sqlurl import sqlite_file
from legato.persistence.base import (
    BookParts,
    FlowWrites,
    JoinableThen,
    OneStatement,
    Persistence,
    StatementParts,
    lost_claim,
)
from legato.persistence.models import AtomDetail, Claim, Fence, FlowDetail, LogBook
from legato.persistence.sql import _rows
from legato.persistence.sql._statements import (
    ATOM_PREFIX,
    BOOK_PREFIX,
    PG_ROWS,
    SQLITE_INSERT_CLAIM,
    SQLITE_TAKE_FIRST,
    SQLITE_TAKE_NEW_FLOW,
    SQLITE_UPDATE_ATOM,
    SQLITE_UPDATE_ATOM_FENCED,
    SQLITE_UPSERT_ATOM,
    SQLITE_UPSERT_CLAIM,
    ManyShape,
    Statements,
    pg_joined_sql,
    pg_many,
    pg_many_sql,
    pg_save,
    pg_save_rendered,
    sqlite_update_flow,
)
from legato.persistence.sql.tables import atomdetails, flowdetails, logbooks
from legato.states import FlowState

__all__ = ["SQLPersistence"]

#: ``_many_rows``: the flow's row (None: not written), the atoms upserted, the atoms updated.
_ManyRows = tuple[dict[str, Any] | None, list[dict[str, Any]],
                  list[tuple[AtomDetail, dict[str, Any]]]]
#: A refused write: the select reading its row, the row's uuid, what it is, what was refused.
_Refusal = tuple[sa.Executable, str, str, str]


class SQLPersistence(Persistence):
    """Persistence in a SQL database through SQLAlchemy Core (``sqlite://``, ``postgresql://``,
    ``mysql://``, ``mariadb://``; a ``+driver`` suffix picks another driver).

    One object holds one connection pool; share it between threads, create one per process.
    Call ``upgrade()`` once before first use (it is cheap when the schema is current).

    Args:
        url: the database URL. Its query string goes to the driver unchanged, e.g.
            ``postgresql://host/db?options=-csearch_path%3Dmyschema``; only the driver
            options ``legato._sqlurl.DRIVER_OPTIONS`` lists are accepted.
        retries: see ``Persistence``.
        retry_delay: see ``Persistence``.
        connect_timeout: seconds to wait for a network database to accept a connection.
        busy_timeout: seconds a SQLite write waits for another process's lock.
        read_timeout: seconds a network database may leave a request unanswered before the
            connection counts as lost.
        pool_size: connections kept open (network databases).
        pre_ping: check a pooled connection before each use (network databases; one round trip
            per operation). Off, a dead connection is found on first use and the operation
            retried on a fresh one.
        ping_after_idle: PostgreSQL, with ``pre_ping``: check only a connection that rested
            in the pool this many seconds (default 1; 0 checks every checkout). See
            ``EngineSettings``.
        echo: log every SQL statement.
        wal_checkpoint_every: SQLite: after this many write transactions, checkpoint the WAL
            and truncate the ``-wal`` file (default 1000; 0 never does). See
            ``EngineSettings``.

    Raises:
        TypeError: an option this backend does not know.
        ValueError: a URL with two slashes (``sqlite://x.db``), no database
            (``mysql://root@host/``) or an unknown query option.
        UnknownBackend: the URL is not a database URL this backend serves.
        MissingDriver: the database driver is not installed (the message names the extra).
    """


    def __init__(self, url: str, *, retries: int = 3, retry_delay: float = 0.05,
                 connect_timeout: float = 10.0, busy_timeout: float = 60.0,
                 read_timeout: float = 60.0, pool_size: int = 5, pre_ping: bool = True,
                 ping_after_idle: float = _engine.PING_AFTER_IDLE, echo: bool = False,
                 wal_checkpoint_every: int = _engine.WAL_CHECKPOINT_EVERY,
                 **options: Any) -> None:
        if options:  # a misspelt timeout must not be silently ignored
            raise TypeError(f"unknown SQLPersistence options: {', '.join(sorted(options))}")
        super().__init__(url, retries=retries, retry_delay=retry_delay)
        settings = _engine.EngineSettings(
            connect_timeout=connect_timeout, busy_timeout=busy_timeout,
            read_timeout=read_timeout, pool_size=pool_size, pre_ping=pre_ping,
            ping_after_idle=ping_after_idle, echo=echo, wal_checkpoint_every=wal_checkpoint_every)
        if isinstance(wal_checkpoint_every, bool) or not isinstance(wal_checkpoint_every, int) \
                or wal_checkpoint_every < 0:
            raise ValueError("wal_checkpoint_every must be an integer >= 0")
        self._busy_timeout = busy_timeout
        self._read_timeout = read_timeout
        sa_url = _engine.normalise_url(url)
        self._display_url = sa_url.render_as_string(hide_password=True)
        sqlite_path = sqlite_file(sa_url)
        #: Added to error messages: which SQLite file failed.
        self._where = f"SQLite file {sqlite_path!r}" if sqlite_path is not None else ""
        # PostgreSQL connections stay in autocommit: most of its work is one statement (reads,
        # the engine's writes), run as its own transaction without BEGIN/COMMIT round trips,
        # and no isolation level is switched on checkout and back on return for it (their
        # READ COMMITTED gave each statement its own snapshot anyway). Transactions set the
        # server's default isolation level on their connection (``_write_engine``).
        # (MySQL keeps transactions: its REPEATABLE READ makes a multi-query read consistent.)
        self._engine = _engine.create_engine(
            sa_url, settings, autocommit=sa_url.get_backend_name() == "postgresql")
        self._dialect = self._engine.dialect.name
        self._read_engine = self._engine
        # SQLite writers take the write lock up front; PostgreSQL's transactional engine is
        # made on first use (it needs the server's default isolation level).
        self._tx_engine: sa.Engine | None = (
            self._engine.execution_options(**{_engine.SQLITE_BEGIN: "IMMEDIATE"})
            if self._dialect == "sqlite" else None if self._dialect == "postgresql"
            else self._engine)
        self._sql = Statements.for_dialect(self._dialect)
        self._database = _engine.database_key(sa_url)
        # Writes left before the next truncating WAL checkpoint (SQLite files only; None: never).
        file_db = self._dialect == "sqlite" and sa_url.database not in (None, "", ":memory:")
        self._checkpoint_every = wal_checkpoint_every if file_db and wal_checkpoint_every else 0
        self._writes_left = self._checkpoint_every
        # An in-memory SQLite database is one shared connection: one operation at a time.
        self._lock: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if sa_url.get_backend_name() == "sqlite"
            and sa_url.database in (None, "", ":memory:") else contextlib.nullcontext())

    def __repr__(self) -> str:
        return f"SQLPersistence({self._display_url!r})"

    @property
    def database(self) -> str | None:
        """The database this persistence writes to (``legato._sql.engine.database_key``): a
        SQL jobboard with the same ``database`` may consume jobs in its transactions."""
        return self._database

    # -- lifecycle -------------------------------------------------------------------------

    def upgrade(self) -> None:
        """Create or migrate the schema with Alembic. Idempotent; safe from many processes."""
        with self._lock, _engine.translate_errors("upgrading the schema", self._where):
            engine = self._write_engine() if self._dialect == "postgresql" else self._engine
            _migrate.upgrade(_migrate.PERSISTENCE, engine, self._write_engine(),
                             read_timeout=self._read_timeout)

    def validate(self) -> None:
        """Check the database answers and its schema is at the newest migration.

        Raises:
            StorageFailure: unreachable, or the schema needs ``upgrade()``.
        """
        with self._lock, _engine.translate_errors("validating", self._where), \
                self._engine.connect() as conn:
            current = _migrate.PERSISTENCE.current(conn)
        head = _migrate.PERSISTENCE.head()
        if current != head:
            raise errors.StorageFailure(
                f"persistence schema is at {current or 'nothing'}, expected {head}: "
                "run upgrade()")

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    # -- plumbing --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _read(self, what: str) -> Iterator[sa.Connection]:
        with self._lock, _engine.translate_errors(what, self._where), \
                self._read_engine.connect() as conn:
            yield conn

    def _write_engine(self) -> sa.Engine:
        """The engine of write transactions."""
        engine = self._tx_engine
        if engine is None:  # PostgreSQL: learn the server's default isolation level once
            with self._engine.connect():
                pass
            level = self._engine.dialect.default_isolation_level or "READ COMMITTED"
            engine = self._tx_engine = self._engine.execution_options(isolation_level=level)
        return engine

    @contextlib.contextmanager
    def _write(self, what: str, *, single: bool = False) -> Iterator[sa.Connection]:
        """A write transaction. ``single``: one statement on PostgreSQL, which it runs as its
        own transaction (autocommit: no ``BEGIN``/``COMMIT`` round trips, and no transaction
        object around it)."""
        with self._lock, _engine.translate_errors(what, self._where), (
                self._engine.connect() if single and self._dialect == "postgresql"
                else self._write_engine().begin()) as conn:
            yield conn
        if self._checkpoint_every:
            self._count_write()

    def _count_write(self) -> None:
        """Count one committed write; every ``wal_checkpoint_every`` writes, checkpoint and
        truncate the WAL (on a pooled connection, between transactions)."""
        self._writes_left -= 1  # unlocked: a lost count only moves the next checkpoint a bit
        if self._writes_left > 0:
            return
        self._writes_left = self._checkpoint_every
        with self._lock, contextlib.suppress(sa.exc.SQLAlchemyError):
            pooled = self._engine.raw_connection()
            try:
                _engine.checkpoint_wal(pooled.driver_connection, self._busy_timeout)
            finally:
                pooled.close()

    # -- logbooks --------------------------------------------------------------------------

    def _save_logbook(self, book: LogBook) -> None:
        rows = _book_rows(book)
        if self._one_statement_save(rows):
            # One statement, run as its own transaction: no BEGIN/COMMIT round trips.
            with self._write("saving a logbook", single=True) as conn:
                self._save_rows(conn, rows, None, None)
            return
        with self._write("saving a logbook") as conn:
            self._save_rows(conn, rows, None, None)

    def _one_statement_save(self, rows: _BookRows) -> bool:
        """Whether the book's rows are saved as one statement (PostgreSQL, ``pg_save``)."""
        _, flow_rows, atom_rows = rows
        return (self._dialect == "postgresql" and len(flow_rows) + len(atom_rows) <= PG_ROWS
                and len({tuple(r) for r in flow_rows}) <= 1
                and len({tuple(r) for r in atom_rows}) <= 1)

    def _save_rows(self, conn: sa.Connection, rows: _BookRows, along: sa.Executable | None,
                   along_params: Mapping[str, Any] | None) -> Any:
        """Write a book's rows on ``conn``, then ``along``; return ``along``'s first row."""
        book_row, flow_rows, atom_rows = rows
        if self._one_statement_save(rows):
            params = {"b_" + k: v for k, v in book_row.items()}
            for prefix, many in (("f", flow_rows), ("a", atom_rows)):
                for index, row in enumerate(many):
                    params.update({f"{prefix}{index}_{k}": v for k, v in row.items()})
            shape = (tuple(book_row), tuple(tuple(r) for r in flow_rows),
                     tuple(tuple(r) for r in atom_rows), along)
            params.update(along_params or {})
            rendered = pg_save_rendered(*shape, self._engine.dialect)
            result = (conn.execute(pg_save(*shape), params) if rendered is None
                      else rendered.execute(conn, params))
            return None if along is None else result.first()
        conn.execute(self._sql.upsert_book, book_row)
        if flow_rows:
            conn.execute(self._sql.upsert_flow, flow_rows)
        if atom_rows:
            conn.execute(self._sql.upsert_atom, atom_rows)
        if along is None:
            return None
        return conn.execute(along, dict(along_params or {})).first()

    def _saves_in_one_statement(self, book: LogBook) -> bool:
        return self._one_statement_save(_book_rows(book))

    def _save_logbook_in(self, transaction: Any, book: LogBook, along: Any,
                         along_params: Mapping[str, Any] | None) -> Any:
        return self._save_rows(transaction, _book_rows(book), along, along_params)

    def _get_logbook(self, book_uuid: str, lazy: bool) -> LogBook:
        params = {"b_uuid": book_uuid}
        with self._read("reading a logbook") as conn:
            if lazy:
                row = conn.execute(self._sql.select_book, params).mappings().first()
                if row is None:
                    raise errors.NotFound(f"no logbook {book_uuid}")
                return _rows.book_from_row(row)
            return self._book_tree(conn, book_uuid)

    def _get_logbook_in(self, transaction: Any, book_uuid: str) -> LogBook:
        return self._book_tree(transaction, book_uuid)

    def _book_tree(self, conn: sa.Connection, book_uuid: str) -> LogBook:
        """The book, its flows and their atoms, in one round trip (joined)."""
        rows = conn.execute(self._sql.select_book_tree, {"b_uuid": book_uuid}).mappings().all()
        if not rows:
            raise errors.NotFound(f"no logbook {book_uuid}")
        return _tree_from_rows(rows, "")

    def book_parts(self) -> BookParts:
        return _BOOK_PARTS

    def _get_logbooks(self, lazy: bool) -> Iterator[LogBook]:
        with self._read("listing logbooks") as conn:
            books = [_rows.book_from_row(r)
                     for r in conn.execute(self._sql.select_books).mappings()]
            if lazy or not books:
                return iter(books)
            flow_rows = conn.execute(self._sql.select_all_flows).mappings().all()
            atom_rows = conn.execute(self._sql.select_all_atoms).mappings().all()
        by_book: dict[str, list[FlowDetail]] = defaultdict(list)
        for fd_row, fd in zip(flow_rows, _assemble(flow_rows, atom_rows), strict=True):
            by_book[fd_row["book_uuid"]].append(fd)
        for book in books:
            for fd in by_book.get(book.uuid, ()):
                book.add(fd)
        return iter(books)

    def _destroy_logbook(self, book_uuid: str) -> None:
        # The foreign keys cascade to the book's flows and their atoms.
        with self._write("destroying a logbook") as conn:
            result = conn.execute(self._sql.delete_book, {"b_uuid": book_uuid})
            if result.rowcount == 0:
                raise errors.NotFound(f"no logbook {book_uuid}")

    # -- flow details ----------------------------------------------------------------------

    def _take_new_flow(self, flow_uuid: str, fence: Fence, claim: Claim | None) -> bool:
        row = {"b_uuid": flow_uuid, "f_job": fence.job, "f_num": fence.number}
        claim_row = None if claim is None else _rows.claim_row(claim)
        if self._dialect == "sqlite":
            then = None if claim_row is None else (SQLITE_INSERT_CLAIM, claim_row)
            return self._sqlite_write(row, SQLITE_TAKE_NEW_FLOW, "taking a flow detail",
                                      then=then) == 1
        with self._write("taking a flow detail") as conn:
            taken = conn.execute(self._sql.take_new_flow, row).rowcount == 1
            if taken and claim_row is not None:
                conn.execute(self._sql.insert_claim, claim_row)
            return bool(taken)

    def _take_flow(self, flow_uuid: str, fence: Fence, claim: Claim | None) -> None:
        row = {"b_uuid": flow_uuid, "f_job": fence.job, "f_num": fence.number}
        with self._write("taking a flow detail") as conn:
            if conn.execute(self._sql.take_flow, row).rowcount == 0:
                self._refused(conn, self._sql.select_flow, flow_uuid,
                              f"flow detail {flow_uuid}", f"taking flow detail {flow_uuid}",
                              fence)
            if claim is not None:
                row = _rows.claim_row(claim)
                ended = lost_claim(claim)
                conn.execute(self._sql.end_unended_claims, {
                    "e_outcome": ended["outcome"], "e_reason": ended["reason"],
                    "e_ended_at": row["claimed_at"], "job": claim.job_uuid,
                    "below": claim.fence})
                conn.execute(self._sql.insert_claim, row)

    # -- job history -----------------------------------------------------------------------

    def _record_claim(self, claim: Claim) -> None:
        row = _rows.claim_row(claim)
        if self._dialect == "sqlite":
            self._sqlite_write(row, SQLITE_UPSERT_CLAIM, "recording a claim")
            return
        with self._write("recording a claim") as conn:
            conn.execute(self._sql.upsert_claim, row)

    def _job_history(self, job_uuid: str) -> Iterable[Claim]:
        with self._read("reading a job's history") as conn:
            rows = conn.execute(self._sql.select_history, {"job_uuid": job_uuid}).mappings()
            return [_rows.claim_from_row(r) for r in rows]

    def _find_jobs(self, prefix: str, limit: int) -> Iterable[str]:
        with self._read("finding jobs") as conn:
            rows = conn.execute(self._sql.select_jobs_like,
                                {"pattern": prefix + "%", "limit": limit}).mappings()
            return [str(r["job_uuid"]) for r in rows]

    def _find_logbooks(self, prefix: str, limit: int) -> Iterable[LogBook]:
        with self._read("finding logbooks") as conn:
            rows = conn.execute(self._sql.select_books_like,
                                {"pattern": prefix + "%", "limit": limit}).mappings()
            return [_rows.book_from_row(r) for r in rows]

    def _flow_rows(self, state: str | None, since: dt.datetime | None,
                   limit: int) -> Iterable[tuple[FlowDetail, str]]:
        query = self._sql.select_flow_rows[(state is not None, since is not None)]
        params: dict[str, Any] = {"limit": limit}
        if state is not None:
            params.update(state=state, pending=state == "PENDING")
        if since is not None:
            params["since"] = _rows.to_micros(since)
        with self._read("listing flows") as conn:
            rows = conn.execute(query, params).mappings().all()
        return [(_rows.flow_from_row(r), r["book_uuid"]) for r in rows]

    def _claims_of_flows(self, flow_uuids: list[str]) -> Iterable[Claim]:
        if not flow_uuids:
            return []
        with self._read("reading flows' claims") as conn:
            rows = conn.execute(self._sql.select_claims_of_flows,
                                {"flow_uuids": flow_uuids}).mappings()
            return [_rows.claim_from_row(r) for r in rows]

    def _claim_counts(self, since: dt.datetime) -> Iterable[tuple[str | None, str | None, int]]:
        with self._read("counting claims") as conn:
            rows = conn.execute(self._sql.count_claims, {"since": _rows.to_micros(since)})
            return [(m["outcome"], m["flow_state"], int(m["n"])) for m in rows.mappings()]

    def _update_flow_details(self, flow_detail: FlowDetail, fence: Fence | None) -> None:
        flow_row = _rows.flow_row(flow_detail)
        del flow_row["uuid"]
        flow_row["b_uuid"] = flow_detail.uuid
        atom_rows = [{**_rows.atom_row(ad), "flow_uuid": flow_detail.uuid}
                     for ad in flow_detail.atoms.values()]
        with self._write("updating a flow detail") as conn:
            if conn.execute(*self._flow_update(flow_row, fence)).rowcount == 0:
                self._refused(conn, self._sql.select_flow, flow_detail.uuid,
                              f"flow detail {flow_detail.uuid}",
                              f"updating flow detail {flow_detail.uuid}", fence)
            if atom_rows:
                conn.execute(self._sql.upsert_atom, atom_rows)

    def _update_flow_state(self, flow_uuid: str, state: FlowState | None,
                           fence: Fence | None) -> None:
        row = {"b_uuid": flow_uuid, "state": str(state) if state is not None else None}
        with self._write("updating a flow's state") as conn:
            if conn.execute(*self._flow_update(row, fence)).rowcount == 0:
                self._refused(conn, self._sql.select_flow, flow_uuid,
                              f"flow detail {flow_uuid}",
                              f"updating the state of flow {flow_uuid}", fence)

    def _update_many(self, writes: FlowWrites, fence: Fence | None) -> None:
        fenced = {} if fence is None else {"f_job": fence.job, "f_num": fence.number}
        rows = _many_rows(writes, fenced)
        if self._dialect == "sqlite" and writes.then is None:
            # Straight to the driver; a write that carries a board's statements (``then``)
            # needs the SQLAlchemy connection they run on.
            self._sqlite_many(writes, fence, fenced, rows)
            return
        if self._dialect == "postgresql" and _one_statement(writes, rows):
            self._pg_many(writes, fence, fenced, rows)
            return
        self._statements_many(writes, fence, fenced, rows)

    def _statements_many(self, writes: FlowWrites, fence: Fence | None,
                         fenced: dict[str, Any], rows: _ManyRows) -> None:
        """``_update_many`` one statement per write, in one transaction (MySQL, and what
        ``pg_many`` cannot make in one statement)."""
        flow_uuid = writes.flow_uuid
        flow_row, upserted, atom_rows = rows
        atom_update = self._sql.update_atom if fence is None else self._sql.update_atom_fenced
        what = f"writing flow detail {flow_uuid}"
        with self._write("writing a flow detail's changes") as conn:
            if writes.take:
                if conn.execute(self._sql.take_first, {"b_uuid": flow_uuid, **fenced}) \
                        .rowcount == 0:
                    self._refused(conn, self._sql.select_flow, flow_uuid,
                                  f"flow detail {flow_uuid}", f"taking flow detail {flow_uuid}",
                                  fence)
                if writes.started is not None:
                    conn.execute(self._sql.insert_claim, _rows.claim_row(writes.started))
            if flow_row is not None:
                statement, params = self._flow_update({**flow_row, "b_uuid": flow_uuid}, fence)
                if conn.execute(statement, params).rowcount == 0:
                    self._refused(conn, self._sql.select_flow, flow_uuid,
                                  f"flow detail {flow_uuid}", what, fence)
            if upserted:
                conn.execute(self._sql.upsert_atom, upserted)
            for ad, row in atom_rows:
                if conn.execute(atom_update, row).rowcount == 0:
                    self._refused(conn, self._sql.select_atom, ad.uuid,
                                  f"atom detail {ad.uuid}", f"updating atom {ad.name!r}", fence)
            if writes.ended is not None:
                conn.execute(self._sql.upsert_claim, _rows.claim_row(writes.ended))
            if writes.then is not None:
                writes.then(conn)

    def _pg_many(self, writes: FlowWrites, fence: Fence | None, fenced: dict[str, Any],
                 rows: _ManyRows) -> None:
        """``_update_many`` on PostgreSQL: every write in one statement (``pg_many``), all or
        nothing, run in autocommit: one round trip, no ``BEGIN``/``COMMIT``. With ``then`` in a
        transaction, which ``then`` may roll back."""
        flow_uuid = writes.flow_uuid
        flow_row, upserted, atom_rows = rows
        params: dict[str, Any] = {"b_uuid": flow_uuid, **fenced}
        flow_columns: tuple[str, ...] = ()
        if flow_row is not None:
            flow_columns = tuple(flow_row)
            params.update(zip(_named("fl_", flow_columns), flow_row.values(), strict=True))
        started = writes.take and writes.started is not None
        if started:
            assert writes.started is not None
            _add(params, "s_", _rows.claim_row(writes.started))
        upserted_columns = []
        for index, row in enumerate(upserted):
            upserted_columns.append(_add(params, f"u{index}_", row))
        updated_columns = []
        for index, (_, row) in enumerate(atom_rows):
            keys = tuple(row)
            for key, name in _renamed(f"a{index}_", keys):
                params[name] = row[key]
            updated_columns.append(_columns(keys))
        if writes.ended is not None:
            _add(params, "e_", _rows.claim_row(writes.ended))
        shape = ManyShape(
            flow=flow_columns, take=writes.take, fenced=fence is not None, started=started,
            upserted=tuple(upserted_columns), updated=tuple(updated_columns),
            ended=writes.ended is not None)
        then = writes.then
        if isinstance(then, JoinableThen) and shape.gated:
            # The board's writes may join this one's statement: one autocommitted statement.
            joint = _Joint(functools.partial(self._pg_join, shape, params, writes, fence,
                                             atom_rows),
                           functools.partial(self._pg_begin, shape, params, writes, fence,
                                             atom_rows))
            with contextlib.ExitStack() as joint.stack:
                try:
                    then(joint)
                except _Refused as refused:
                    raise refused.error from None
                if joint.landed:
                    return
            # The flow's write did not land: ``then`` made none, or took the refusal of its
            # parts in stride (a retried consume finding its job gone): the write alone.
            then = None
        with self._write("writing a flow detail's changes", single=then is None) as conn:
            self._pg_write(conn, shape, params, writes, fence, atom_rows)
            if then is not None:
                then(conn)

    def _pg_join(self, shape: ManyShape, params: dict[str, Any], writes: FlowWrites,
                 fence: Fence | None, atom_rows: list[tuple[AtomDetail, dict[str, Any]]],
                 joint: _Joint, parts: StatementParts, part_params: Mapping[str, Any]) -> Any:
        """``OneStatement.join`` of ``joint``: ``pg_many(shape, parts)`` in autocommit."""
        conn = joint.conn = joint.stack.enter_context(
            self._write("writing a flow detail's changes", single=True))
        values = {**params, **part_params}
        rendered = pg_joined_sql(shape, self._engine.dialect, parts)
        if rendered is None:
            row = conn.execute(pg_many(shape, parts), values).one()
        else:
            sql, fixed = rendered
            row = conn.exec_driver_sql(sql, {**fixed, **values}).one()
        if row.written:
            joint.landed = True
            return row
        refusal = self._pg_refusal(conn, writes, fence, atom_rows)
        if refusal is None and row.joined:  # the parts allowed it; what refused it moved
            refusal = self._fenced_out(f"writing flow detail {writes.flow_uuid}", fence) \
                if fence is not None else errors.NotFound(
                    f"no flow detail {writes.flow_uuid} with its atoms")
        if refusal is not None:
            raise _Refused(refusal)
        return row  # the parts refused: the caller says why

    def _pg_begin(self, shape: ManyShape, params: dict[str, Any], writes: FlowWrites,
                  fence: Fence | None, atom_rows: list[tuple[AtomDetail, dict[str, Any]]],
                  joint: _Joint) -> sa.Connection:
        """``OneStatement.connection`` of ``joint`` before any ``join``: a transaction with
        the flow's write made in it."""
        conn = joint.stack.enter_context(self._write("writing a flow detail's changes"))
        try:
            self._pg_write(conn, shape, params, writes, fence, atom_rows)
        except (errors.FencedOut, errors.NotFound) as exc:
            raise _Refused(exc) from None
        joint.conn, joint.landed = conn, True
        return conn

    def _pg_write(self, conn: sa.Connection, shape: ManyShape, params: dict[str, Any],
                  writes: FlowWrites, fence: Fence | None,
                  atom_rows: list[tuple[AtomDetail, dict[str, Any]]]) -> None:
        """Run ``pg_many(shape)`` on ``conn``; raise its refusal (nothing written)."""
        sql = pg_many_sql(shape, self._engine.dialect)
        written = (conn.execute(pg_many(shape), params) if sql is None
                   else conn.exec_driver_sql(sql, params)).scalar_one()
        if written == 0:
            self._pg_refused(conn, writes, fence, atom_rows)

    def _pg_refused(self, conn: sa.Connection, writes: FlowWrites, fence: Fence | None,
                    atom_rows: list[tuple[AtomDetail, dict[str, Any]]]) -> None:
        """Why ``pg_many``'s gate refused ``writes`` (nothing was written): the error the
        same writes made one statement at a time would raise first. Reads the rows; only for
        a refused write."""
        refusal = self._pg_refusal(conn, writes, fence, atom_rows)
        if refusal is not None:
            raise refusal
        # Nothing refuses it now: what refused it changed since (a take since then, a row
        # saved since then). A fenced writer is told it lost the flow (the safe answer, also
        # to an atom's update that wrote nothing after the gate held, which its lock rules
        # out); an unfenced one that a row is missing.
        if fence is not None:
            raise self._fenced_out(f"writing flow detail {writes.flow_uuid}", fence)
        raise errors.NotFound(f"no flow detail {writes.flow_uuid} with its atoms")

    def _pg_refusal(self, conn: sa.Connection, writes: FlowWrites, fence: Fence | None,
                    atom_rows: list[tuple[AtomDetail, dict[str, Any]]],
                    ) -> errors.LegatoError | None:
        """The error ``_pg_refused`` raises, when the rows read now still refuse ``writes``;
        None when they do not."""
        flow_uuid = writes.flow_uuid
        flow = conn.execute(self._sql.select_flow, {"b_uuid": flow_uuid}).mappings().first()
        if flow is None:
            return errors.NotFound(f"no flow detail {flow_uuid}")
        recorded = (flow["fence_job"], flow["fence"])
        holds = fence is None or recorded == (fence.job, fence.number)
        if writes.take:
            assert fence is not None
            if not (holds or recorded[0] is None):
                return self._fenced_out(f"taking flow detail {flow_uuid}", fence)
            holds = True  # the take would have recorded it
        elif not holds and (writes.flow is not None or writes.state is not None):
            assert fence is not None
            return self._fenced_out(f"writing flow detail {flow_uuid}", fence)
        for ad, _ in atom_rows:
            atom = conn.execute(self._sql.select_atom, {"b_uuid": ad.uuid}).mappings().first()
            if atom is None or (fence is None and atom["flow_uuid"] != flow_uuid):
                return errors.NotFound(f"no atom detail {ad.uuid}")
            if fence is not None and (not holds or atom["flow_uuid"] != flow_uuid):
                return self._fenced_out(f"updating atom {ad.name!r}", fence)
        return None

    def _flow_update(self, row: dict[str, Any],
                     fence: Fence | None) -> tuple[sa.Executable, dict[str, Any]]:
        """The statement and parameters updating a flow's row, fenced when ``fence`` is set."""
        if fence is None:
            return self._sql.update_flow, row
        return self._sql.update_flow_fenced, {**row, "f_job": fence.job, "f_num": fence.number}

    def _refused(self, conn: sa.Connection, select: sa.Executable, uuid: str, missing: str,
                 what: str, fence: Fence | None) -> None:
        """After a write that changed no row: raise ``NotFound`` when the row does not exist,
        else ``FencedOut`` (the only other way such a write changes nothing). This read is the
        only extra round trip, and only for a write that was refused."""
        if fence is None or conn.execute(select, {"b_uuid": uuid}).first() is None:
            raise errors.NotFound(f"no {missing}")
        raise self._fenced_out(what, fence)

    def _get_flow_details(self, flow_uuid: str, lazy: bool) -> FlowDetail:
        with self._read("reading a flow detail") as conn:
            row = conn.execute(self._sql.select_flow, {"b_uuid": flow_uuid}).mappings().first()
            if row is None:
                raise errors.NotFound(f"no flow detail {flow_uuid}")
            fd = _rows.flow_from_row(row)
            if not lazy:
                for atom_row in conn.execute(self._sql.select_atoms_of_flow,
                                             {"b_uuid": flow_uuid}).mappings():
                    fd.add(_rows.atom_from_row(atom_row))
        return fd

    def _get_flows_for_book(self, book_uuid: str, lazy: bool) -> Iterator[FlowDetail]:
        with self._read("reading a logbook's flows") as conn:
            if conn.execute(self._sql.select_book, {"b_uuid": book_uuid}).first() is None:
                raise errors.NotFound(f"no logbook {book_uuid}")
            if lazy:
                rows = conn.execute(self._sql.select_flows_of_book, {"b_uuid": book_uuid})
                return iter([_rows.flow_from_row(r) for r in rows.mappings()])
            return iter(self._flows_of_book(conn, book_uuid))

    def _flows_of_book(self, conn: sa.Connection, book_uuid: str) -> list[FlowDetail]:
        params = {"b_uuid": book_uuid}
        flow_rows = conn.execute(self._sql.select_flows_of_book, params).mappings().all()
        if not flow_rows:
            return []
        atom_rows = conn.execute(self._sql.select_atoms_of_book, params).mappings().all()
        return _assemble(flow_rows, atom_rows)

    # -- atom details ----------------------------------------------------------------------

    def _update_atom_details(self, atom_detail: AtomDetail, fence: Fence | None) -> None:
        row = _rows.atom_row(atom_detail)
        del row["uuid"]
        row["b_uuid"] = atom_detail.uuid
        statement = self._sql.update_atom
        if fence is not None:
            row["f_job"], row["f_num"] = fence
            statement = self._sql.update_atom_fenced
        if self._dialect == "sqlite":
            updated = self._sqlite_write(
                row, SQLITE_UPDATE_ATOM if fence is None else SQLITE_UPDATE_ATOM_FENCED,
                "updating an atom detail")
            if updated == 0:
                with self._read("reading an atom detail") as conn:
                    self._refused(conn, self._sql.select_atom, atom_detail.uuid,
                                  f"atom detail {atom_detail.uuid}",
                                  f"updating atom {atom_detail.name!r}", fence)
            return
        with self._write("updating an atom detail") as conn:
            if conn.execute(statement, row).rowcount == 0:
                self._refused(conn, self._sql.select_atom, atom_detail.uuid,
                              f"atom detail {atom_detail.uuid}",
                              f"updating atom {atom_detail.name!r}", fence)

    def _sqlite_many(self, writes: FlowWrites, fence: Fence | None, fenced: dict[str, Any],
                     rows: _ManyRows) -> None:
        """``_update_many`` on SQLite: the same statements in one transaction, sent through the
        driver like ``_sqlite_write``; a refused write rolls them all back."""
        refused: _Refusal | None = None
        with self._lock, _engine.translate_errors("writing a flow detail's changes",
                                                  self._where):
            pooled = self._engine.raw_connection()
            try:  # on any error, returning it to the pool rolls the transaction back
                driver = pooled.driver_connection
                assert driver is not None
                driver.execute("BEGIN IMMEDIATE")
                refused = self._sqlite_steps(driver, writes, fence, fenced, rows)
                if refused is None:
                    driver.commit()
                else:
                    driver.rollback()
            finally:
                pooled.close()
        if refused is not None:
            select, uuid, missing, what = refused
            with self._read("reading a refused write's row") as conn:
                self._refused(conn, select, uuid, missing, what, fence)
        if self._checkpoint_every:
            self._count_write()

    def _sqlite_steps(self, driver: Any, writes: FlowWrites, fence: Fence | None,
                      fenced: dict[str, Any], rows: _ManyRows) -> _Refusal | None:
        """The statements of ``_sqlite_many``, in ``_update_many``'s order; the first refused
        write's row (then nothing after it is sent)."""
        flow_uuid = writes.flow_uuid
        flow_row, upserted, atom_rows = rows
        if writes.take:
            if driver.execute(SQLITE_TAKE_FIRST, {"b_uuid": flow_uuid, **fenced}).rowcount == 0:
                return (self._sql.select_flow, flow_uuid, f"flow detail {flow_uuid}",
                        f"taking flow detail {flow_uuid}")
            if writes.started is not None:
                driver.execute(SQLITE_INSERT_CLAIM, _rows.claim_row(writes.started))
        if flow_row is not None:
            statement = sqlite_update_flow(tuple(flow_row), fenced=fence is not None)
            if driver.execute(statement, {**flow_row, "b_uuid": flow_uuid, **fenced}) \
                    .rowcount == 0:
                return (self._sql.select_flow, flow_uuid, f"flow detail {flow_uuid}",
                        f"writing flow detail {flow_uuid}")
        if upserted:
            driver.executemany(SQLITE_UPSERT_ATOM, upserted)
        atom_update = SQLITE_UPDATE_ATOM if fence is None else SQLITE_UPDATE_ATOM_FENCED
        for ad, row in atom_rows:
            if driver.execute(atom_update, row).rowcount == 0:
                return (self._sql.select_atom, ad.uuid, f"atom detail {ad.uuid}",
                        f"updating atom {ad.name!r}")
        if writes.ended is not None:
            driver.execute(SQLITE_UPSERT_CLAIM, _rows.claim_row(writes.ended))
        return None

    def _sqlite_write(self, row: dict[str, Any], statement: str, what: str, *,
                      then: tuple[str, dict[str, Any]] | None = None) -> int:
        """A hot write on SQLite (an atom's update, a first take), on a pooled connection but
        without SQLAlchemy's statement machinery. Returns the rows updated. ``then``: a
        statement and its parameters run in the same transaction when a row was updated."""
        with self._lock, _engine.translate_errors(what, self._where):
            pooled = self._engine.raw_connection()
            try:  # on any error, returning it to the pool rolls the transaction back
                driver = pooled.driver_connection
                assert driver is not None
                driver.execute("BEGIN IMMEDIATE")
                count: int = driver.execute(statement, row).rowcount
                if then is not None and count:
                    driver.execute(*then)
                driver.commit()
            finally:
                pooled.close()
        if self._checkpoint_every:
            self._count_write()
        return count

    def _get_atom_details(self, atom_uuid: str) -> AtomDetail:
        with self._read("reading an atom detail") as conn:
            row = conn.execute(self._sql.select_atom, {"b_uuid": atom_uuid}).mappings().first()
        if row is None:
            raise errors.NotFound(f"no atom detail {atom_uuid}")
        return _rows.atom_from_row(row)

    def _get_atoms_for_flow(self, flow_uuid: str) -> Iterator[AtomDetail]:
        with self._read("reading a flow's atoms") as conn:
            if conn.execute(self._sql.select_flow, {"b_uuid": flow_uuid}).first() is None:
                raise errors.NotFound(f"no flow detail {flow_uuid}")
            rows = conn.execute(self._sql.select_atoms_of_flow, {"b_uuid": flow_uuid})
            return iter([_rows.atom_from_row(r) for r in rows.mappings()])

    def _clear_all(self) -> None:
        with self._write("clearing all logbooks") as conn:
            for statement in self._sql.delete_all:
                conn.execute(statement)


#: A book's rows: the book's, its flows' (``book_uuid`` set) and their atoms' (``flow_uuid``).
_BookRows = tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]


class _Refused(Exception):
    """The flow's own write was refused inside a ``JoinableThen``: raise ``error`` past it
    (the board must not take a refusal of the flow for one of its own)."""

    def __init__(self, error: errors.LegatoError) -> None:
        super().__init__(error)
        self.error = error


class _Joint(OneStatement):
    """``OneStatement`` of one ``_pg_many``: the flow's write, made with the board's parts
    (``join``: ``SQLPersistence._pg_join``) or alone in a transaction the board then writes in
    (``connection``: ``SQLPersistence._pg_begin``)."""

    def __init__(self, join: Callable[[_Joint, StatementParts, Mapping[str, Any]], Any],
                 begin: Callable[[_Joint], sa.Connection]) -> None:
        self._join = join
        self._begin = begin
        #: The connection the flow's write was made on (None: not made yet).
        self.conn: sa.Connection | None = None
        #: The flow's write landed (joined, or in the transaction).
        self.landed = False
        #: Where the connection's context goes (set by ``_pg_many``, closed after ``then``).
        self.stack = contextlib.ExitStack()

    def join(self, parts: StatementParts, params: Mapping[str, Any]) -> Any:
        if self.conn is not None:
            raise RuntimeError("the flow's write was made already")
        return self._join(self, parts, params)

    @property
    def connection(self) -> sa.Connection:
        return self._begin(self) if self.conn is None else self.conn

    def __getattr__(self, name: str) -> Any:
        # Used as the transaction a plain ``then`` gets: the connection's own methods.
        return getattr(self.connection, name)


def _book_rows(book: LogBook) -> _BookRows:
    return (_rows.book_row(book),
            [{**_rows.flow_row(fd), "book_uuid": book.uuid} for fd in book.flows.values()],
            [{**_rows.atom_row(ad), "flow_uuid": fd.uuid}
             for fd in book.flows.values() for ad in fd.atoms.values()])


def _many_rows(writes: FlowWrites, fenced: dict[str, Any]) -> _ManyRows:
    """The rows of ``writes``: the flow's (None: not written), the atoms its ``flow`` carries
    (upserted), and the updated atoms' with their details."""
    flow_row: dict[str, Any] | None = None
    if writes.flow is not None:
        flow_row = _rows.flow_row(writes.flow)
        del flow_row["uuid"]
    if writes.state is not None:
        flow_row = {**(flow_row or {}), "state": str(writes.state)}
    upserted = [] if writes.flow is None else [
        {**_rows.atom_row(ad), "flow_uuid": writes.flow_uuid}
        for ad in writes.flow.atoms.values()]
    atom_rows = []
    for ad in writes.atoms:
        row = _rows.atom_row(ad)
        del row["uuid"]
        atom_rows.append((ad, {**row, "b_uuid": ad.uuid, **fenced}))
    return flow_row, upserted, atom_rows


#: Keys of ``_many_rows``' updated atom rows that are no columns.
_ATOM_KEYS = frozenset({"b_uuid", "f_job", "f_num"})
_FENCE_KEYS = frozenset({"f_job", "f_num"})


@functools.cache
def _named(prefix: str, keys: tuple[str, ...]) -> tuple[str, ...]:
    """``keys``, each after ``prefix``: ``pg_many``'s parameter names (made once per shape)."""
    return tuple(prefix + key for key in keys)


def _add(params: dict[str, Any], prefix: str, row: dict[str, Any]) -> tuple[str, ...]:
    """Add ``row`` to ``params`` under ``prefix``; returns its columns."""
    columns = tuple(row)
    params.update(zip(_named(prefix, columns), row.values(), strict=True))
    return columns


@functools.cache
def _renamed(prefix: str, keys: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """An updated atom row's keys (fence keys left out) with their parameter names."""
    return tuple((key, prefix + key) for key in keys if key not in _FENCE_KEYS)


@functools.cache
def _columns(keys: tuple[str, ...]) -> tuple[str, ...]:
    """The columns an updated atom row (``_many_rows``) writes."""
    return tuple(key for key in keys if key not in _ATOM_KEYS)


def _one_statement(writes: FlowWrites, rows: _ManyRows) -> bool:
    """Whether ``pg_many`` can make ``writes`` in one statement: a statement's CTEs must not
    write one row twice (a claim's start and end, an atom both upserted and updated)."""
    if writes.take and writes.started is not None and writes.ended is not None:
        return False
    _, upserted, atom_rows = rows
    if len(upserted) + len(atom_rows) > PG_ROWS:
        return False
    if upserted and atom_rows:
        updated = {ad.uuid for ad, _ in atom_rows}
        if any(row["uuid"] in updated for row in upserted):
            return False
    # One INSERT ... SELECT takes one column list.
    return len({tuple(row) for row in upserted}) <= 1


def _tree_from_rows(rows: Iterable[Mapping[Any, Any]], flow_prefix: str) -> LogBook:
    """The book in the rows of a book tree read (``select_book_tree``, ``_BookParts``): the
    book's columns labelled ``BOOK_PREFIX``, the flows' ``flow_prefix``, the atoms'
    ``ATOM_PREFIX``. ``NotFound`` when they hold no book."""
    book: LogBook | None = None
    flow: FlowDetail | None = None
    flow_uuid = flow_prefix + "uuid"
    keys: tuple[Any, ...] = ()  # every row has the first one's
    for row in rows:
        if book is None:
            if row[BOOK_PREFIX + "uuid"] is None:
                break
            keys = tuple(row.keys())
            book = _rows.book_from_row(_prefixed(row, keys, BOOK_PREFIX))
        if row[flow_uuid] is None:
            continue  # a book without flows
        if flow is None or flow.uuid != row[flow_uuid]:
            flow = _rows.flow_from_row(_prefixed(row, keys, flow_prefix) if flow_prefix
                                       else row)
            book.add(flow)
        if row[ATOM_PREFIX + "uuid"] is not None:
            flow.add(_rows.atom_from_row(_prefixed(row, keys, ATOM_PREFIX)))
    if book is None:
        raise errors.NotFound("no logbook")
    return book


class _BookParts:
    """``BookParts`` of the SQL backends: ``Statements.select_book_tree`` joined on another
    statement's book uuid, the flows' columns labelled ``FLOW_PREFIX`` too."""

    def columns(self) -> list[Any]:
        return [*(c.label(BOOK_PREFIX + c.name) for c in logbooks.c if c.name != "id"),
                *(c.label(FLOW_PREFIX + c.name) for c in flowdetails.c if c.name != "id"),
                *(c.label(ATOM_PREFIX + c.name) for c in atomdetails.c if c.name != "id")]

    def join(self, source: Any, book_uuid: Any) -> Any:
        return (sa.outerjoin(source, logbooks, logbooks.c.uuid == book_uuid)
                .outerjoin(flowdetails, flowdetails.c.book_uuid == logbooks.c.uuid)
                .outerjoin(atomdetails, atomdetails.c.flow_uuid == flowdetails.c.uuid))

    def order_by(self) -> list[Any]:
        return [flowdetails.c.id, atomdetails.c.id]

    def book(self, rows: Iterable[Mapping[str, Any]]) -> LogBook:
        return _tree_from_rows(rows, FLOW_PREFIX)


#: Prefix of the flows' columns in ``_BookParts``' columns (the book's and the atoms' are
#: ``select_book_tree``'s).
FLOW_PREFIX = "fd_"
_BOOK_PARTS = _BookParts()


def _prefixed(row: Mapping[Any, Any], keys: tuple[Any, ...], prefix: str) -> dict[str, Any]:
    """The columns of ``row`` (its keys: ``keys``) labelled ``prefix`` + name, by name."""
    return {name: row[key] for key, name in _labelled(keys, prefix)}


@functools.lru_cache(maxsize=64)
def _labelled(keys: tuple[Any, ...], prefix: str) -> tuple[tuple[str, str], ...]:
    """The keys labelled ``prefix`` + name, each with its name (found once per statement)."""
    return tuple((key, key[len(prefix):]) for key in keys
                 if isinstance(key, str) and key.startswith(prefix))


def _assemble(flow_rows: Iterable[Mapping[Any, Any]],
              atom_rows: Iterable[Mapping[Any, Any]]) -> list[FlowDetail]:
    """Flow details from their rows, each with its atoms (rows in insertion order)."""
    flows = [_rows.flow_from_row(r) for r in flow_rows]
    by_uuid = {fd.uuid: fd for fd in flows}
    for row in atom_rows:
        fd = by_uuid.get(row["flow_uuid"])
        if fd is not None:
            fd.add(_rows.atom_from_row(row))
    return flows
