"""The one SQLAlchemy engine factory and driver-error translation of SQL persistence and the SQL
jobboard: one engine per backend object, tuned for each database.

* URLs: ``postgresql://`` and ``postgres://`` use psycopg 3, ``mysql://`` and ``mariadb://`` use
  PyMySQL, unless the URL names a driver (``postgresql+psycopg2://``); a backend may limit the
  drivers it takes (the jobboard listens with psycopg 3). The query string goes to the driver
  unchanged (``?options=-csearch_path%3Dmyschema``), but only the options
  ``legato._sqlurl.DRIVER_OPTIONS`` lists; others are refused (``check_sql_url``).
* SQLite: every connection turns foreign keys on (cascading deletes), uses the WAL journal with
  ``synchronous=NORMAL`` (a commit survives a crash of the process; only a power loss can lose the
  last commits) and waits ``busy_timeout`` seconds for a lock instead of failing. Write transactions
  start with ``BEGIN IMMEDIATE`` so two writers never deadlock upgrading a read lock.
* Network databases: a connect timeout, TCP keepalives, a read timeout (PostgreSQL
  ``tcp_user_timeout``, PyMySQL ``read_timeout``/``write_timeout``) and a stale-connection check
  on checkout, so a lost server fails promptly and the pool recovers once it is back.
* Errors: ``translate_errors`` turns driver and SQLAlchemy errors into the backend's Legato error
  (``StorageFailure`` for persistence, ``BoardUnavailable`` for the board), a damaged SQLite file
  into ``StorageCorrupted``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import logging
import os
import sqlite3
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import URL, Engine
from sqlalchemy.pool import StaticPool

from legato import errors
from legato._sqlurl import check_sql_url, make_sqlite_folder

__all__ = ["PING_AFTER_IDLE", "WAL_CHECKPOINT_EVERY", "EngineSettings", "checkpoint_wal",
           "create_engine", "database_key", "normalise_url", "translate_errors"]

logger = logging.getLogger(__name__)

#: scheme -> SQLAlchemy dialect+driver used when the URL names no driver.
_DEFAULT_DRIVERS = {
    "sqlite": "sqlite+pysqlite",
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}

#: SQLAlchemy driver name -> (module to import, legato extra that installs it).
_DRIVER_MODULES = {
    "psycopg": ("psycopg", "postgres"),
    "psycopg2": ("psycopg2", "postgres"),
    "pymysql": ("pymysql", "mysql"),
    "mysqldb": ("MySQLdb", "mysql"),
}

#: Execution option read by the SQLite ``begin`` hook: the ``BEGIN`` flavour to emit.
SQLITE_BEGIN = "legato_sqlite_begin"

#: Default ``EngineSettings.wal_checkpoint_every``: write transactions between two truncating
#: WAL checkpoints (a checkpoint costs about one fsync of what changed since the last one).
WAL_CHECKPOINT_EVERY = 1000
#: Default ``EngineSettings.ping_after_idle`` (seconds): a PostgreSQL connection that rested in
#: the pool this long is tested before use; one back sooner is not (a busy worker checks out a
#: connection a few times per job, and each test was a round trip).
PING_AFTER_IDLE = 1.0
#: ``ConnectionPoolEntry.info`` key: when the connection was last handed back to the pool.
_RESTED_SINCE = "legato_rested_since"
#: Longest a truncating checkpoint waits for readers (ms) before it gives up until next time;
#: writers must not stall behind a long read for the sake of housekeeping.
_CHECKPOINT_BUSY_MS = 200


def checkpoint_wal(driver_connection: Any, busy_timeout: float) -> None:
    """Checkpoint a SQLite connection's WAL and truncate it to zero bytes (between
    transactions). Waits at most ``_CHECKPOINT_BUSY_MS`` for other connections; a checkpoint
    that cannot finish, or fails, is left for the next one (logged at DEBUG)."""
    try:
        driver_connection.execute(f"PRAGMA busy_timeout = {_CHECKPOINT_BUSY_MS}")
        try:
            driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            driver_connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    except sqlite3.Error as error:
        logger.debug("WAL checkpoint skipped: %s", error)


@dataclasses.dataclass(frozen=True, kw_only=True)
class EngineSettings:
    """Connection tuning shared by every dialect.

    Attributes:
        connect_timeout: seconds to wait for a network database to accept a connection.
        busy_timeout: seconds a SQLite connection waits for another process's lock.
        read_timeout: seconds a network database may leave a request unanswered before the
            connection counts as lost (MySQL ``read_timeout``, PostgreSQL ``tcp_user_timeout``).
        pool_size: connections kept open per backend object (network databases and SQLite
            files).
        pre_ping: test a pooled connection before each use (network databases). Costs a round
            trip per operation; without it a dead connection is still found on first use and
            the operation retried (``Persistence.retries``) on a fresh one.
        ping_after_idle: PostgreSQL, with ``pre_ping``: test only a connection that rested in
            the pool at least this many seconds (0: every checkout). A connection handed back
            a moment ago was alive then; one that rested may have been dropped by the server
            (restart, ``idle_session_timeout``) or a middlebox. A connection that died within
            the window is found on first use, which invalidates the pool, like
            ``pre_ping=False``.
        echo: log every SQL statement (SQLAlchemy's ``echo``).
        wal_checkpoint_every: SQLite: after this many write transactions, the writer that
            makes the last one checkpoints the WAL and truncates it
            (``PRAGMA wal_checkpoint(TRUNCATE)``); 0 never does. SQLite's own automatic
            checkpoint never shrinks the ``-wal`` file and is starved by long readers, so
            without this a small volume fills up.
        lenient_text: SQLite: read text that is not UTF-8 (written behind Legato's back) with
            U+FFFD instead of failing the whole read as a driver error.
    """

    connect_timeout: float = 10.0
    busy_timeout: float = 60.0
    read_timeout: float = 60.0
    pool_size: int = 5
    pre_ping: bool = True
    ping_after_idle: float = PING_AFTER_IDLE
    echo: bool = False
    wal_checkpoint_every: int = WAL_CHECKPOINT_EVERY
    lenient_text: bool = False


def normalise_url(url: str, *, what: str = "persistence",
                  drivers: Mapping[str, tuple[str, ...]] | None = None) -> URL:
    """Parse ``url`` and pick the default driver for its scheme.

    Args:
        url: the database URL.
        what: the backend, in messages (``"persistence"``, ``"jobboard"``).
        drivers: the schemes the backend serves and the SQLAlchemy drivers it takes for each
            (the first is the default); None: every scheme and driver persistence knows.

    Raises:
        UnknownBackend: not a URL this backend serves, or a driver it does not take.
        MissingDriver: the driver is not installed (the message names the extra).
        ValueError: a mistake in the URL (``check_sql_url``).
    """
    try:
        parsed = sa.make_url(url)
    except exc.ArgumentError as error:
        raise errors.UnknownBackend(f"not a database URL: {error}") from error
    scheme, _, driver = parsed.drivername.partition("+")
    scheme = scheme.lower()
    default = _DEFAULT_DRIVERS.get(scheme)
    if default is None or (drivers is not None and scheme not in drivers):
        raise errors.UnknownBackend(f"SQL {what} does not serve {scheme!r} URLs")
    dialect = "postgresql" if scheme == "postgres" else scheme
    if drivers is not None:
        taken = drivers[scheme]
        if driver and driver not in taken:
            raise errors.UnknownBackend(
                f"SQL {what} does not work with the {driver!r} driver on {scheme}; it takes "
                f"{', '.join(f'{dialect}+{name}' for name in taken)}")
        default = f"{dialect}+{taken[0]}"
    parsed = parsed.set(drivername=f"{dialect}+{driver}" if driver else default)
    _require_driver(parsed.get_driver_name(), scheme, what)
    check_sql_url(parsed, what, shown=sa.make_url(url).render_as_string(hide_password=True))
    return parsed


def database_key(url: URL) -> str | None:
    """Which database a normalised URL's connections reach, to tell whether two backends'
    writes may share one transaction: the URL without its driver and password (so
    ``postgres://u@h/db`` and ``postgresql+psycopg://u:pw@h/db`` match, and a different user,
    host, database or ``search_path`` option does not), or a SQLite file's real path. None
    for an in-memory SQLite database, which no other engine can reach."""
    if url.get_backend_name() == "sqlite":
        if url.database in (None, "", ":memory:"):
            return None
        return f"sqlite:{os.path.realpath(url.database)}"
    plain = URL.create(url.get_backend_name(), username=url.username, host=url.host,
                       port=url.port, database=url.database, query=url.query)
    return plain.render_as_string(hide_password=False)


def _require_driver(driver: str, scheme: str, what: str) -> None:
    module, extra = _DRIVER_MODULES.get(driver, (None, None))
    if module is None or extra is None:
        return
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as error:
        raise errors.MissingDriver(
            f"{scheme!r} {what} needs the {module!r} driver: pip install 'legato[{extra}]'",
            extra=extra,
        ) from error


#: Engines whose pooled connections a forked child must not reuse (they belong to the parent).
_POOLED: weakref.WeakSet[Engine] = weakref.WeakSet()


def _forget_parent_connections() -> None:
    for engine in list(_POOLED):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_parent_connections)


def create_engine(url: URL, settings: EngineSettings, *, autocommit: bool = False) -> Engine:
    """Return an engine for ``url`` with Legato's per-dialect settings and hooks.

    ``autocommit`` (network databases): every connection of the pool in autocommit, for good;
    a transaction then needs an engine with an isolation level
    (``Engine.execution_options(isolation_level=...)``), set on each checkout and reset on
    return. Cheaper than the other way round when most work is single statements.

    Raises:
        UnknownBackend: SQLAlchemy has no such dialect or driver.
    """
    try:
        engine = _create_engine(url, settings, autocommit=autocommit)
    except exc.ArgumentError as error:  # includes NoSuchModuleError
        raise errors.UnknownBackend(f"cannot use {url.drivername!r}: {error}") from error
    if not isinstance(engine.pool, StaticPool):  # an in-memory database lives in its connection
        _POOLED.add(engine)
    return engine


def _create_engine(url: URL, settings: EngineSettings, *, autocommit: bool) -> Engine:
    backend = url.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url, settings)
    connect_args: dict[str, Any] = {}
    query = set(url.query)
    if backend == "postgresql" and url.get_driver_name() == "psycopg":
        defaults: dict[str, Any] = {
            "connect_timeout": max(1, round(settings.connect_timeout)),
            # Keepalives find a dead idle connection; tcp_user_timeout one whose writes go
            # unanswered (a server or network that vanished without a reset).
            "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
            "keepalives_count": 3, "tcp_user_timeout": int(settings.read_timeout * 1000),
        }
        connect_args = {k: v for k, v in defaults.items() if k not in query}
    elif url.get_driver_name() == "pymysql":
        # PyMySQL's connect_timeout covers the TCP connect only; the server's greeting is read
        # under read_timeout, like every reply after it.
        defaults = {"connect_timeout": settings.connect_timeout,
                    "read_timeout": settings.read_timeout,
                    "write_timeout": settings.read_timeout, "charset": "utf8mb4"}
        connect_args = {k: v for k, v in defaults.items() if k not in query}
    options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    # PostgreSQL tests a pooled connection only after it rested (``ping_after_idle``).
    ping_rested = (backend == "postgresql" and settings.pre_ping
                   and settings.ping_after_idle > 0)
    engine = sa.create_engine(
        url, connect_args=connect_args, pool_pre_ping=settings.pre_ping and not ping_rested,
        pool_size=settings.pool_size, max_overflow=settings.pool_size * 2,
        pool_timeout=settings.connect_timeout, echo=settings.echo, **options,
    )
    if ping_rested:
        _ping_after_idle(engine, settings.ping_after_idle)
    return engine


def _ping_after_idle(engine: Engine, idle: float) -> None:
    """Test a pooled connection on checkout only when it rested ``idle`` seconds or more since
    it was handed back (a new connection is not tested: it was just made). A failed test
    invalidates the pool (``InvalidatePoolError``: its other connections are as old) and the
    pool connects afresh; an unreachable server then fails the checkout as usual."""
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _rested(_dbapi_connection: Any, record: Any) -> None:
        record.info[_RESTED_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _test_if_rested(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_RESTED_SINCE)
        if since is None or time.monotonic() - since < idle:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise exc.InvalidatePoolError(f"connection failed its test: {error}") from error


def _sqlite_engine(url: URL, settings: EngineSettings) -> Engine:
    memory = url.database in (None, "", ":memory:")
    try:
        make_sqlite_folder(url)
    except OSError as error:
        raise errors.StorageFailure(error.strerror or str(error)) from error
    options: dict[str, Any] = {"echo": settings.echo}
    # Pooled connections move between threads (one at a time).
    connect_args: dict[str, Any] = {"timeout": settings.busy_timeout,
                                    "check_same_thread": False}
    if memory:
        # One shared connection, or each checkout would see its own empty database. The backend
        # serialises every operation on it (SQLPersistence._lock).
        options["poolclass"] = StaticPool
    else:
        options.update(pool_size=settings.pool_size, max_overflow=settings.pool_size * 2,
                       pool_timeout=settings.busy_timeout)
    engine = sa.create_engine(url, connect_args=connect_args, **options)
    lenient = settings.lenient_text
    busy_ms = int(settings.busy_timeout * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module (it would BEGIN DEFERRED
        # behind our back); the "begin" hook below emits the BEGIN we want.
        dbapi_connection.isolation_level = None
        if lenient:
            dbapi_connection.text_factory = _lenient_text
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if not memory:
                cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        mode = conn.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")
        # Straight to the driver: this runs once per transaction, and SQLAlchemy's statement
        # machinery would cost as much as the write itself.
        dbapi_connection = conn.connection.dbapi_connection
        assert dbapi_connection is not None
        dbapi_connection.execute(f"BEGIN {mode}")

    return engine


def _lenient_text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


@contextlib.contextmanager
def translate_errors(what: str, where: str = "", *,
                     failure: Callable[[str], errors.LegatoError] = errors.StorageFailure,
                     ) -> Iterator[None]:
    """Turn database and driver errors into ``failure(message)`` (``StorageFailure`` unless
    given; Legato's own errors pass), except a damaged SQLite file: ``StorageCorrupted``, which
    is not an outage. ``where`` (e.g. ``SQLite file 'x.db'``) goes in the message."""
    if where:
        what = f"{what} ({where})"
    try:
        yield
    except errors.LegatoError:
        raise
    except exc.SQLAlchemyError as error:
        original = getattr(error, "orig", None)
        if original is not None and _corrupt(original):
            raise _corrupted(what, _describe(error)) from error
        raise failure(f"{what} failed: {_describe(error)}") from error
    except sqlite3.Error as error:  # the SQLite fast paths talk to the driver directly
        if _corrupt(error):
            raise _corrupted(what, _describe_driver(error)) from error
        raise failure(f"{what} failed: {_describe_driver(error)}") from error
    except OSError as error:
        raise failure(f"{what} failed: {error}") from error


#: SQLite's result codes for a damaged file: SQLITE_CORRUPT and SQLITE_NOTADB.
_SQLITE_CORRUPT_CODES = (11, 26)
_SQLITE_CORRUPT_MESSAGES = ("database disk image is malformed", "file is not a database")


def _corrupt(error: BaseException) -> bool:
    """Whether a driver error says the SQLite file is damaged (not that it is busy, locked or
    unreachable)."""
    if not isinstance(error, sqlite3.DatabaseError):
        return False
    code = getattr(error, "sqlite_errorcode", None)
    if isinstance(code, int) and code & 0xFF in _SQLITE_CORRUPT_CODES:
        return True
    return any(message in str(error) for message in _SQLITE_CORRUPT_MESSAGES)


def _corrupted(what: str, description: str) -> errors.StorageCorrupted:
    return errors.StorageCorrupted(
        f"{what} failed: the SQLite file is damaged ({description}); restore it from a backup "
        "or repair it (sqlite3 .recover) before running conductors on it again")


#: Driver messages meaning a table is missing (SQLite, PostgreSQL, MySQL).
_NO_TABLE = ("no such table", "does not exist", "doesn't exist")


def _describe(error: exc.SQLAlchemyError) -> str:
    # DBAPIError's own str() repeats the SQL and its parameters (which may be large results).
    original = getattr(error, "orig", None)
    return _describe_driver(original if original is not None else error)


def _describe_driver(error: BaseException) -> str:
    text = str(error).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    hint = " (was upgrade() run?)" if any(m in first for m in _NO_TABLE) else ""
    return f"{type(error).__name__}: {first}{hint}"
