"""A jobboard on Redis: many machines, leases that expire on the server, wake-ups by pub/sub.

URL: ``redis://[user:password@]host:port/db?namespace=legato&ttl=30&socket_timeout=5``
(``rediss://`` for TLS), or through Sentinel:
``redis+sentinel://[user:password@]sentinel1:26379,sentinel2:26379/<service>[/db]?...``;
``require_persistence=true`` refuses a server that persists nothing (see below).
Keys live under ``<namespace>:``:

* ``job:<uuid>``: a hash per job; every value is JSON (``null`` for None). It holds the job's
  owner, fencing number, lease expiry and attempts next to its name and details.
* ``jobs``: every job on the board, scored ``-priority * 2**40 + sequence`` so that score order
  is claim order (higher priority first, then oldest post). ``ready`` holds the claimable subset
  with the same scores, ``delayed`` the jobs waiting for ``available_at`` and ``claimed`` the
  claimed ones, both scored by time. ``bad`` holds entries that could not be decoded, set aside.
* ``seq``: the post counter. ``trash`` (scored by trash time) + ``trashed:<uuid>`` hashes.
* ``entities`` (hash of JSON) + ``entities:expiry`` (scored by expiry).
* ``epoch``: a random id written at the first connect (``SET NX``), the board's ``epoch``.

A Redis that persists nothing (``appendonly no`` and no ``save`` points) loses every job when it
restarts, and an empty server looks like an empty board. So every script first compares the
server's ``epoch`` with the one the board knows (in the same call: no extra round trip), and so
do ``get`` (``Job.state``) and the listing; when it is gone or changed the call does nothing and
raises ``BoardDataLost``, logged as an error, and the board takes the server's new epoch (writing
one if there is none) and works on. ``Job.state`` and ``Job.wait()`` then raise
``BoardDataLost`` for every job made under the old epoch that is gone, instead of calling it
COMPLETE. At connect the board reads ``CONFIG GET appendonly`` and ``CONFIG GET save`` and logs
a warning when the server persists nothing; with ``require_persistence=true`` (URL) or
``require_persistence=True`` (keyword) it refuses such a server instead (``JobFailure``). Where
``CONFIG`` is disabled (managed services) the check is skipped quietly. A process that connects
only after the data was lost cannot know it was ever there: the check protects what a board
object has seen.

Every step that touches more than one key is one Lua script (``lua/`` beside this module), so it is
atomic; scripts read the server's clock (``TIME``), so every machine agrees on lease expiry. A
claim nobody renews simply expires: ``claim``/``claim_next`` treat it as claimable, with no code
on the dead owner's side. ``claim_next`` first moves a bounded number of due delayed jobs and
expired claims back to ``ready``, then takes the first ready job: its cost does not grow with
the backlog. ``consume_and_claim_next`` runs ``consume`` then ``claim_next`` in one script;
``abandon`` and ``release`` share one body (``unclaim`` in ``common.lua``): the job goes back to
``ready`` (or ``delayed``) with its old score, so it keeps its place in claim order.

The scripts are redis-py ``Script`` objects (``register_script``: redis-py sends ``EVALSHA`` and
loads a script again after ``NOSCRIPT``). They are the board's hot path, so each conductor step
is one script: ``consume_and_claim_next`` finishes a job and claims the next in one round trip.
``consume_and_claim_next_async`` sends that script on a connection of the client's pool and
returns: the round trip overlaps the caller's work, and ``result()`` reads the answer. The
connection is then kept checked out for the next such call (checked as the pool checks an idle
connection), not checked out and released each time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.resources
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit
from uuid import uuid4

import redis
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, Sentinel

from legato import errors
from legato._redact import redact
from legato.jobboard import base
from legato.jobboard.base import (
    Capabilities,
    Entity,
    Job,
    JobBoard,
    JobRecord,
    Pending,
    Position,
    decode_record,
)
from legato.states import JobPriority, JobState

if TYPE_CHECKING:
    from legato.persistence.base import Persistence

__all__ = ["RedisJobBoard", "RedisSettings"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_SCRIPTS = ("post", "claim", "claim_next", "renew", "consume", "consume_and_claim_next",
            "abandon", "release", "trash", "cancel", "requeue", "promote", "set_aside",
            "entity_register", "entity_list")
#: Most delayed jobs, expired claims or bad entries one script call handles (bounded work).
_HOUSEKEEPING_LIMIT = 100
_BOARD_OPTIONS = ("name", "ttl", "poll_interval", "clock")
#: A job's score in ``jobs`` and ``ready`` is ``-priority * ONE_PRIORITY + sequence``
#: (``common.lua``): each priority has a stretch of ONE_PRIORITY scores of its own.
ONE_PRIORITY = 2 ** 40


def _score(position: Position) -> int:
    return -position[0] * ONE_PRIORITY + position[1]


@dataclasses.dataclass(frozen=True, kw_only=True)
class RedisSettings:
    """How to reach Redis and where the board's keys live.

    Attributes:
        host, port, db, username, password: the server and database (the password is
            never shown: not in ``repr``, messages or logs).
        ssl: use TLS (``rediss://``, or ``ssl=true``).
        ssl_ca_certs: a CA bundle (PEM file) to verify the server's certificate with, instead
            of the system's.
        ssl_certfile, ssl_keyfile: a client certificate and its key (PEM files), for a server
            that requires one (``tls-auth-clients yes``).
        ssl_cert_reqs: how the server's certificate is checked: ``required`` (the default),
            ``optional`` or ``none``.
        namespace: prefix of every key (``<namespace>:...``) and of the events channel.
        socket_timeout: longest wait for a reply before ``BoardUnavailable``.
        socket_connect_timeout: longest wait to connect.
        health_check_interval: idle seconds after which a pooled connection is pinged first.
        page_size: jobs read per round trip by ``iterjobs``.
        sentinels: ``(host, port)`` of Sentinel servers; when given, the board talks to the
            master Sentinel names for ``service`` and follows failovers.
        service: the Sentinel service (master) name.
        sentinel_username, sentinel_password: credentials for the Sentinel servers, separate
            from the master's (a Sentinel with ``requirepass`` or ACL users); without them the
            Sentinels are asked without credentials. TaskFlow's ``sentinel_kwargs`` (a dict
            of ``username``, ``password``, ``ssl``) is taken as a keyword for them.
        sentinel_ssl: talk TLS to the Sentinels too (with the same CA and client
            certificate); by default, whatever ``ssl`` says.
        require_persistence: refuse (``JobFailure`` at connect) a server whose ``CONFIG``
            says it persists nothing (``appendonly no`` and no ``save`` points); without it
            the board logs a warning. Skipped when ``CONFIG`` is not available.
    """

    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    ssl: bool = False
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_cert_reqs: str = "required"
    namespace: str = "legato"
    socket_timeout: float = 5.0
    socket_connect_timeout: float = 2.0
    health_check_interval: float = 10.0
    page_size: int = 200
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = dataclasses.field(default=None, repr=False)
    sentinel_ssl: bool | None = None
    require_persistence: bool = False

    def __post_init__(self) -> None:
        if self.ssl_cert_reqs not in ("required", "optional", "none"):
            raise ValueError(f"ssl_cert_reqs must be required, optional or none, "
                             f"not {self.ssl_cert_reqs!r}")
        if self.ssl_keyfile and not self.ssl_certfile:
            raise ValueError("ssl_keyfile needs ssl_certfile (the client certificate)")
        tls_files = (self.ssl_ca_certs, self.ssl_certfile, self.ssl_keyfile)
        if not self.ssl and any(tls_files) and not self.sentinel_ssl:
            raise ValueError("ssl_ca_certs, ssl_certfile and ssl_keyfile need TLS: use "
                             "rediss:// or ssl=true")

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> RedisSettings:
        """Parse ``redis://``, ``rediss://`` and ``redis+sentinel://`` URLs; keyword
        ``overrides`` win over the query string."""
        parts = urlsplit(url)
        if parts.scheme == "redis+sentinel":
            return cls._from_sentinel_url(url, overrides)
        if parts.scheme not in ("redis", "rediss"):
            raise errors.UnknownBackend(f"not a Redis URL: {redact(url)!r}")
        values: dict[str, Any] = {"ssl": parts.scheme == "rediss"}
        if parts.hostname:
            values["host"] = parts.hostname
        if parts.port:
            values["port"] = parts.port
        if parts.username:
            values["username"] = unquote(parts.username)
        if parts.password:
            values["password"] = unquote(parts.password)
        if parts.path.strip("/"):
            values["db"] = int(parts.path.strip("/"))
        values.update(dict(parse_qsl(parts.query)))
        values.update(overrides)
        return cls(**_coerce(values))

    @classmethod
    def _from_sentinel_url(cls, url: str, overrides: dict[str, Any]) -> RedisSettings:
        # urlsplit cannot read a comma-separated host list, so the netloc is parsed here.
        rest, _, query = url.partition("://")[2].partition("?")
        netloc, _, path = rest.partition("/")
        values: dict[str, Any] = {}
        if "@" in netloc:
            auth, netloc = netloc.rsplit("@", 1)
            user, _, password = auth.partition(":")
            values.update(username=unquote(user) or None, password=unquote(password) or None)
        sentinels = []
        for item in filter(None, netloc.split(",")):
            host, _, port = item.rpartition(":") if ":" in item else (item, "", "26379")
            sentinels.append((host, int(port)))
        service, _, db = path.strip("/").partition("/")
        if not sentinels or not service:
            raise ValueError(f"a Sentinel URL needs hosts and a service name: {redact(url)!r}")
        values.update(sentinels=tuple(sentinels), service=unquote(service))
        if db:
            values["db"] = int(db)
        values.update(dict(parse_qsl(query)))
        values.update(overrides)
        return cls(**_coerce(values))

    def client(self) -> redis.Redis:
        """A new client: direct, or the current master through Sentinel."""
        kwargs = self.redis_kwargs()
        if not self.sentinels:
            return redis.Redis(**kwargs)
        for name in ("host", "port"):
            kwargs.pop(name)
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(self.sentinels), sentinel_kwargs=self.sentinel_kwargs())
        master: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
            self.service, **kwargs)
        return master

    def tls_kwargs(self) -> dict[str, Any]:
        """redis-py's TLS arguments (none without TLS)."""
        return {"ssl": True, "ssl_ca_certs": self.ssl_ca_certs,
                "ssl_certfile": self.ssl_certfile, "ssl_keyfile": self.ssl_keyfile,
                "ssl_cert_reqs": self.ssl_cert_reqs}

    def sentinel_kwargs(self) -> dict[str, Any]:
        """Arguments of the connections to the Sentinels: their own credentials and TLS."""
        kwargs: dict[str, Any] = {
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.socket_connect_timeout,
            "username": self.sentinel_username, "password": self.sentinel_password}
        if self.ssl if self.sentinel_ssl is None else self.sentinel_ssl:
            kwargs.update(self.tls_kwargs())
        return kwargs

    def redis_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``redis.Redis``."""
        return {
            "host": self.host, "port": self.port, "db": self.db, "username": self.username,
            "password": self.password, "decode_responses": True,
            **(self.tls_kwargs() if self.ssl else {"ssl": False}),
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.socket_connect_timeout,
            "health_check_interval": self.health_check_interval,
            # TCP keepalive lets the idle pub/sub connection notice a silently dead peer.
            "socket_keepalive": True,
            # No silent re-sends: a script whose reply was lost may have run (a retried post
            # would post twice). Dead pooled connections are replaced when checked out.
            "retry": Retry(NoBackoff(), 0),
            # Text that is not UTF-8 (written behind the board's back) would fail a whole
            # reply, after a script already acted on it: read it with U+FFFD instead.
            "encoding_errors": "replace",
        }


#: TaskFlow's ``sentinel_kwargs`` keys the board takes, and the settings they become.
_SENTINEL_KWARGS = {"username": "sentinel_username", "password": "sentinel_password",
                    "ssl": "sentinel_ssl"}


def _coerce(values: dict[str, Any]) -> dict[str, Any]:
    """Turn query-string text into the settings' types; unknown names are an error.
    TaskFlow's ``sentinel_kwargs`` (a dict) gives the Sentinel credentials."""
    given = values.pop("sentinel_kwargs", None)
    if given is not None:
        unknown_keys = sorted(set(given) - set(_SENTINEL_KWARGS)) if isinstance(
            given, dict) else ["(not a dict)"]
        if unknown_keys:
            raise ValueError(f"sentinel_kwargs takes {', '.join(_SENTINEL_KWARGS)}; not "
                             f"{', '.join(map(str, unknown_keys))}")
        values.update({_SENTINEL_KWARGS[k]: v for k, v in given.items()})
    fields = {f.name: f for f in dataclasses.fields(RedisSettings)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ValueError(f"unknown Redis jobboard options: {', '.join(sorted(unknown))}")
    out: dict[str, Any] = {}
    for name, value in values.items():
        kind = fields[name].type
        if isinstance(value, str) and kind in ("int", "float"):
            value = int(value) if kind == "int" else float(value)
        elif isinstance(value, str) and kind in ("bool", "bool | None"):
            value = value.lower() in ("1", "true", "yes", "on")
        out[name] = value
    return out


def _load_script(name: str) -> str:
    folder = importlib.resources.files("legato.jobboard.redis") / "lua"
    return (folder / "common.lua").read_text() + "\n" + (folder / f"{name}.lua").read_text()


@contextlib.contextmanager
def _translated(what: str, job_uuid: str | None = None) -> Iterator[None]:
    """Turn redis-py errors into Legato's, chained to the driver error."""
    try:
        yield
    except redis.RedisError as exc:
        raise _legato_error(exc, what, job_uuid) from exc


def _legato_error(exc: redis.RedisError, what: str, job_uuid: str | None) -> errors.JobFailure:
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        return errors.BoardUnavailable(f"Redis unreachable during {what}: {exc}",
                                       job_uuid=job_uuid)
    return errors.JobFailure(f"Redis refused {what}: {exc}", job_uuid=job_uuid)


def _decode(uuid: str, raw: dict[str, str]) -> JobRecord:
    """A record from a job hash (every value JSON); ``GarbageRecord`` when malformed."""
    return decode_record(raw, json_fields=raw.keys(), uuid=uuid)


def _taken(reply: list[Any]) -> JobRecord:
    """The record of a claim reply ``['OK', uuid, <the job as one JSON object>]`` (``take``
    in ``common.lua``); ``GarbageRecord`` when malformed."""
    return decode_record(reply[2], uuid=str(reply[1]))


#: An owner as the scripts compare it (JSON); a conductor passes the same few names every time.
_owner_json: Callable[[str], str] = functools.lru_cache(maxsize=256)(json.dumps)


class RedisJobBoard(JobBoard):
    """A jobboard on Redis (``legato[redis]``). See the module docstring for the key layout.

    A server that persists nothing is reported at connect (a warning, or ``JobFailure`` with
    ``settings.require_persistence``); a server that lost the board's data since makes calls
    raise ``BoardDataLost`` (see the module docstring).

    Args:
        settings: where the server is and which namespace to use.
        **kwargs: ``JobBoard`` arguments (``name``, ``persistence``, ``ttl``, ``poll_interval``,
            ``clock``). With an injected ``clock`` the scripts use it instead of the server's
            time (for tests with a fake clock).
    """

    CAPABILITIES = Capabilities(notifications=True, sends_without_waiting=True)

    def __init__(self, settings: RedisSettings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self._server_time = kwargs.get("clock") is None
        ns = settings.namespace
        self._prefix = f"{ns}:"
        self._keys = [f"{ns}:{k}" for k in ("jobs", "ready", "delayed", "claimed", "bad", "seq",
                                           "trash", "entities", "entities:expiry", "epoch")]
        self._epoch_lock = threading.Lock()
        self._channel = f"{ns}:events"
        self._client: redis.Redis | None = None
        self._scripts: dict[str, Script] = {}
        self._events: _EventListener | None = None
        # The connection ``_send`` gives back, kept checked out for its next send (a pool
        # checkout and release per send cost more than the rest of the call), with the pid
        # that checked it out (a forked child never uses its parent's socket).
        self._spare: Any = None
        self._spare_pid = 0
        self._spare_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, *, persistence: Persistence | None = None,
                 **options: Any) -> RedisJobBoard:
        board_options = {k: options.pop(k) for k in _BOARD_OPTIONS if k in options}
        query = dict(parse_qsl(urlsplit(url).query))
        for name in ("ttl", "poll_interval"):
            if name in query and name not in board_options:
                board_options[name] = float(query[name])
        cleaned = _without_query(url, ("ttl", "poll_interval"))
        return cls(RedisSettings.from_url(cleaned, **options), persistence=persistence,
                   **board_options)

    # -- lifecycle -------------------------------------------------------------------------

    def _connect(self) -> None:
        try:
            client = self.settings.client()
        except redis.RedisError as exc:
            raise self._connect_error(exc) from exc
        try:
            try:
                client.ping()
            except redis.RedisError as exc:
                raise self._connect_error(exc) from exc
            with _translated("connect"):
                self._check_persistence(client)
                self._epoch = self._adopted_epoch(client)
                events = _EventListener(client, self._channel)
        except BaseException:
            client.close()
            raise
        self._client, self._events = client, events
        self._scripts = {name: client.register_script(_load_script(name)) for name in _SCRIPTS}
        events.start()

    def _check_persistence(self, client: redis.Redis) -> None:
        """Warn about (or, with ``require_persistence``, refuse) a server that persists
        nothing; say nothing when ``CONFIG`` is not available."""
        try:
            appendonly = client.config_get("appendonly").get("appendonly")
            save = client.config_get("save").get("save")
        except redis.ResponseError as exc:  # CONFIG renamed, disabled or not allowed
            logger.debug("board %r: cannot check the server's persistence: %s", self.name, exc)
            return
        if appendonly != "no" or save != "":
            return
        where = self._where()
        if self.settings.require_persistence:
            raise errors.JobFailure(
                f"{where} persists nothing (appendonly no, save \"\"): a restart would lose "
                "every job; refused because require_persistence is set")
        logger.warning("board %r: %s persists nothing (appendonly no, save \"\"): a restart "
                       "loses every job on the board (calls then raise BoardDataLost); turn on "
                       "AOF or RDB snapshots, or set require_persistence=true to refuse such a "
                       "server", self.name, where)

    def _connect_error(self, exc: redis.RedisError) -> errors.JobFailure:
        """One line saying why the board cannot reach its server (never a password)."""
        settings = self.settings
        if isinstance(exc, MasterNotFoundError):
            hosts = ", ".join(self._sentinel_problem(host, port)
                              for host, port in settings.sentinels)
            return errors.BoardUnavailable(
                f"cannot find the Redis master {settings.service!r} through Sentinel ({hosts})")
        reason = " ".join(str(exc).split())
        if isinstance(exc, redis.AuthenticationError):
            return errors.BoardUnavailable(
                f"{self._where()} refused the board's credentials: {reason}")
        hint = ""
        if settings.ssl and "CERTIFICATE_VERIFY_FAILED" in reason:
            hint = " (is ssl_ca_certs the CA that signed the server's certificate?)"
        elif settings.ssl and not settings.ssl_certfile:
            hint = (" (a server that requires client certificates needs ssl_certfile and "
                    "ssl_keyfile)")
        elif settings.ssl:
            hint = " (does the server trust the CA that signed ssl_certfile?)"
        if not isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
            return errors.JobFailure(f"{self._where()} refused the connection: {reason}")
        return errors.BoardUnavailable(f"cannot connect to {self._where()}: {reason}{hint}")

    def _sentinel_problem(self, host: str, port: int) -> str:
        """What one Sentinel says when asked for the master: ``host:port: <reason>``."""
        probe = redis.Redis(host=host, port=port, decode_responses=True,
                            **self.settings.sentinel_kwargs())
        try:
            masters = probe.sentinel_masters()
        except redis.RedisError as exc:
            reason = " ".join(str(exc).split())
            if isinstance(exc, redis.AuthenticationError) or "auth" in reason.lower():
                given = self.settings.sentinel_password is not None
                reason = (f"refused the Sentinel credentials: {reason}" if given else
                          f"{reason} (give sentinel_username and sentinel_password)")
            return f"{host}:{port}: {reason}"
        finally:
            probe.close()
        if self.settings.service not in masters:
            return f"{host}:{port} does not know it"
        return f"{host}:{port} reports it down"

    def _where(self) -> str:
        """The server and namespace, for messages (never the password)."""
        settings = self.settings
        server = (f"Redis master {settings.service!r}" if settings.sentinels
                  else f"Redis at {settings.host}:{settings.port}/{settings.db}")
        return f"{server} (namespace {settings.namespace!r})"

    def _adopted_epoch(self, client: redis.Redis) -> str:
        """The server's epoch, written first (a new random id) when it has none."""
        pipe = client.pipeline(transaction=True)
        pipe.set(self._keys[9], uuid4().hex, nx=True)
        pipe.get(self._keys[9])
        epoch = pipe.execute()[1]
        return str(epoch)

    def _lost(self, known: str | None, found: str | None,
              job_uuid: str | None) -> errors.BoardDataLost:
        """The error for a call that found the server's epoch ``found`` (None or '' when
        gone) instead of ``known``; the board takes the server's epoch from now on."""
        with self._epoch_lock:
            if found != self._epoch:
                try:
                    self._epoch = self._adopted_epoch(self._redis)
                except redis.RedisError as exc:  # the next call meets the loss again
                    logger.debug("board %r: cannot read the new epoch: %s", self.name, exc)
        what = f"replaced by {found}" if found else "gone"
        message = (f"{self._where()} lost its data: the board's epoch {known} is {what}. The "
                   "server restarted without persistence, or the board's keys were deleted: "
                   "every job posted before is gone and never completed")
        logger.error("board %r: %s", self.name, message)
        return errors.BoardDataLost(message, job_uuid=job_uuid)

    def _close(self) -> None:
        if self._events is not None:
            self._events.stop()
            self._events = None
        self._scripts = {}
        with self._spare_lock:
            spare, self._spare = self._spare, None
        if self._client is not None:
            if spare is not None:
                self._client.connection_pool.release(spare)
            self._client.close()
            self._client = None

    @property
    def _redis(self) -> redis.Redis:
        assert self._client is not None, "connected boards have a client"
        return self._client

    def _run(self, script: str, args: list[Any], job_uuid: str | None = None) -> list[Any]:
        """Run one Lua script; its reply is a list whose first item is a status."""
        now = "" if self._server_time else repr(self.clock())
        epoch = self._epoch
        argv: list[Any] = [self._prefix, now, self._channel, *args, epoch]
        try:
            reply: list[Any] = self._scripts[script](self._keys, argv, self._redis)
        except redis.RedisError as exc:
            raise _legato_error(exc, script, job_uuid) from exc
        if reply and reply[0] == "LOST":
            raise self._lost(epoch, reply[1], job_uuid)
        return reply

    def _send(self, script: str, args: list[Any], job_uuid: str | None,
              answer: Callable[[list[Any]], T]) -> Pending[T]:
        """Send one Lua script and read its reply later: the ``Pending`` gives
        ``answer(reply)`` (or ``_run``'s error), read by whichever thread asks first.

        The script goes out on a connection checked out of the client's pool, which stays
        checked out until the reply is read (so nothing else is sent on it in between). After
        ``NOSCRIPT`` (the script did not run: the server lost its scripts) it runs through
        ``_run``, whose ``Script`` loads it again.
        """
        now = "" if self._server_time else repr(self.clock())
        epoch = self._epoch
        pool = self._redis.connection_pool
        try:
            conn: Any = self._checkout(pool)
        except redis.RedisError as exc:
            return Pending.failed(_chained(_legato_error(exc, script, job_uuid), exc))
        try:
            conn.send_command("EVALSHA", self._scripts[script].sha, len(self._keys),
                              *self._keys, self._prefix, now, self._channel, *args, epoch)
        except BaseException as exc:
            self._give_back(pool, conn, broken=True)
            if isinstance(exc, redis.RedisError):
                return Pending.failed(_chained(_legato_error(exc, script, job_uuid), exc))
            raise

        def finish() -> T:
            try:
                reply: list[Any] = conn.read_response()
            except redis.exceptions.NoScriptError:
                self._give_back(pool, conn, broken=False)
                return answer(self._run(script, args, job_uuid))
            except BaseException as exc:
                # A whole error reply leaves the connection in step; anything else may not.
                self._give_back(pool, conn, broken=not isinstance(exc, redis.ResponseError))
                if isinstance(exc, redis.RedisError):
                    raise _legato_error(exc, script, job_uuid) from exc
                raise
            self._give_back(pool, conn, broken=False)
            if reply and reply[0] == "LOST":
                raise self._lost(epoch, reply[1], job_uuid)
            return answer(reply)

        return Pending(finish)

    def _checkout(self, pool: Any) -> Any:
        """A connection for ``_send``: the spare one if this process holds it, else one of
        the pool's."""
        with self._spare_lock:
            conn, self._spare = self._spare, None
        if conn is None or self._spare_pid != os.getpid():
            return pool.get_connection()
        try:  # as the pool checks: anything to read on an idle connection (EOF: the server
            stale = conn.can_read()  # closed it) means it is out of step: reconnect it
        except (redis.ConnectionError, OSError):
            stale = True
        if stale:
            conn.disconnect()  # its next send connects again
        return conn

    def _give_back(self, pool: Any, conn: Any, *, broken: bool) -> None:
        """Take back a connection ``_send`` checked out, as the spare when there is none (the
        board still open), else into the pool. A ``broken`` one (out of step with the server
        after a failure) is disconnected first: it reconnects on its next send."""
        if broken:
            conn.disconnect()
        with self._spare_lock:
            if (self._spare is None and self._client is not None
                    and pool is self._client.connection_pool):
                self._spare, self._spare_pid = conn, os.getpid()
                return
        pool.release(conn)

    # -- posting and reading ---------------------------------------------------------------

    def _post(self, record: JobRecord) -> None:
        fields = record.to_dict()
        delay = 0.0
        if record.available_at is not None:
            delay = max(record.available_at - record.created_on, 0.0)
        for name in ("uuid", "sequence", "available_at"):
            fields.pop(name)
        flat = [part for name, value in fields.items() for part in (name, json.dumps(value))]
        reply = self._run("post", [record.uuid, record.priority, repr(delay), *flat],
                          record.uuid)
        if reply[0] != "OK":
            raise errors.JobFailure(f"job {record.uuid} already exists", job_uuid=record.uuid)
        record.sequence = int(reply[1])
        record.available_at = json.loads(reply[2])

    def _get(self, job_uuid: str) -> JobRecord:
        epoch = self._epoch
        with _translated("get", job_uuid):
            pipe = self._redis.pipeline(transaction=False)
            pipe.hgetall(self._prefix + "job:" + job_uuid)
            pipe.get(self._keys[9])
            raw, found = pipe.execute()
        if found != epoch:
            raise self._lost(epoch, found, job_uuid)
        if not raw:
            raise errors.NotFound(f"no job {job_uuid} on board {self.name!r}")
        return self._decoded(job_uuid, raw)

    def _decoded(self, job_uuid: str, raw: dict[str, str]) -> JobRecord:
        """Decode a record the caller asked for by uuid: garbage is a ``GarbageRecord``."""
        return _decode(job_uuid, raw)

    def _iter_records(self, only_unclaimed: bool, ensure_fresh: bool,
                      after: Position | None = None) -> Iterator[JobRecord]:
        start = f"({_score(after)}" if after is not None else "-inf"
        if only_unclaimed:
            # Due delayed jobs and expired claims join "ready" first, so listing the ready
            # set alone is enough (and costs only what it returns).
            self._run("promote", [_HOUSEKEEPING_LIMIT])
            return self._iter_index(self._keys[1], set_aside=True, start=start)
        epoch = self._epoch
        with _translated("iterate"):
            found = self._redis.get(self._keys[9])
        if found != epoch:
            raise self._lost(epoch, found, None)  # type: ignore[arg-type]
        return self._iter_index(self._keys[0], start=start)

    def _waiting_heads(self) -> list[JobRecord]:
        # "ready" after a promote, as claim_next sees it: the first entry of each priority's
        # stretch of scores (one ZRANGEBYSCORE ... LIMIT 0 1 each, in one round trip).
        self._run("promote", [_HOUSEKEEPING_LIMIT])
        with _translated("oldest_waiting"):
            pipe = self._redis.pipeline(transaction=False)
            for priority in JobPriority:
                low = _score((priority, 0))
                pipe.zrangebyscore(self._keys[1], f"({low}", f"({low + ONE_PRIORITY}",
                                   start=0, num=1)
            uuids = [str(uuid) for first in pipe.execute() for uuid in first]
        return list(self._read_page(uuids, "job:", set_aside=True))

    def _iter_claimed(self) -> Iterator[JobRecord]:
        # "claimed" holds the claimed jobs alone (scored by lease expiry; lapsed ones stay
        # until promoted back to "ready", and the base drops them).
        with _translated("iter_claimed"):
            uuids = [str(uuid) for uuid in self._redis.zrange(self._keys[3], 0, -1)]
        size = self.settings.page_size
        for first in range(0, len(uuids), size):
            yield from self._read_page(uuids[first:first + size], "job:")

    def _iter_index(self, index: str, *, set_aside: bool = False,
                    start: str = "-inf") -> Iterator[JobRecord]:
        """Records of a job index in score order, one page per round trip; with
        ``set_aside``, garbage met (claimable jobs only: "ready") is set aside as well as
        skipped, so that a waiter does not meet it again on every poll.

        Pages continue after the last score seen (scores are unique per job), so jobs leaving
        the board meanwhile never make a page skip one; the first starts at ``start``.
        """
        bound = start
        while True:
            with _translated("iterate"):
                page: list[Any] = self._redis.zrangebyscore(
                    index, bound, "+inf", start=0, num=self.settings.page_size,
                    withscores=True)
            if not page:
                return
            yield from self._read_page([str(member[0]) for member in page], "job:",
                                       set_aside=set_aside)
            bound = f"({float(page[-1][1])!r}"

    def _read_page(self, uuids: list[str], kind: str, *,
                   set_aside: bool = False) -> Iterator[JobRecord]:
        with _translated("iterate"):
            pipe = self._redis.pipeline(transaction=False)
            for uuid in uuids:
                pipe.hgetall(self._prefix + kind + uuid)
            raws = pipe.execute(raise_on_error=False)
        for uuid, raw in zip(uuids, raws, strict=True):
            record = self._page_record(uuid, raw, set_aside=set_aside)
            if record is not None:
                yield record

    def _page_record(self, uuid: str, raw: Any, *, set_aside: bool = False) -> JobRecord | None:
        if isinstance(raw, dict) and not raw:
            return None  # left the board since the page was read
        try:
            if isinstance(raw, Exception):
                raise errors.GarbageRecord(f"garbage record: {raw}")  # e.g. WRONGTYPE
            return _decode(uuid, raw)
        except errors.GarbageRecord as exc:
            logger.warning("board %r: skipping undecodable job %s: %s", self.name, uuid, exc)
            if set_aside:
                self._run("set_aside", [uuid], uuid)
            return None

    def _job_count(self) -> int:
        with _translated("job_count"):
            return int(self._redis.zcard(self._keys[0]))

    def _job_counts(self) -> base.JobCounts:
        # ZCARD/ZCOUNT on the indexes, in one round trip. ``claimed`` and ``delayed`` are
        # scored by lease expiry and ``available_at``: entries due by now (not moved back to
        # ``ready`` yet) count as waiting. The cut-off is this machine's clock.
        now = repr(self.clock())
        with _translated("job_counts"):
            pipe = self._redis.pipeline(transaction=False)
            pipe.zcard(self._keys[0])
            pipe.zcount(self._keys[2], f"({now}", "+inf")
            pipe.zcount(self._keys[3], f"({now}", "+inf")
            pipe.zcard(self._keys[6])
            total, delayed, claimed, trashed = (int(n) for n in pipe.execute())
        return base.JobCounts(max(0, total - delayed - claimed), delayed, claimed, trashed)

    # -- claims ----------------------------------------------------------------------------

    def _claim(self, job_uuid: str, who: str, ttl: float) -> JobRecord:
        reply = self._run("claim", [job_uuid, _owner_json(who), repr(ttl)], job_uuid)
        if reply[0] == "UNCLAIMABLE":
            owner = json.loads(reply[1])
            why = f"claimed by {owner!r}" if owner else "delayed"
            raise errors.UnclaimableJob(f"job {job_uuid} cannot be claimed now: {why}",
                                        job_uuid=job_uuid, owner=owner)
        return self._claimed_record(job_uuid, reply)

    def _claim_next(self, who: str, ttl: float) -> JobRecord | None:
        return self._next_claimed(None, who, ttl)

    def _next_claimed(self, reply: list[Any] | None, who: str, ttl: float) -> JobRecord | None:
        """The job a ``claim_next`` reply gives (running ``claim_next`` when ``reply`` is None),
        calling again after a run of bad entries or an undecodable job was set aside."""
        while True:
            if reply is None:
                reply = self._run("claim_next", [_owner_json(who), repr(ttl),
                                                 _HOUSEKEEPING_LIMIT])
            status = reply[0]
            if status == "EMPTY":
                return None
            if status == "OK":
                try:
                    return _taken(reply)
                except errors.GarbageRecord as exc:
                    uuid = str(reply[1])
                    logger.warning("board %r: setting aside undecodable job %s: %s",
                                   self.name, uuid, exc)
                    self._run("set_aside", [uuid], uuid)
            reply = None  # "AGAIN": a run of bad entries was set aside; carry on

    def _claimed_record(self, job_uuid: str, reply: list[Any]) -> JobRecord:
        if reply[0] != "OK":
            self._refused(job_uuid, "", reply)
        try:
            return _taken(reply)
        except errors.GarbageRecord:
            # The script found nothing wrong, so the claim was made: set the job aside now
            # rather than let it be claimed again, and again, once the claim lapses.
            self._run("set_aside", [job_uuid], job_uuid)
            raise

    def _refused(self, job_uuid: str, who: str, reply: list[Any],
                 fence: int | None = None) -> NoReturn:
        status = reply[0]
        if status == "NOTFOUND":
            raise errors.NotFound(f"no job {job_uuid} on board {self.name!r}")
        if status == "NOTOWNER":
            raise base.not_owner(job_uuid, who, _owner_of(reply[1]), fence=fence,
                                 actual_fence=_fence_of(reply))
        if status == "BAD":
            raise errors.JobFailure(f"job {job_uuid} cannot be decoded", job_uuid=job_uuid)
        raise errors.JobFailure(f"unexpected reply {status!r} for job {job_uuid}",
                                job_uuid=job_uuid)

    def _owned(self, script: str, job_uuid: str, who: str, fence: int | None,
               *extra: Any) -> list[Any]:
        args = [job_uuid, _owner_json(who), "" if fence is None else str(fence), *extra]
        reply = self._run(script, args, job_uuid)
        if reply[0] != "OK":
            self._refused(job_uuid, who, reply, fence)
        return reply

    def _renew(self, job_uuid: str, who: str, fence: int | None, ttl: float) -> str | None:
        reply = self._owned("renew", job_uuid, who, fence, repr(ttl))
        mark = json.loads(reply[2]) if len(reply) > 2 else None
        return mark if isinstance(mark, str) else None

    def _cancel(self, job_uuid: str, mark: str) -> bool:
        reply = self._run("cancel", [job_uuid, json.dumps(mark)], job_uuid)
        if reply[0] not in ("MARKED", "TRASHED"):
            self._refused(job_uuid, "", reply)
        return bool(reply[0] == "TRASHED")

    def _consume(self, job_uuid: str, who: str, fence: int | None) -> None:
        self._owned("consume", job_uuid, who, fence)

    def _consume_and_claim_next(self, job_uuid: str, who: str, fence: int | None,
                                ttl: float) -> JobRecord | None:
        """One script consumes, then claims (``consume_and_claim_next.lua``). Its errors are
        ``_consume``'s: when the reply is lost the consume may have happened, as with
        ``consume`` alone, and so may a claim, which then lapses after ``ttl``."""
        reply = self._run("consume_and_claim_next", _consume_args(job_uuid, who, fence, ttl),
                          job_uuid)
        return self._consumed_then_claimed(job_uuid, who, fence, ttl, reply)

    def _send_consume_and_claim_next(self, job_uuid: str, who: str, fence: int | None,
                                     ttl: float) -> Pending[JobRecord | None]:
        """The same script, sent at once and its reply read later (see ``_send``)."""
        return self._send("consume_and_claim_next", _consume_args(job_uuid, who, fence, ttl),
                          job_uuid,
                          functools.partial(self._consumed_then_claimed, job_uuid, who, fence,
                                            ttl))

    def _consumed_then_claimed(self, job_uuid: str, who: str, fence: int | None, ttl: float,
                               reply: list[Any]) -> JobRecord | None:
        """The answer to a ``consume_and_claim_next`` reply."""
        if reply[0] in ("NOTFOUND", "NOTOWNER", "BAD"):  # consume's refusals
            self._refused(job_uuid, who, reply, fence)
        try:
            return self._next_claimed(reply, who, ttl)
        except Exception as exc:  # consumed already: the caller's next claim_next retries
            logger.debug("board %r: claim after consuming %s failed: %s", self.name,
                         job_uuid, exc)
            return None

    def _abandon(self, job_uuid: str, who: str, fence: int | None, delay: float,
                 reason: str | None) -> None:
        self._owned("abandon", job_uuid, who, fence, repr(delay), json.dumps(reason))

    def _release(self, job_uuid: str, who: str, fence: int | None) -> None:
        self._owned("release", job_uuid, who, fence)

    def _trash(self, job_uuid: str, who: str, fence: int | None, reason: str | None) -> None:
        self._owned("trash", job_uuid, who, fence, json.dumps(reason))

    def _requeue(self, trashed_uuid: str, record: JobRecord) -> None:
        fields = record.to_dict()
        for name in ("uuid", "sequence", "available_at"):
            fields.pop(name)
        flat = [part for name, value in fields.items() for part in (name, json.dumps(value))]
        reply = self._run("requeue", [trashed_uuid, record.uuid, record.priority, *flat],
                          record.uuid)
        if reply[0] == "NOTFOUND":
            raise errors.NotFound(f"no job {trashed_uuid} in the trash of board {self.name!r}")
        record.sequence = int(reply[1])

    def _iter_trash(self) -> Iterator[JobRecord]:
        size = self.settings.page_size
        start = 0
        while True:
            with _translated("iter_trash"):
                uuids = self._redis.zrevrange(self._keys[6], start, start + size - 1)
            if not uuids:
                return
            yield from self._read_page([str(u) for u in uuids], "trashed:")
            start += size

    # -- waiting ---------------------------------------------------------------------------

    def wait_for_completion(self, job: Job, timeout: float | None = None) -> bool:
        """Block until ``job`` is consumed or trashed; False if ``timeout`` passed first.

        Listens on the job's own removal channel (see ``consume.lua``), so that removals wake
        only those who wait for them, never the conductors idling on the main channel.
        """
        self._require_connected()
        deadline = None if timeout is None else time.monotonic() + timeout
        pubsub: Any = None
        with contextlib.suppress(redis.RedisError):  # no subscription: poll instead
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
            pubsub.subscribe(f"{self._channel}:removed:{job.uuid}")
        try:
            # Checked after subscribing, so a removal in between is never missed.
            while self.state_of(job) is not JobState.COMPLETE:
                remaining = (self.poll_interval if deadline is None
                             else deadline - time.monotonic())
                if remaining <= 0:
                    return False
                pubsub = self._await_removal(pubsub, min(remaining, self.poll_interval))
            return True
        finally:
            if pubsub is not None:
                with contextlib.suppress(Exception):
                    pubsub.close()

    def _await_removal(self, pubsub: Any, timeout: float) -> Any:
        """Wait up to ``timeout`` for a message on ``pubsub``; after a failure (or with no
        subscription) sleep the timeout out instead, and return what to use next time."""
        if pubsub is not None:
            try:
                pubsub.get_message(timeout=timeout)
                return pubsub
            except redis.RedisError:
                with contextlib.suppress(Exception):
                    pubsub.close()
        time.sleep(timeout)  # polling fallback: the state is re-read every poll_interval
        return None

    def _wait_for_change(self, timeout: float) -> bool:
        events = self._events
        if events is None:
            return super()._wait_for_change(timeout)
        events.wait(timeout)
        return False

    # -- entities --------------------------------------------------------------------------

    def _register_entity(self, entity: Entity, ttl: float) -> None:
        data = json.dumps(dataclasses.asdict(entity))
        self._run("entity_register", [entity.name, data, repr(ttl)])

    def _unregister_entity(self, entity: Entity) -> None:
        with _translated("unregister_entity"):
            pipe = self._redis.pipeline(transaction=True)
            pipe.hdel(self._keys[7], entity.name)
            pipe.zrem(self._keys[8], entity.name)
            pipe.execute()

    def _iter_entities(self) -> Iterator[Entity]:
        for raw in self._run("entity_list", []):
            if raw is None:
                continue  # unregistered between the two reads of the script? never; be safe
            try:
                yield Entity(**json.loads(raw))
            except (ValueError, TypeError) as exc:
                logger.warning("board %r: skipping undecodable entity: %s", self.name, exc)


def _consume_args(job_uuid: str, who: str, fence: int | None, ttl: float) -> list[Any]:
    """``consume_and_claim_next.lua``'s arguments."""
    return [job_uuid, _owner_json(who), "" if fence is None else str(fence), repr(ttl),
            _HOUSEKEEPING_LIMIT]


def _fence_of(reply: list[Any]) -> int | None:
    """The job's current fence a refusal names, or None (an older script, or garbage)."""
    try:
        return int(reply[2])
    except (IndexError, TypeError, ValueError):
        return None


def _owner_of(text: str) -> str | None:
    """The owner a refusal names (JSON), or None when that is garbage too."""
    try:
        owner = json.loads(text)
    except ValueError:
        return None
    return owner if isinstance(owner, str) else None


def _without_query(url: str, names: tuple[str, ...]) -> str:
    parts = urlsplit(url)
    kept = [(k, v) for k, v in parse_qsl(parts.query) if k not in names]
    query = "&".join(f"{k}={v}" for k, v in kept)
    return parts._replace(query=query).geturl()


def _chained(error: errors.JobFailure, cause: BaseException) -> errors.JobFailure:
    error.__cause__ = cause
    return error


class _EventListener:
    """Listens on the board's pub/sub channel in a thread and wakes waiters.

    A lost connection is retried with back-off; on reconnecting, waiters are woken once, since
    events may have been missed meanwhile.
    """

    def __init__(self, client: redis.Redis, channel: str) -> None:
        self._client = client
        self._channel = channel
        # A private channel, so that stop() can wake the thread at once without waking others.
        self._private = f"{channel}:{uuid4().hex}"
        self._changed = threading.Event()
        self._stopping = threading.Event()
        self._pubsub: Any = self._subscribe()
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name=f"legato-redis-events-{channel}")

    def _subscribe(self) -> Any:
        pubsub = self._client.pubsub(  # type: ignore[no-untyped-call]
            ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(self._channel, self._private)
        except BaseException:
            pubsub.close()
            raise
        return pubsub

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(redis.RedisError):
            self._client.publish(self._private, "stop")
        self._thread.join(timeout=5)
        with contextlib.suppress(Exception):
            if self._pubsub is not None:
                self._pubsub.close()

    def wait(self, timeout: float) -> None:
        if self._changed.wait(timeout):
            self._changed.clear()

    def _loop(self) -> None:
        backoff = 0.05
        while not self._stopping.is_set():
            try:
                if self._pubsub is None:
                    self._pubsub = self._subscribe()
                    self._changed.set()  # events may have been missed while disconnected
                    backoff = 0.05
                message = self._pubsub.get_message(timeout=1.0)
                if message is not None and message["channel"] == self._channel:
                    self._changed.set()
            except Exception as exc:  # the thread must outlive any error; waiters then poll
                logger.debug("events channel %s lost: %s", self._channel, exc)
                with contextlib.suppress(Exception):
                    if self._pubsub is not None:
                        self._pubsub.close()
                self._pubsub = None
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 2.0)
