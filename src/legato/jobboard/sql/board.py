"""The SQL jobboard: SQLite (``sqlite:///path.db``) and PostgreSQL (``postgresql://...``).

One table row per job (see ``sql_tables``). Every primitive is one short transaction:

* ``claim_next`` is a single ``UPDATE ... WHERE sequence = (SELECT ... ORDER BY priority DESC,
  sequence LIMIT 1) RETURNING *``. On PostgreSQL the subselect takes ``FOR UPDATE SKIP LOCKED``,
  so concurrent claimers never queue behind one row; on SQLite the transaction starts with
  ``BEGIN IMMEDIATE``, which serialises writers across processes. The subselect walks the
  ``(priority DESC, sequence)`` index and stops at the first claimable row, so its cost does not
  grow with the backlog.
* Owner-checked calls (renew, consume, abandon, trash) are one ``UPDATE``/``DELETE`` whose
  ``WHERE`` names owner, live lease and fence; only when it touches no row does a second read
  find out why (``NotFound`` or ``NotOwner`` naming the real owner).
* Time: PostgreSQL compares leases with the server's clock (``now()``) unless a ``clock`` is
  injected, so many machines agree; SQLite (one machine) uses the board's clock.
* Wake-ups: PostgreSQL boards ``LISTEN`` on a dedicated connection (started by the first
  ``wait``); triggers on the jobs table ``NOTIFY`` when a job is posted, consumed, trashed or
  abandoned (not on claims or renewals): one notification per statement, on a channel of the
  jobs table's schema (``sql_tables.CHANNEL_QUERY``), so boards in other schemas of the
  database are not woken. A post's has the
  payload ``POST_PAYLOAD`` when a job it inserted can be claimed now: a ``wait`` it wakes
  answers True without reading the board again, so an idle conductor goes from the
  notification straight to its claim. A post is one statement, run in autocommit; with a
  persistence sharing the database (``post(save_book_in=...)``) the job's logbook is written
  in that statement too. SQLite boards poll every
  ``poll_interval`` (0.05 s by default) with a query that reads one index page.
* Engine and errors: the engine factory and driver-error translation of SQL persistence
  (``legato._sql.engine``): the same SQLite pragmas, keepalives and option names. Driver errors
  become ``BoardUnavailable``; the pool pings connections before use, so the same board works
  again once the server is back. The URL may name the driver (``postgresql+psycopg://``): the
  board takes psycopg 3 on PostgreSQL (it listens with it) and pysqlite on SQLite.
* Schema: the board's tables have their own Alembic lineage (``legato/jobboard/sql/migrations``,
  version table ``legato_jb_version``), upgraded at connect under a database lock. Tables made
  by earlier releases' hand-written setup are adopted as they are.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa

from legato import errors
from legato._sql import engine as sql_engine
from legato._sql import migrate
from legato._sqlurl import make_sqlite_folder, sqlite_file
from legato.jobboard.base import (
    Capabilities,
    Entity,
    JobBoard,
    JobCounts,
    JobRecord,
    Position,
    decode_record,
    not_owner,
)
from legato.jobboard.sql import tables as sql_tables
from legato.jobboard.sql.tables import entities, jobs, trash
from legato.persistence.base import BookParts, OneStatement
from legato.states import JobPriority, JobState

if TYPE_CHECKING:
    from legato.persistence.base import Persistence
    from legato.persistence.models import LogBook

__all__ = ["PostgresJobBoard", "SQLJobBoard"]

logger = logging.getLogger(__name__)

_J = jobs.c
_ORDER = (_J.priority.desc(), _J.sequence)
_FIRST_PAGE, _PAGE = 20, 500  # a small first page keeps "is anything claimable?" cheap
_JSON_COLUMNS = ("details",)
#: The board's clock in statements built once (``SQLJobBoard._statement_now``), and a claim's
#: lease length.
_NOW: sa.BindParameter[float] = sa.bindparam("now", type_=sa.Double())
_TTL: sa.BindParameter[float] = sa.bindparam("ttl", type_=sa.Double())
#: PostgreSQL's clock: the transaction's start time on the server, one clock for every machine.
_SERVER_NOW: sa.ColumnElement[float] = sa.cast(sa.func.extract("epoch", sa.func.now()),
                                               sa.Double())
#: Default ``wal_checkpoint_every`` of SQLite boards (write transactions).
WAL_CHECKPOINT_EVERY = sql_engine.WAL_CHECKPOINT_EVERY
#: The schemes the board serves and the SQLAlchemy drivers it takes (the first by default).
_DRIVERS = {"sqlite": ("pysqlite",), "postgresql": ("psycopg",), "postgres": ("psycopg",)}


class _Garbage(Exception):
    """claim_next picked a row it cannot decode; roll back and try the next one."""

    def __init__(self, sequence: int) -> None:
        super().__init__(sequence)
        self.sequence = sequence


class SQLJobBoard(JobBoard):
    """A jobboard in a SQL database, through SQLAlchemy Core. See the module docstring.

    Args:
        url: a SQLAlchemy URL (``sqlite:///jobs.db``, ``postgresql://user@host/db``).
        connect_timeout: seconds to wait for the server before ``BoardUnavailable``.
        read_timeout: seconds the server may leave a request unanswered before the connection
            counts as lost (PostgreSQL ``tcp_user_timeout``).
        busy_timeout: seconds a SQLite connection waits for another process's lock.
        pool_size: connections kept open.
        wal_checkpoint_every: SQLite: after this many write transactions, checkpoint the WAL
            and truncate the ``-wal`` file (``PRAGMA wal_checkpoint(TRUNCATE)``; 0 never
            does). SQLite's automatic checkpoint never shrinks the file and is starved by
            long readers.
        **options: the ``JobBoard`` arguments (``name``, ``persistence``, ``ttl``,
            ``poll_interval``, ``clock``).
    """

    CAPABILITIES = Capabilities()

    def __init__(self, url: str, *, connect_timeout: float = 5.0, read_timeout: float = 5.0,
                 busy_timeout: float = 30.0, pool_size: int = 10,
                 wal_checkpoint_every: int = WAL_CHECKPOINT_EVERY, **options: Any) -> None:
        options.setdefault("poll_interval", 0.05)
        self._server_clock = options.get("clock") is None
        super().__init__(**options)
        if isinstance(wal_checkpoint_every, bool) or not isinstance(wal_checkpoint_every, int) \
                or wal_checkpoint_every < 0:
            raise ValueError("wal_checkpoint_every must be an integer >= 0")
        self.wal_checkpoint_every = wal_checkpoint_every
        self._writes_left = wal_checkpoint_every
        self.url = sql_engine.normalise_url(url, what="jobboard", drivers=_DRIVERS)
        self._database = sql_engine.database_key(self.url)
        self.connect_timeout = connect_timeout
        self.pool_size = pool_size
        path = sqlite_file(self.url)
        #: Added to error messages: which SQLite file failed.
        self._file = f"SQLite file {path!r}" if path is not None else ""
        self.settings = sql_engine.EngineSettings(
            connect_timeout=connect_timeout, read_timeout=read_timeout,
            busy_timeout=busy_timeout, pool_size=pool_size,
            wal_checkpoint_every=wal_checkpoint_every, lenient_text=True)
        self._engine: sa.Engine | None = None
        #: ``_engine`` for transactions (``_transactions``), set with it.
        self._tx_engine: sa.Engine | None = None
        self._changed = threading.Condition()
        self._version = 0
        self._posts = 0  # posts notified (POST_PAYLOAD): a waiter they wake need not look
        self._seen = threading.local()
        self._garbage: set[int] = set()  # sequences of undecodable rows, warned about once

    @classmethod
    def from_url(cls, url: str, *, persistence: Persistence | None = None,
                 **options: Any) -> SQLJobBoard:
        parsed = sql_engine.normalise_url(url, what="jobboard", drivers=_DRIVERS)
        if parsed.get_backend_name() == "postgresql":
            return PostgresJobBoard(url, persistence=persistence, **options)
        if parsed.database in (None, "", ":memory:"):
            # Every pooled connection would get its own empty database.
            raise ValueError("an in-memory SQLite board cannot be shared between connections; "
                             "use memory:// for a board inside one process")
        return cls(url, persistence=persistence, **options)

    @property
    def database(self) -> str | None:
        """The database the jobs live in (``legato._sql.engine.database_key``): a SQL
        persistence with the same ``database`` can carry this board's consume in its
        transactions (``consume_in``)."""
        return self._database

    # -- lifecycle -------------------------------------------------------------------------

    def _connect(self) -> None:
        try:
            make_sqlite_folder(self.url)
        except OSError as exc:
            raise errors.JobFailure(f"board {self.name!r}: {exc.strerror}") from exc
        # PostgreSQL connections stay in autocommit: reads and one-statement writes (a post, a
        # claim) run as their own transactions, and no isolation level is switched on
        # checkout and back on return for them; transactions set the server's default level
        # on their connection (``_transactions``).
        engine = sql_engine.create_engine(
            self.url, self.settings, autocommit=self.url.get_backend_name() == "postgresql")
        try:
            with self._translated("creating or upgrading the board's tables"):
                self._tx_engine = self._transactions(engine)
                migrate.upgrade(migrate.JOBBOARD, self._tx_engine, self._writes(engine),
                                read_timeout=self.settings.read_timeout)
        except BaseException:
            engine.dispose()
            raise
        self._engine = engine

    @staticmethod
    def _transactions(engine: sa.Engine) -> sa.Engine:
        """``engine`` for transactions: on PostgreSQL (whose connections are in autocommit)
        with the server's default isolation level, learnt on a first connection."""
        if engine.dialect.name != "postgresql":
            return engine
        with engine.connect():
            pass
        level = engine.dialect.default_isolation_level or "READ COMMITTED"
        return engine.execution_options(isolation_level=level)

    @staticmethod
    def _writes(engine: sa.Engine) -> sa.Engine:
        """``engine``, its SQLite transactions taking the write lock up front (a deferred
        transaction that reads and then writes can fail with SQLITE_BUSY instead of waiting)."""
        if engine.dialect.name != "sqlite":
            return engine
        return engine.execution_options(**{sql_engine.SQLITE_BEGIN: "IMMEDIATE"})

    def _translated(self, what: str) -> contextlib.AbstractContextManager[None]:
        """Driver errors become ``BoardUnavailable`` naming the board (and its SQLite file)."""
        return sql_engine.translate_errors(f"board {self.name!r}: {what}", self._file,
                                           failure=errors.BoardUnavailable)

    def _close(self) -> None:
        engine, self._engine, self._tx_engine = self._engine, None, None
        if engine is not None:
            engine.dispose()

    @contextlib.contextmanager
    def _tx(self, *, write: bool = False, single: bool = False) -> Iterator[sa.Connection]:
        """One transaction; driver errors become ``BoardUnavailable``. ``single``: a write
        of exactly one statement, which PostgreSQL then runs as its own transaction."""
        engine = self._engine
        if engine is None:
            raise errors.JobFailure(f"board {self.name!r} is not connected; call connect()")
        if write and not single and self._tx_engine is not None:
            # PostgreSQL's engine is in autocommit (reads, and writes of one statement: one
            # statement is atomic on its own, without BEGIN and COMMIT round trips).
            engine = self._tx_engine
        with self._translated("database call"), engine.connect() as conn:
            if write and engine.dialect.name == "sqlite":
                # Take the write lock up front: a deferred transaction that reads and then
                # writes can fail with SQLITE_BUSY instead of waiting.
                conn = conn.execution_options(**{sql_engine.SQLITE_BEGIN: "IMMEDIATE"})
            with conn.begin():
                yield conn
            if write and self.wal_checkpoint_every and engine.dialect.name == "sqlite":
                self._count_write(conn)

    def _count_write(self, conn: sa.Connection) -> None:
        """Count one committed write; every ``wal_checkpoint_every`` writes, checkpoint and
        truncate the WAL on ``conn`` (between transactions), waiting at most a moment for
        readers: a checkpoint that cannot finish is left for the next one."""
        self._writes_left -= 1  # unlocked: a lost count only moves the next checkpoint a bit
        if self._writes_left > 0:
            return
        self._writes_left = self.wal_checkpoint_every
        # On the driver's connection: through SQLAlchemy the pragmas would open a transaction.
        sql_engine.checkpoint_wal(conn.connection.driver_connection,
                                  self.settings.busy_timeout)

    # -- helpers ---------------------------------------------------------------------------

    def _now(self, value: float | None = None) -> sa.ColumnElement[float]:
        """The board's time in a statement: ``value``, or the clock's now."""
        return sa.literal(self.clock() if value is None else value, sa.Double())

    def _statement_now(self) -> sa.ColumnElement[float]:
        """``_now()`` in a statement built once: the ``now`` parameter (every execution of
        one passes ``now=self.clock()``)."""
        return _NOW

    @functools.cached_property
    def _claim_first_statement(self) -> sa.Executable:
        """``_claim_first``'s update when no row is set aside, built once: a consume and a
        claim per job would otherwise build, coerce and look up their statements each time."""
        now = self._statement_now()
        target = self._next_query(now, set()).scalar_subquery()
        return (jobs.update().where(_J.sequence == target)
                .values(**self._claim_values(sa.bindparam("who"), _TTL, now))
                .returning(*jobs.c))

    @functools.cached_property
    def _consume_statements(self) -> dict[bool, sa.Executable]:
        """``_consume_in``'s delete, with and without a fence, built once."""
        now = self._statement_now()
        return {fenced: jobs.delete().where(self._owned(
            sa.bindparam("uuid"), sa.bindparam("who"),
            sa.bindparam("fence") if fenced else None, now)) for fenced in (False, True)}

    def _claimable(self, now: sa.ColumnElement[float],
                   columns: Any = _J) -> sa.ColumnElement[bool]:
        return sa.and_(
            sa.or_(columns.state == str(JobState.UNCLAIMED), columns.lease_expires <= now),
            sa.or_(columns.available_at.is_(None), columns.available_at <= now))

    def _owned(self, job_uuid: Any, who: Any, fence: Any,
               now: sa.ColumnElement[float]) -> sa.ColumnElement[bool]:
        """``job_uuid``'s live claim by ``who`` (with ``fence`` unless None); values or bound
        parameters."""
        clauses = [_J.uuid == job_uuid, _J.owner == who, _J.state == str(JobState.CLAIMED),
                   _J.lease_expires > now]
        if fence is not None:
            clauses.append(_J.fence == fence)
        return sa.and_(*clauses)

    def _why_not(self, conn: sa.Connection, job_uuid: str, who: str, fence: int | None,
                 now: sa.ColumnElement[float]) -> errors.LegatoError:
        """The error for an owner-checked call (made with ``fence``) that matched no row."""
        try:
            owner, current = self._live_claim(conn, job_uuid, now)
        except errors.NotFound as exc:
            return exc
        return not_owner(job_uuid, who, owner, fence=fence, actual_fence=current)

    def _live_owner(self, conn: sa.Connection, job_uuid: str,
                    now: sa.ColumnElement[float]) -> str | None:
        """The owner of the job's unexpired claim, or None; ``NotFound`` if the job is gone."""
        return self._live_claim(conn, job_uuid, now)[0]

    def _live_claim(self, conn: sa.Connection, job_uuid: str,
                    now: sa.ColumnElement[float]) -> tuple[str | None, int | None]:
        """The owner of the job's unexpired claim (or None) and the job's current fence;
        ``NotFound`` if the job is gone."""
        row = conn.execute(sa.select(_J.owner, _J.state, _J.lease_expires, _J.fence,
                                     now.label("now"))
                           .where(_J.uuid == job_uuid)).first()
        if row is None:
            raise errors.NotFound(f"no job {job_uuid} on board {self.name!r}")
        live = row.state == str(JobState.CLAIMED) and (row.lease_expires or 0) > row.now
        return (row.owner if live else None), row.fence

    def _notify(self, conn: sa.Connection) -> None:
        """Wake this board's waiters (other processes: PostgreSQL triggers ``NOTIFY``)."""
        self._bump()

    def _bump(self, *, posted: bool = False) -> None:
        with self._changed:
            self._version += 1
            if posted:
                self._posts += 1
            self._changed.notify_all()

    def _mark_seen(self) -> None:
        with self._changed:
            self._seen.version = self._version

    @staticmethod
    def _decode(row: Any) -> JobRecord:
        """The record in a row; ``GarbageRecord`` (a ``JobFailure``) when it is garbage."""
        return decode_record(row._mapping, json_fields=_JSON_COLUMNS)

    def _decode_or_warn(self, row: Any) -> JobRecord | None:
        try:
            return self._decode(row)
        except errors.GarbageRecord as exc:
            if row.sequence not in self._garbage:
                self._garbage.add(row.sequence)
                logger.warning("board %r: skipping job row %s (uuid %r) that cannot be "
                               "decoded: %s", self.name, row.sequence, row.uuid, exc)
            return None

    # -- posting and reading -----------------------------------------------------------------

    def _post(self, record: JobRecord) -> None:
        # One INSERT (its trigger notifies waiters): on PostgreSQL, no BEGIN/COMMIT round trips.
        statement, params = self._post_insert(record)
        with self._tx(write=True, single=True) as conn:
            record.sequence = conn.execute(statement, params).scalar_one()
            self._notify(conn)

    def _post_sharing(self, record: JobRecord, book: LogBook,
                      persistence: Persistence) -> None:
        # The book's writes and the INSERT in one transaction; on PostgreSQL one statement
        # (the INSERT a CTE beside the book's upserts), run in autocommit: one round trip.
        # The trigger's notification is sent at commit, so a woken claimer finds the book.
        statement, params = self._post_insert(record)
        single = persistence.saves_in_one_statement(book)
        with self._tx(write=True, single=single) as conn:
            row = persistence.save_logbook_in(conn, book, along=statement, along_params=params)
            record.sequence = row.sequence
            self._notify(conn)

    def _post_insert(self, record: JobRecord) -> tuple[sa.Executable, dict[str, Any]]:
        """The post's ``INSERT ... RETURNING sequence`` (built once) and its parameters."""
        values = _row_values(record)
        delay = (record.available_at - record.created_on
                 if record.available_at is not None else None)
        del values["available_at"]
        params = {"j_" + k: v for k, v in values.items()}
        params["now"] = self.clock()
        if delay is not None:
            params["j_delay"] = delay
        return self._post_statements[delay is not None], params

    @functools.cached_property
    def _post_statements(self) -> dict[bool, sa.Executable]:
        """The post's ``INSERT``, without and with a delay (``available_at`` is the board's
        now plus ``j_delay``); every other column from its parameter ``j_<column>`` (named
        after no column: see ``_consume_claim_statements``)."""
        now = self._statement_now()
        statements: dict[bool, sa.Executable] = {}
        for delayed in (False, True):
            values: dict[str, Any] = {c: sa.bindparam("j_" + c, type_=_J[c].type)
                                      for c in _POSTED_COLUMNS}
            values["available_at"] = (now + sa.bindparam("j_delay", type_=sa.Double())
                                      if delayed else sa.null())
            statements[delayed] = jobs.insert().values(**values).returning(_J.sequence)
        return statements

    def _post_many(self, records: list[JobRecord]) -> None:
        """Insert many unclaimed jobs in one transaction (benchmarks fill boards with it)."""
        if not records:
            return
        with self._tx(write=True) as conn:
            conn.execute(jobs.insert(), [_row_values(r) for r in records])
            self._notify(conn)

    def _get(self, job_uuid: str) -> JobRecord:
        self._mark_seen()
        with self._tx() as conn:
            row = conn.execute(sa.select(jobs).where(_J.uuid == job_uuid)).first()
        if row is None:
            raise errors.NotFound(f"no job {job_uuid} on board {self.name!r}")
        return self._decode(row)

    def _iter_records(self, only_unclaimed: bool, ensure_fresh: bool,
                      after: Position | None = None) -> Iterator[JobRecord]:
        # Pages are a keyset on the claim order index: each starts after the last row seen.
        self._mark_seen()
        size = _FIRST_PAGE
        while True:
            with self._tx() as conn:
                rows = self._page(conn, after, size, only_unclaimed)
            for row in rows:
                record = self._decode_or_warn(row)
                if record is not None:
                    yield record
            if len(rows) < size:
                return
            after, size = (rows[-1].priority, rows[-1].sequence), _PAGE

    def _page(self, conn: sa.Connection, after: Position | None, size: int,
              only_unclaimed: bool) -> list[Any]:
        """Up to ``size`` rows after ``after`` in claim order. Two range reads of the index
        (the rest of ``after``'s priority, then the lower ones) rather than one ``OR``, which
        a planner would answer by walking the index from its start."""
        now = {"now": self.clock()}
        if after is None and size == _FIRST_PAGE:  # "is anything claimable?" of every wait
            return list(conn.execute(self._first_pages[only_unclaimed], now).all())
        query = self._in_order[only_unclaimed].limit(size)
        if after is None:
            return list(conn.execute(query, now).all())
        rows = list(conn.execute(query.where(_J.priority == after[0],
                                             _J.sequence > after[1]), now).all())
        if len(rows) < size:
            rows += conn.execute(query.where(_J.priority < after[0])
                                 .limit(size - len(rows)), now).all()
        return rows

    @functools.cached_property
    def _in_order(self) -> dict[bool, sa.Select[Any]]:
        """All rows (False) or the claimable ones (True) in claim order, built once
        (parameter ``now``)."""
        query = sa.select(jobs).order_by(*_ORDER)
        return {False: query, True: query.where(self._claimable(self._statement_now()))}

    @functools.cached_property
    def _first_pages(self) -> dict[bool, sa.Select[Any]]:
        """``_in_order``'s first page, built once."""
        return {key: query.limit(_FIRST_PAGE) for key, query in self._in_order.items()}

    def _waiting_heads(self) -> list[JobRecord]:
        # One statement: for each priority, the first claimable row of its stretch of the
        # claim order index (what claim_next's subselect reads, once per priority).
        now = self._now()
        first = jobs.alias("first")
        heads = [sa.select(first.c.sequence)
                 .where(first.c.priority == int(priority), self._claimable(now, first.c))
                 .order_by(first.c.sequence).limit(1).scalar_subquery()
                 for priority in JobPriority]
        with self._tx() as conn:
            rows = conn.execute(sa.select(jobs).where(_J.sequence.in_(heads))).all()
        return [r for r in map(self._decode_or_warn, rows) if r is not None]

    def _iter_claimed(self) -> Iterator[JobRecord]:
        # The partial index of claimed rows (legato_jb_jobs_claimed); the literal condition
        # lets SQLite's planner see that the index covers the query.
        with self._tx() as conn:
            rows = conn.execute(sa.select(jobs).where(sql_tables.CLAIMED_ROWS,
                                                      _J.lease_expires > self._now())).all()
        return (r for r in map(self._decode_or_warn, rows) if r is not None)

    def _job_count(self) -> int:
        with self._tx() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(jobs)).scalar_one())

    def _job_counts(self) -> JobCounts:
        # One statement: COUNT over the jobs table (the database counts, nothing is read
        # out) and over the trash.
        now = self._now()
        live = sa.and_(_J.state == str(JobState.CLAIMED),
                       sa.or_(_J.lease_expires.is_(None), _J.lease_expires > now))
        later = sa.and_(sa.not_(live), _J.available_at > now)
        query = sa.select(
            sa.func.count(),
            sa.func.count(sa.case((live, 1))),
            sa.func.count(sa.case((later, 1))),
            sa.select(sa.func.count()).select_from(trash).scalar_subquery(),
        ).select_from(jobs)
        with self._tx() as conn:
            total, claimed, delayed, trashed = conn.execute(query).one()
        return JobCounts(int(total) - int(claimed) - int(delayed), int(delayed), int(claimed),
                         int(trashed))

    # -- claims ----------------------------------------------------------------------------

    def _claim_values(self, who: Any, ttl: Any, now: sa.ColumnElement[float]) -> dict[str, Any]:
        return {"state": str(JobState.CLAIMED), "owner": who, "fence": _J.fence + 1,
                "attempts": _J.attempts + 1, "lease_expires": now + ttl,
                "available_at": None, "last_modified": now}

    def _claim(self, job_uuid: str, who: str, ttl: float) -> JobRecord:
        with self._tx(write=True) as conn:
            now = self._now()
            row = conn.execute(
                jobs.update().where(_J.uuid == job_uuid, self._claimable(now))
                .values(**self._claim_values(who, ttl, now)).returning(*jobs.c)).first()
            if row is None:
                raise self._why_unclaimable(conn, job_uuid, now)
            return self._decode(row)  # garbage: rolls the claim back

    def _why_unclaimable(self, conn: sa.Connection, job_uuid: str,
                         now: sa.ColumnElement[float]) -> errors.LegatoError:
        try:
            owner = self._live_owner(conn, job_uuid, now)
        except errors.NotFound as exc:
            return exc
        why = f"claimed by {owner!r}" if owner else "delayed"
        return errors.UnclaimableJob(f"job {job_uuid} is {why}", job_uuid=job_uuid, owner=owner)

    def _next_query(self, now: sa.ColumnElement[float], skip: set[int]) -> sa.Select[Any]:
        query = (sa.select(_J.sequence).where(self._claimable(now))
                 .order_by(*_ORDER).limit(1))
        if skip:
            query = query.where(_J.sequence.not_in(sorted(skip)))
        return query

    def _claim_next(self, who: str, ttl: float) -> JobRecord | None:
        while True:
            try:
                return self._claim_next_once(who, ttl, set(self._garbage))
            except _Garbage as bad:
                self._garbage.add(bad.sequence)

    def _claim_next_once(self, who: str, ttl: float, skip: set[int]) -> JobRecord | None:
        with self._tx(write=True) as conn:
            return self._claim_first(conn, who, ttl, skip)

    def _book_or_none(self, conn: sa.Connection, record: JobRecord) -> LogBook | None:
        """``_book_in`` after a claim of ``claim_next``; a book that cannot be read (or
        decoded) does not fail the claim: whoever runs the job reads it again and meets the
        error where it is handled (a job it cannot run is abandoned, not left claimed)."""
        try:
            return self._book_in(conn, record)
        except Exception as exc:  # whatever it is: the book is just not brought
            logger.debug("board %r: job %s claimed without its book: %r", self.name,
                         record.uuid, exc)
            return None

    def _claim_next_with_book(self, who: str,
                              ttl: float) -> tuple[JobRecord, LogBook | None] | None:
        if not self._shares_persistence():
            return super()._claim_next_with_book(who, ttl)
        while True:
            try:
                with self._tx(write=True) as conn:
                    record = self._claim_first(conn, who, ttl, set(self._garbage))
                    if record is None:
                        return None
                    return record, self._book_or_none(conn, record)
            except _Garbage as bad:
                self._garbage.add(bad.sequence)

    def _claim_first(self, conn: sa.Connection, who: str, ttl: float,
                     skip: set[int]) -> JobRecord | None:
        """Claim the first claimable job within the caller's transaction; ``_Garbage`` (which
        must roll the transaction back) if it cannot be decoded."""
        if skip:
            now = self._now()
            target = self._next_query(now, skip).scalar_subquery()
            row = conn.execute(
                jobs.update().where(_J.sequence == target)
                .values(**self._claim_values(who, ttl, now)).returning(*jobs.c)).first()
        else:
            row = conn.execute(self._claim_first_statement,
                               {"now": self.clock(), "who": who, "ttl": ttl}).first()
        if row is None:
            return None
        try:
            return self._decode(row)
        except errors.GarbageRecord as exc:
            logger.warning("board %r: not claiming job row %s (uuid %r), set aside: %s",
                           self.name, row.sequence, row.uuid, exc)
            raise _Garbage(row.sequence) from exc  # rolls the claim back

    def _renew(self, job_uuid: str, who: str, fence: int | None, ttl: float) -> str | None:
        with self._tx(write=True) as conn:
            now = self._now()
            mark = conn.execute(jobs.update().where(self._owned(job_uuid, who, fence, now))
                                .values(lease_expires=now + ttl, last_modified=now)
                                .returning(_J.cancel)).first()
            if mark is None:
                raise self._why_not(conn, job_uuid, who, fence, now)
            return mark.cancel  # type: ignore[no-any-return]

    def _cancel(self, job_uuid: str, mark: str) -> bool:
        with self._tx(write=True) as conn:
            now = self._now()
            live = sa.and_(_J.state == str(JobState.CLAIMED), _J.lease_expires > now)
            for _ in range(3):  # a claim or its end may come between the two statements
                row = conn.execute(jobs.delete().where(_J.uuid == job_uuid, sa.not_(live))
                                   .returning(*jobs.c)).first()
                if row is not None:
                    values = dict(row._mapping)
                    del values["cancel"]
                    values.update(state=str(JobState.UNCLAIMED), owner=None,
                                  lease_expires=None, reason=mark, last_modified=now,
                                  trashed_at=now)
                    conn.execute(trash.insert().values(**values))
                    self._notify(conn)
                    return True
                done = conn.execute(jobs.update().where(_J.uuid == job_uuid, live)
                                    .values(cancel=mark, last_modified=now))
                if done.rowcount:
                    return False
                self._live_claim(conn, job_uuid, now)  # NotFound when the job is gone
        raise errors.JobFailure(f"job {job_uuid} kept changing", job_uuid=job_uuid)

    def _consume(self, job_uuid: str, who: str, fence: int | None) -> None:
        with self._tx(write=True) as conn:
            self._consume_in(conn, job_uuid, who, fence)

    def _consume_in(self, conn: sa.Connection, job_uuid: str, who: str,
                    fence: int | None, *, notify: bool = True) -> None:
        now = self.clock()
        done = conn.execute(self._consume_statements[fence is not None],
                            {"now": now, "uuid": job_uuid, "who": who, "fence": fence})
        if done.rowcount == 0:
            raise self._why_not(conn, job_uuid, who, fence, self._now(now))
        if notify:
            self._notify(conn)

    def _consume_in_transaction(self, transaction: Any, job_uuid: str, who: str,
                                fence: int | None, ttl: float | None) -> JobRecord | None:
        """The consume (and the claim) on the caller's connection, in its transaction. A row
        that cannot be decoded is read before it is claimed and skipped, so it never fails the
        caller's transaction (``_claim_first`` would have to roll it back)."""
        conn: sa.Connection = transaction
        self._consume_in(conn, job_uuid, who, fence, notify=False)
        if ttl is None:
            return None
        skip = set(self._garbage)
        while True:
            now = self._now()
            row = conn.execute(self._next_query(now, skip).with_only_columns(*jobs.c)).first()
            if row is None:
                return None
            if self._decode_or_warn(row) is None:
                skip.add(row.sequence)
                continue
            claimed = conn.execute(
                jobs.update().where(_J.sequence == row.sequence, self._claimable(now))
                .values(**self._claim_values(who, ttl, now)).returning(*jobs.c)).first()
            return None if claimed is None else self._decode(claimed)

    def _consumed_elsewhere(self) -> None:
        self._bump()

    def _consume_and_claim_next(self, job_uuid: str, who: str, fence: int | None,
                                ttl: float) -> JobRecord | None:
        """One transaction: the consume, then the claim of the first claimable job."""
        try:
            with self._tx(write=True) as conn:
                self._consume_in(conn, job_uuid, who, fence)
                return self._claim_first(conn, who, ttl, set(self._garbage))
        except _Garbage as bad:  # rolled back, the consume too: do it on its own, then claim
            self._garbage.add(bad.sequence)
            return super()._consume_and_claim_next(job_uuid, who, fence, ttl)

    def _abandon(self, job_uuid: str, who: str, fence: int | None, delay: float,
                 reason: str | None) -> None:
        self._unclaim(job_uuid, who, fence, lambda now: {
            "available_at": now + delay if delay > 0 else None, "reason": reason})

    def _release(self, job_uuid: str, who: str, fence: int | None) -> None:
        self._unclaim(job_uuid, who, fence, lambda now: {
            "available_at": None,
            "attempts": sa.case((jobs.c.attempts > 0, jobs.c.attempts - 1), else_=0)})

    def _unclaim(self, job_uuid: str, who: str, fence: int | None,
                 values: Callable[[Any], dict[str, Any]]) -> None:
        with self._tx(write=True) as conn:
            now = self._now()
            done = conn.execute(
                jobs.update().where(self._owned(job_uuid, who, fence, now)).values(
                    state=str(JobState.UNCLAIMED), owner=None, lease_expires=None,
                    last_modified=now, **values(now)))
            if done.rowcount == 0:
                raise self._why_not(conn, job_uuid, who, fence, now)
            self._notify(conn)

    def _trash(self, job_uuid: str, who: str, fence: int | None, reason: str | None) -> None:
        with self._tx(write=True) as conn:
            now = self._now()
            row = conn.execute(jobs.delete().where(self._owned(job_uuid, who, fence, now))
                               .returning(*jobs.c)).first()
            if row is None:
                raise self._why_not(conn, job_uuid, who, fence, now)
            values = dict(row._mapping)
            del values["cancel"]  # the reason says it when it mattered
            values.update(reason=reason, last_modified=now, trashed_at=now)
            conn.execute(trash.insert().values(**values))
            self._notify(conn)

    def _requeue(self, trashed_uuid: str, record: JobRecord) -> None:
        with self._tx(write=True) as conn:
            gone = conn.execute(trash.delete().where(trash.c.uuid == trashed_uuid))
            if gone.rowcount == 0:
                raise errors.NotFound(f"no job {trashed_uuid} in the trash of board "
                                      f"{self.name!r}")
            values = _row_values(record)
            record.sequence = conn.execute(
                jobs.insert().values(**values).returning(_J.sequence)).scalar_one()
            self._notify(conn)

    def _iter_trash(self) -> Iterator[JobRecord]:
        after: tuple[float, int] | None = None
        while True:
            query = (sa.select(trash).order_by(trash.c.trashed_at.desc(),
                                               trash.c.trash_id.desc()).limit(_PAGE))
            if after is not None:
                query = query.where(sa.or_(
                    trash.c.trashed_at < after[0],
                    sa.and_(trash.c.trashed_at == after[0], trash.c.trash_id < after[1])))
            with self._tx() as conn:
                rows = conn.execute(query).all()
            for row in rows:
                record = self._decode_or_warn(row)
                if record is not None:
                    yield record
            if len(rows) < _PAGE:
                return
            after = (rows[-1].trashed_at, rows[-1].trash_id)

    def _wait_for_change(self, timeout: float) -> bool:
        with self._changed:
            # Sleep only if nothing changed since this thread last read the board, so a
            # change between that read and this wait is never missed.
            if getattr(self._seen, "version", -1) != self._version:
                return False
            posts = self._posts
            self._changed.wait(timeout)
            return self._posts != posts

    # -- entities --------------------------------------------------------------------------

    def _upsert(self) -> Any:
        if self._engine is not None and self._engine.dialect.name == "postgresql":
            from sqlalchemy.dialects import postgresql

            return postgresql.insert(entities)
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(entities)

    def _register_entity(self, entity: Entity, ttl: float) -> None:
        with self._tx(write=True) as conn:
            now = self._now()
            metadata = json.dumps(entity.metadata, sort_keys=True)
            stmt = self._upsert().values(kind=entity.kind, name=entity.name,
                                         metadata=metadata, expires=now + ttl)
            conn.execute(stmt.on_conflict_do_update(
                index_elements=["kind", "name"],
                set_={"metadata": stmt.excluded.metadata, "expires": stmt.excluded.expires}))

    def _unregister_entity(self, entity: Entity) -> None:
        with self._tx(write=True) as conn:
            conn.execute(entities.delete().where(entities.c.kind == entity.kind,
                                                 entities.c.name == entity.name))

    def _iter_entities(self) -> Iterator[Entity]:
        with self._tx() as conn:
            rows = conn.execute(sa.select(entities).where(entities.c.expires > self._now())
                                .order_by(entities.c.kind, entities.c.name)).all()
        found = []
        for row in rows:
            try:
                found.append(Entity(row.kind, row.name, json.loads(row.metadata)))
            except ValueError:
                logger.warning("board %r: skipping entity %r with undecodable metadata",
                               self.name, row.name)
        return iter(found)


#: The columns a claim changes, which the undoing of an undecodable row's claim puts back.
_UNDONE = ("state", "owner", "fence", "attempts", "lease_expires", "available_at",
           "last_modified")


def _claim_old(first: sa.Select[Any], values: dict[str, Any]) -> sa.Update:
    """``UPDATE ... FROM (first row, locked) AS old ... RETURNING`` the claimed row and, as
    ``old_<column>``, the claimed columns as they were (PostgreSQL)."""
    old = first.with_only_columns(_J.sequence, *(_J[c] for c in _UNDONE)).subquery("old")
    return (jobs.update().where(_J.sequence == old.c.sequence).values(**values)
            .returning(*jobs.c, *(old.c[c].label("old_" + c) for c in _UNDONE)))


#: The columns a post writes from the record (``available_at`` from the board's clock).
_POSTED_COLUMNS = ("uuid", "name", "details", "book_uuid", "book_name", "priority",
                   "created_on", "state", "last_modified", "attempts", "fence")


def _row_values(record: JobRecord) -> dict[str, Any]:
    return {
        "uuid": record.uuid, "name": record.name, "details": json.dumps(record.details),
        "book_uuid": record.book_uuid, "book_name": record.book_name,
        "priority": record.priority, "created_on": record.created_on,
        "state": str(JobState.UNCLAIMED), "last_modified": record.last_modified,
        "attempts": 0, "fence": 0, "available_at": record.available_at,
    }


class PostgresJobBoard(SQLJobBoard):
    """The SQL jobboard on PostgreSQL: server-clock leases, ``SKIP LOCKED`` claims and
    ``LISTEN``/``NOTIFY`` wake-ups (see ``SQLJobBoard``)."""

    CAPABILITIES = Capabilities(notifications=True)

    def __init__(self, url: str, **options: Any) -> None:
        options.setdefault("poll_interval", 0.5)
        super().__init__(url, **options)
        self._listener: threading.Thread | None = None
        self._stop = threading.Event()
        #: ``_claim_book_statement``'s statement, with the parts it was built for.
        self._claim_book: tuple[BookParts, sa.Executable] | None = None
        #: ``application_name`` of the listening connection (seen in ``pg_stat_activity``).
        self.listener_name = f"legato-listen:{self.name}"[:63]

    def _close(self) -> None:
        self._stop.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.join(5)
        super()._close()
        self._stop = threading.Event()

    def _now(self, value: float | None = None) -> sa.ColumnElement[float]:
        if not self._server_clock:
            return super()._now(value)
        return _SERVER_NOW

    def _statement_now(self) -> sa.ColumnElement[float]:
        return _SERVER_NOW if self._server_clock else super()._statement_now()

    def _next_query(self, now: sa.ColumnElement[float], skip: set[int]) -> sa.Select[Any]:
        return super()._next_query(now, skip).with_for_update(skip_locked=True)

    # -- claims: one statement, an undecodable row's claim undone -------------------------

    def _claim_next_once(self, who: str, ttl: float, skip: set[int]) -> JobRecord | None:
        # One statement (see _claim_first): autocommit saves the BEGIN and COMMIT round trips.
        with self._tx(write=True, single=True) as conn:
            return self._claim_first(conn, who, ttl, skip)

    def _claim_next_with_book(self, who: str,
                              ttl: float) -> tuple[JobRecord, LogBook | None] | None:
        if not self._shares_persistence():
            return super()._claim_next_with_book(who, ttl)
        # The claim and its book in one statement (``_claim_book_statement``) when the
        # persistence gives its read as parts; else (or once rows are set aside, or after an
        # undecodable row was put back) the claim, then the book on the same connection. Each
        # statement commits on its own: a book that cannot be read leaves the claim made.
        with self._tx(write=True, single=True) as conn:
            parts = None if self._garbage else self._book_parts()
            rows = None if parts is None else self._claim_with_book_rows(conn, parts, who, ttl)
            if rows is not None:
                if not rows:
                    return None
                record = self._decoded_or_put_back(conn, rows[0], who)
                if record is not None:
                    assert parts is not None
                    return record, self._book_of_rows(parts, record, rows)
            record = self._claim_first(conn, who, ttl, set(self._garbage))
            return None if record is None else (record, self._book_or_none(conn, record))

    def _book_parts(self) -> BookParts | None:
        assert self.persistence is not None
        return self.persistence.book_parts()

    def _claim_with_book_rows(self, conn: sa.Connection, parts: BookParts, who: str,
                              ttl: float) -> list[Any] | None:
        """The rows of ``_claim_book_statement`` (none: nothing to claim); None when the
        statement failed short of the connection (say the persistence's tables cannot be
        read): it claimed nothing, and the caller claims without it."""
        try:
            return list(conn.execute(self._claim_book_statement(parts),
                                     {"now": self.clock(), "who": who, "ttl": ttl}))
        except sa.exc.DBAPIError as exc:
            if exc.connection_invalidated:
                raise
            logger.debug("board %r: claim with its book failed, claiming without: %r",
                         self.name, exc)
            return None

    def _claim_book_statement(self, parts: BookParts) -> sa.Executable:
        """``WITH claimed AS (_claim_old's UPDATE) SELECT claimed.*, <the book's columns>
        FROM claimed LEFT JOIN <the book's rows on claimed.book_uuid>``: the claim and the
        claimed job's book (``parts``) as one statement, one row per atom of the book. Built
        once per parts."""
        cached = self._claim_book
        if cached is not None and cached[0] is parts:
            return cached[1]
        now = self._statement_now()
        claimed = _claim_old(self._next_query(now, set()),
                             self._claim_values(sa.bindparam("who"), _TTL, now)).cte("claimed")
        statement = (sa.select(*claimed.c, *parts.columns())
                     .select_from(parts.join(claimed, claimed.c.book_uuid))
                     .order_by(*parts.order_by()))
        self._claim_book = (parts, statement)
        return statement

    def _book_of_rows(self, parts: BookParts, record: JobRecord,
                      rows: list[Any]) -> LogBook | None:
        """The claimed job's book in ``_claim_book_statement``'s rows; None when the job
        names none, or it is gone, or it cannot be decoded (whoever runs the job reads it
        again and meets the error where it is handled)."""
        if record.book_uuid is None:
            return None
        try:
            return parts.book([row._mapping for row in rows])
        except Exception as exc:  # whatever it is: the book is just not brought
            logger.debug("board %r: job %s claimed without its book: %r", self.name,
                         record.uuid, exc)
            return None

    def _claim_first(self, conn: sa.Connection, who: str, ttl: float,
                     skip: set[int]) -> JobRecord | None:
        """Claim the first claimable job in one statement that also returns the row as it
        was. A row that cannot be decoded is put back as it was by a second statement (in the
        caller's transaction the claim and its undoing cancel out; in autocommit the undoing
        lands only while that claim holds), set aside, and the next row claimed: it is never
        run, and never fails the caller's transaction."""
        while True:
            statement = (self._claim_old_statement if not skip
                         else _claim_old(self._next_query(self._statement_now(), skip),
                                         self._claim_values(sa.bindparam("who"), _TTL,
                                                            self._statement_now())))
            row = conn.execute(statement, {"now": self.clock(), "who": who, "ttl": ttl}).first()
            if row is None:
                return None
            record = self._decoded_or_put_back(conn, row, who)
            if record is not None:
                return record
            skip = skip | {row.sequence}

    def _decoded_or_put_back(self, conn: sa.Connection, row: Any, who: str) -> JobRecord | None:
        """The record of a row ``_claim_old`` claimed for ``who``; None if it cannot be decoded,
        after putting the row back as it was (only while that claim holds) and setting it
        aside."""
        try:
            return self._decode(row)
        except errors.GarbageRecord as exc:
            logger.warning("board %r: not claiming job row %s (uuid %r) that cannot be "
                           "decoded, set aside: %s", self.name, row.sequence, row.uuid, exc)
        conn.execute(jobs.update().where(_J.sequence == row.sequence, _J.fence == row.fence,
                                         _J.owner == who)
                     .values({c: getattr(row, "old_" + c) for c in _UNDONE}))
        self._garbage.add(row.sequence)
        return None

    @functools.cached_property
    def _claim_old_statement(self) -> sa.Executable:
        """``_claim_first``'s statement when no row is set aside, built once."""
        now = self._statement_now()
        return _claim_old(self._next_query(now, set()),
                          self._claim_values(sa.bindparam("who"), _TTL, now))

    def _consume_in_transaction(self, transaction: Any, job_uuid: str, who: str,
                                fence: int | None, ttl: float | None) -> JobRecord | None:
        """The consume and the claim in one statement (``_consume_claim_statements``), or,
        once rows are set aside, the consume and then ``_claim_first``. An undecodable row is
        put back, never failing the caller's transaction; a refused consume raises, and the
        caller's rollback takes the claim with it."""
        conn: sa.Connection = transaction
        if isinstance(transaction, OneStatement) and not self._garbage:
            return self._consume_joined(transaction, job_uuid, who, fence, ttl)
        if ttl is None or self._garbage:
            self._consume_in(conn, job_uuid, who, fence, notify=False)
            return None if ttl is None else self._claim_first(conn, who, ttl,
                                                              set(self._garbage))
        now = self.clock()
        row = conn.execute(self._consume_claim_statements[fence is not None],
                           {"now": now, "c_uuid": job_uuid, "who": who, "c_fence": fence,
                            "ttl": ttl}).one()
        if row.consumed == 0:
            raise self._why_not(conn, job_uuid, who, fence, self._now(now))
        if row.sequence is None:
            return None
        record = self._decoded_or_put_back(conn, row, who)
        if record is not None:
            return record
        return self._claim_first(conn, who, ttl, set(self._garbage))

    def _consume_joined(self, joint: OneStatement, job_uuid: str, who: str, fence: int | None,
                        ttl: float | None) -> JobRecord | None:
        """The consume (and the claim) as parts of the persistence's statement writing the
        flow's end (``_ConsumeParts``): one autocommitted statement for the three. A refused
        consume raises (nothing was written); an undecodable next row is put back by a
        statement of its own (the consume has landed), and the next one claimed."""
        now = self.clock()
        # Floats, as the statement's Double parameters take them (``pg_joined_sql``).
        row = joint.join(self._consume_parts[(fence is not None, ttl is not None)],
                         {"now": float(now), "c_uuid": job_uuid, "who": who, "c_fence": fence,
                          "ttl": None if ttl is None else float(ttl)})
        conn: sa.Connection = joint.connection
        if row.joined == 0 or row.consumed == 0:
            raise self._why_not(conn, job_uuid, who, fence, self._now(now))
        if ttl is None or row.sequence is None:
            return None
        record = self._decoded_or_put_back(conn, row, who)
        if record is not None:
            return record
        return self._claim_first(conn, who, ttl, set(self._garbage))

    def _book_in(self, transaction: Any, record: JobRecord) -> LogBook | None:
        if not isinstance(transaction, OneStatement):
            return super()._book_in(transaction, record)
        # The consume and the claim have landed: a book that cannot be read must not fail
        # them (whoever runs the job reads it again).
        try:
            return super()._book_in(transaction, record)
        except Exception as exc:  # whatever it is: the book is just not brought
            logger.debug("board %r: job %s claimed without its book: %r", self.name,
                         record.uuid, exc)
            return None

    @functools.cached_property
    def _consume_parts(self) -> dict[tuple[bool, bool], _ConsumeParts]:
        """``_ConsumeParts`` by (fenced, claiming the next job), built once."""
        return {(fenced, claim): _ConsumeParts(self._statement_now(), self._claimable,
                                               fenced=fenced, claim=claim)
                for fenced in (False, True) for claim in (False, True)}

    @functools.cached_property
    def _consume_claim_statements(self) -> dict[bool, sa.Executable]:
        """One statement, with and without a fence: ``WITH consumed AS (DELETE the owned job),
        claimed AS (_claim_old's UPDATE) SELECT`` the count consumed and the claimed row (NULLs
        when none). Both parts read one snapshot; they never touch one row, since a job is
        consumed only under a live lease and claimed only without one (one ``now``)."""
        now = self._statement_now()
        claim = _claim_old(self._next_query(now, set()),
                           self._claim_values(sa.bindparam("who"), _TTL, now))
        statements: dict[bool, sa.Executable] = {}
        for fenced in (False, True):
            # Parameters named after no column: an UPDATE compiled with a parameter named
            # like a column would also set that column.
            consumed = jobs.delete().where(self._owned(
                sa.bindparam("c_uuid"), sa.bindparam("who"),
                sa.bindparam("c_fence") if fenced else None, now)).returning(_J.sequence) \
                .cte("consumed")
            claimed = claim.cte("claimed")
            count = sa.select(sa.func.count()).select_from(consumed).scalar_subquery()
            one = sa.select(sa.literal_column("1").label("one")).subquery("one")
            statements[fenced] = (
                sa.select(count.label("consumed"), *claimed.c)
                .select_from(one.outerjoin(claimed, sa.true())))
        return statements

    def _wait_for_change(self, timeout: float) -> bool:
        if self._listener is None:
            with self._connect_lock:
                if self._listener is None and self._connected:
                    self._listener = threading.Thread(
                        target=self._listen, args=(self._stop,), daemon=True,
                        name=f"legato-listen-{self.name}")
                    self._listener.start()
        return super()._wait_for_change(timeout)

    def _listen(self, stop: threading.Event) -> None:
        """Turn notifications into wake-ups; reconnect with back-off after errors."""
        import psycopg
        from psycopg import sql

        conninfo = self.url.set(drivername="postgresql").render_as_string(hide_password=False)
        backoff = 0.1
        while not stop.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True,
                                     connect_timeout=max(1, round(self.connect_timeout)),
                                     application_name=self.listener_name) as conn:
                    # The channel of the schema this connection finds the jobs table in
                    # (through its search_path, as the board's statements do); resolved at
                    # each connect, so it follows a renamed schema.
                    (channel,) = conn.execute(sql_tables.CHANNEL_QUERY).fetchall()[0]
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    self._bump()  # anything posted before LISTEN took effect: look again
                    backoff = 0.1
                    while not stop.is_set():
                        for note in conn.notifies(timeout=0.2):
                            self._bump(posted=note.payload == sql_tables.POST_PAYLOAD)
            except psycopg.Error as exc:
                logger.warning("board %r: notification listener lost its connection (%s); "
                               "polling until it is back", self.name, exc)
                stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)


class _ConsumeParts:
    """A job's consume, and the next job's claim (``claim``), as ``StatementParts`` of the
    persistence's statement writing the flow's end. ``check`` locks the owned job row (owner,
    live lease, fence when ``fenced``): the flow's write is gated on it, and the consume and the
    claim on the flow's write, so all land or none does. Parameters: ``now``, ``c_uuid``,
    ``who``, ``c_fence``, ``ttl``. Columns added: ``consumed`` (0 or 1), and the claimed row
    with its ``old_`` columns (as ``_claim_old``; NULLs when none was claimed).

    The jobs table goes by short aliases: the joined statement stays under the length up to
    which the driver caches a statement's parsing (psycopg: 4 KiB)."""

    def __init__(self, now: sa.ColumnElement[float],
                 claimable: Callable[[sa.ColumnElement[float], Any], sa.ColumnElement[bool]],
                 *, fenced: bool, claim: bool) -> None:
        self._now = now  # the board's clock in its statements
        self._claimable = claimable  # the board's: whether a job row can be claimed
        self._fenced = fenced
        self._claim = claim

    def _owned(self, table: sa.Alias) -> sa.ColumnElement[bool]:
        """``SQLJobBoard._owned`` of the bound job, on ``table`` (an alias of the jobs)."""
        c = table.c
        clauses = [c.uuid == sa.bindparam("c_uuid"), c.owner == sa.bindparam("who"),
                   c.state == _CLAIMED,
                   c.lease_expires > self._now]
        if self._fenced:
            clauses.append(c.fence == sa.bindparam("c_fence"))
        return sa.and_(*clauses)

    def check(self) -> sa.Select[Any]:
        mine = _jobs_as("k")
        return sa.select(mine.c.sequence).where(self._owned(mine)).with_for_update()

    def writes(self, gate: sa.ColumnElement[bool]
               ) -> tuple[list[sa.CTE], Callable[[sa.Select[Any]], sa.Select[Any]]]:
        # The row the check locked, deleted while the flow's write landed. Parameters are
        # named after no column (see ``_consume_claim_statements``).
        mine = _jobs_as("d")
        consumed = (sa.delete(mine).where(self._owned(mine), gate)
                    .returning(mine.c.sequence).cte("consumed"))
        count = sa.select(sa.func.count()).select_from(consumed).scalar_subquery()
        if not self._claim:
            return [consumed], lambda select: select.add_columns(count.label("consumed"))
        claimed = self._claimed(gate).cte("claimed")
        one = sa.select(sa.literal_column("1").label("one")).subquery("one")

        def extend(select: sa.Select[Any]) -> sa.Select[Any]:
            # ``claimed.*``: the driver names the columns (the statement stays short).
            return (select.add_columns(count.label("consumed"),
                                       sa.literal_column("claimed.*"))
                    .select_from(one.outerjoin(claimed, sa.true())))

        return [consumed, claimed], extend

    def _claimed(self, gate: sa.ColumnElement[bool]) -> sa.Update:
        """``_claim_old``'s claim of the first claimable job (``FOR UPDATE SKIP LOCKED``),
        landing only where ``gate`` holds."""
        now = self._now
        row, first = _jobs_as("j"), _jobs_as("f")
        old = (sa.select(first.c.sequence, *(first.c[c] for c in _UNDONE))
               .where(self._claimable(now, first.c))
               .order_by(first.c.priority.desc(), first.c.sequence)
               .limit(sa.literal_column("1"))
               .with_for_update(skip_locked=True).subquery("old"))
        return (sa.update(row).where(row.c.sequence == old.c.sequence, gate)
                .values(state=_CLAIMED, owner=sa.bindparam("who"),
                        fence=row.c.fence + _ONE, attempts=row.c.attempts + _ONE,
                        lease_expires=now + _TTL, available_at=sa.null(), last_modified=now)
                .returning(sa.literal_column(f"{row.name}.*"),
                           *(old.c[c].label("old_" + c) for c in _UNDONE)))


#: Constants of ``_ConsumeParts``' statement, written in it (no parameters to send).
_CLAIMED: sa.ColumnClause[str] = sa.literal_column(f"'{JobState.CLAIMED!s}'")
_ONE: sa.ColumnClause[int] = sa.literal_column("1")


def _jobs_as(name: str) -> sa.Alias:
    """The jobs table under the alias ``name``."""
    return cast(sa.Alias, jobs.alias(name))
