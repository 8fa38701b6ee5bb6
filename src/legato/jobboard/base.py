"""The jobboard contract.

A jobboard holds jobs that conductors claim, run and then consume, abandon or trash. The public
methods of ``JobBoard`` are concrete: they check arguments, wrap storage records in ``Job`` objects
and emit notifications. Each backend implements only the ``_``-prefixed atomic primitives.

Semantics every backend keeps (the conformance suite in ``legato.testing`` checks them):

* Order: ``iterjobs`` and ``claim_next`` give higher priority first and, within one priority,
  the oldest post first.
* ``claim`` is atomic: of any number of concurrent claimers exactly one wins; the others get
  ``UnclaimableJob`` (claimed, delayed or finished) or ``NotFound`` (gone).
* Claims are leases. Each claim has a TTL (the board's ``ttl`` unless the call gives one). A claim
  not renewed within its TTL ends by itself and the job is claimable again, without any code
  running on the old owner's side.
* Every claim of a job gets a fencing number larger than any before it. The ``Job`` object that
  ``claim`` returned carries it; ``renew``, ``consume``, ``abandon`` and ``trash`` made with an
  older number, or by anyone but the owner, raise ``NotOwner`` (a ``JobFailure``) naming the real
  owner and both fencing numbers (the caller's and the job's current one). A job that is gone
  raises ``NotFound``.
* ``attempts`` counts the claims a job has had (a claim handed back unstarted with ``release``
  does not count).
* Finding the next claimable job never reads every job on the board; nor do ``oldest_waiting``
  (one lookup per priority), ``iter_claimed`` (an index of claims) or a page of ``iterjobs``
  that starts ``after`` a position (a keyset on the claim order).
* An unreachable server raises ``BoardUnavailable`` (a ``JobFailure``) within the configured
  timeout; the same board object carries on once the server is back.
* ``post`` refuses details nested deeper than ``MAX_DETAILS_DEPTH`` levels or larger than
  ``MAX_DETAILS_BYTES`` as JSON (``JobTooLarge``, a ``ValueError``).
* Every backend decodes what it stored through ``decode_record``, the one place that checks a
  record's fields; any failure there (not JSON, nested too deep, a field of the wrong type,
  a missing field...) makes the record garbage (``GarbageRecord``). Garbage is set aside, never
  deleted and never fatal: iteration and ``wait`` skip it with a warning, ``claim_next`` never
  returns it and never tries it forever (see docs/design.md for what each backend does), and
  the other jobs keep flowing.
* A job that leaves the board was consumed or trashed: ``Job.state`` says COMPLETE. A board
  whose server can lose its data without an error (Redis persisting nothing, restarted) keeps
  an ``epoch``, an id of the data it holds: a call that finds the data replaced raises
  ``BoardDataLost`` (once per board object, which then works on with what the server holds),
  and ``Job.state``/``Job.wait()`` raise it for a job made under an older epoch that is gone,
  never calling it COMPLETE. Boards whose data cannot vanish silently have no epoch (None).
* ``cancel`` is atomic: a job with no live claim (waiting, delayed, or whose claim lapsed) goes
  to the trash at once with the cancel reason; a claimed job gets a cancel mark (the reason),
  kept on the job through abandon, release and later claims, which ``renew`` returns to the
  owner (so a conductor learns of it within one renewal) and a claim carries in
  ``Job.cancel_requested``. The owner then trashes the job with that reason.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import datetime as dt
import functools
import json
import logging
import operator
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, NoReturn, TypeVar

from legato import _tracing, errors
from legato.notifier import Notifier
from legato.persistence.models import copy_json, new_uuid
from legato.states import JobPriority, JobState

if TYPE_CHECKING:
    from legato.persistence.base import Persistence
    from legato.persistence.models import LogBook

__all__ = ["CLAIMS_LOST", "MAX_DETAILS_BYTES", "MAX_DETAILS_DEPTH", "POSTED", "REMOVAL",
           "Capabilities", "Entity", "Job", "JobBoard", "JobCounts", "JobRecord", "Pending",
           "Position", "cancel_reason", "check_details", "decode_record", "parse_position",
           "refuse_nul"]

logger = logging.getLogger(__name__)

#: Notifier event: a job was posted (details: ``job``).
POSTED = "POSTED"
#: Notifier event: a job left the board, consumed or trashed (details: ``job``).
REMOVAL = "REMOVAL"
#: Notifier event: every claim made through this board object has ended, whatever its TTL, and
#: the board knows it before any renewal is refused (details: ``reason``). Emitted by boards
#: whose claims end with a connection's session (ZooKeeper); conductors mark all their leases
#: lost on it. It may come from a client library's thread: listeners must return quickly.
CLAIMS_LOST = "CLAIMS_LOST"

#: Deepest nesting of a job's ``details`` that ``post`` accepts: the details object itself is
#: level 1, ``{"a": {"b": [1]}}`` has 3 levels. A stored record nested deeper is garbage.
MAX_DETAILS_DEPTH = 64
#: Largest a job's ``details`` may be as JSON (bytes), for ``post``. Keep bulky data in the
#: job's book: every claim carries the details.
MAX_DETAILS_BYTES = 1024 * 1024

Clock = Callable[[], float]

#: A place in claim order: a job's priority and post sequence (``Job.position`` as text).
Position = tuple[int, int]

T = TypeVar("T")
U = TypeVar("U")


class Pending(Generic[T]):
    """The answer to a board call that has been sent but not yet read.

    ``result()`` waits for the answer and returns it, or raises the call's error; later calls
    (from any thread) give the same. The first caller reads the answer, so a backend's reply
    is processed exactly once, by whichever thread asks first.
    """

    __slots__ = ("_error", "_finish", "_lock", "_settled", "_value")

    def __init__(self, finish: Callable[[], T]) -> None:
        self._finish: Callable[[], T] | None = finish
        self._lock = threading.Lock()
        self._settled = False
        self._value: T | None = None
        self._error: BaseException | None = None

    @classmethod
    def of(cls, call: Callable[[], T]) -> Pending[T]:
        """A pending call made at once (for backends that cannot send without waiting)."""
        pending: Pending[T] = cls(call)
        with contextlib.suppress(Exception):  # kept for result()
            pending.result()
        return pending

    @classmethod
    def failed(cls, error: BaseException) -> Pending[T]:
        """A pending call whose answer is ``error`` (raised by ``result()``)."""
        return cls.of(functools.partial(_raise, error))

    def then(self, after: Callable[[T], U]) -> Pending[U]:
        """A pending call whose answer is ``after`` applied to this one's."""
        return Pending(lambda: after(self.result()))

    def result(self) -> T:
        with self._lock:
            if not self._settled:
                finish, self._finish = self._finish, None
                try:
                    assert finish is not None
                    self._value = finish()
                except BaseException as exc:
                    self._error = exc
                self._settled = True
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


def _raise(error: BaseException) -> NoReturn:
    raise error


@dataclasses.dataclass(frozen=True)
class Entity:
    """Something that works on a board, such as a conductor.

    Attributes:
        kind: e.g. ``"conductor"``.
        name: unique name, e.g. ``"worker-1@host:1234"``.
        metadata: JSON-serialisable facts about it (host, pid, started_at...).
    """

    kind: str
    name: str
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class JobRecord:
    """A job as a backend stores it. Times are float seconds since the epoch.

    ``state`` is the stored state; a CLAIMED record whose ``lease_expires`` has passed counts as
    UNCLAIMED (``effective_state``).
    """

    uuid: str
    name: str
    details: dict[str, Any]
    book_uuid: str | None
    book_name: str | None
    priority: int
    created_on: float
    sequence: int = 0
    state: JobState = JobState.UNCLAIMED
    last_modified: float | None = None
    attempts: int = 0
    owner: str | None = None
    fence: int = 0
    lease_expires: float | None = None
    available_at: float | None = None
    reason: str | None = None
    #: Set by ``cancel`` on a claimed job: the reason its owner trashes it with.
    cancel: str | None = None

    def copy(self) -> JobRecord:
        """A copy sharing nothing mutable with this record (its ``details`` dict is copied;
        ``dataclasses.replace`` costs several times more, checking every field)."""
        new = object.__new__(JobRecord)
        new.__dict__.update(self.__dict__)
        new.details = dict(self.details)
        return new

    def effective_state(self, now: float) -> JobState:
        if self.state is JobState.CLAIMED and (
                self.lease_expires is None or self.lease_expires > now):
            return JobState.CLAIMED
        if self.state is JobState.COMPLETE:
            return JobState.COMPLETE
        return JobState.UNCLAIMED

    def effective_owner(self, now: float) -> str | None:
        return self.owner if self.effective_state(now) is JobState.CLAIMED else None

    def claimable(self, now: float) -> bool:
        return self.effective_state(now) is JobState.UNCLAIMED and (
            self.available_at is None or self.available_at <= now)

    def to_dict(self) -> dict[str, Any]:
        """Every field by name, sharing nothing with the record (``state`` as its text).

        Field by field (``dataclasses.asdict`` deep-copies through ``copy.deepcopy``, many
        times the cost, and a post makes one)."""
        data = dict(zip(_RECORD_NAMES, _RECORD_VALUES(self), strict=True))
        data["details"] = copy_json(self.details)
        data["state"] = str(self.state)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobRecord:
        """Build a record from ``to_dict`` output (unknown keys are ignored), checking every
        field as ``decode_record`` does; ``GarbageRecord`` (a ``ValueError``) when the data is
        malformed."""
        return decode_record(data)


@dataclasses.dataclass(frozen=True)
class JobCounts:
    """How many jobs a board holds, by state (``JobBoard.job_counts``).

    Attributes:
        waiting: claimable now (never claimed, abandoned, released, or their claim lapsed).
        delayed: unclaimed but not claimable before their delay ends.
        claimed: under a live claim.
        trashed: in the trash.
    """

    waiting: int
    delayed: int
    claimed: int
    trashed: int


_RECORD_NAMES = tuple(f.name for f in dataclasses.fields(JobRecord))
_RECORD_FIELDS = frozenset(_RECORD_NAMES)
_RECORD_VALUES = operator.attrgetter(*_RECORD_NAMES)
_TEXT: frozenset[type] = frozenset({str})
_OPTIONAL_TEXT: frozenset[type] = frozenset({str, type(None)})
_NUMBER: frozenset[type] = frozenset({int, float})
_OPTIONAL_NUMBER: frozenset[type] = frozenset({int, float, type(None)})
_INTEGER: frozenset[type] = frozenset({int})
#: The exact type each field of a decoded record may have (what ``json`` and the drivers give:
#: a ``bool`` is no integer here); ``details``, ``priority`` and ``state`` have checks of their
#: own.
_FIELD_TYPES: tuple[tuple[str, frozenset[type]], ...] = (
    ("uuid", _TEXT), ("name", _TEXT), ("book_uuid", _OPTIONAL_TEXT),
    ("book_name", _OPTIONAL_TEXT), ("created_on", _NUMBER), ("sequence", _INTEGER),
    ("last_modified", _OPTIONAL_NUMBER), ("attempts", _INTEGER), ("owner", _OPTIONAL_TEXT),
    ("fence", _INTEGER), ("lease_expires", _OPTIONAL_NUMBER),
    ("available_at", _OPTIONAL_NUMBER), ("reason", _OPTIONAL_TEXT), ("priority", _INTEGER),
    ("cancel", _OPTIONAL_TEXT),
)
#: Priority values, and states by their stored text (members are ``str`` too).
_PRIORITIES = frozenset(int(priority) for priority in JobPriority)
_STATES: dict[str, JobState] = {str(state): state for state in JobState}
_FIELD_KINDS = tuple(kinds for _name, kinds in _FIELD_TYPES)
_FIELD_VALUES = operator.itemgetter(*(name for name, _kinds in _FIELD_TYPES))


def decode_record(data: Mapping[str, Any] | str | bytes, *, json_fields: Collection[str] = (),
                  **known: Any) -> JobRecord:
    """The one decoder of stored job records, shared by every backend.

    Args:
        data: the record's fields (keys other than ``JobRecord``'s are ignored), or one JSON
            object holding them.
        json_fields: fields of ``data`` whose values are JSON text to decode first (a SQL
            ``details`` column, every value of a Redis hash).
        **known: fields the backend knows from elsewhere (a uuid in a key or node name); they
            win over ``data``.

    Raises:
        GarbageRecord: for ANY failure (JSON that does not parse or nests beyond what Python
            can decode, a missing field, a field of the wrong type, an unknown state or
            priority, details that are not an object or nest deeper than
            ``MAX_DETAILS_DEPTH``). It is a ``JobFailure`` and a ``ValueError``; its message
            says why, and the original error is chained.
    """
    try:
        return _decode(data, json_fields, known)
    except errors.GarbageRecord:
        raise
    except Exception as exc:  # anything at all: recursion, memory, encoding, a bad field
        uuid = known.get("uuid")
        why = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise errors.GarbageRecord(f"garbage record: {type(exc).__name__}: {why}",
                                   job_uuid=uuid if isinstance(uuid, str) else None) from exc


def _decode(data: Mapping[str, Any] | str | bytes, json_fields: Collection[str],
            known: dict[str, Any]) -> JobRecord:
    texts: list[str | bytes] = []  # the JSON text the details came from, for the depth check
    if isinstance(data, str | bytes | bytearray):
        texts.append(data)
        data = json.loads(data)
    if not isinstance(data, Mapping):
        raise TypeError(f"a job record must be a JSON object, not {type(data).__name__}")
    if type(data) is dict and _RECORD_FIELDS.issuperset(data):  # in C: no key to drop
        values = dict(data)
    else:
        values = {k: v for k, v in data.items() if k in _RECORD_FIELDS}
    for name in json_fields:
        if name in values:
            text = values[name]
            if name == "details":
                texts.append(text)
            values[name] = json.loads(text)
    values.update(known)
    record = JobRecord(**values)
    _check_fields(record, texts)
    return record


def _check_fields(record: JobRecord, texts: list[str | bytes]) -> None:
    fields = record.__dict__
    # Every field's type at once, in C (this runs on every claim); the loop names the culprit.
    if not all(map(frozenset.__contains__, _FIELD_KINDS, map(type, _FIELD_VALUES(fields)))):
        for name, kinds in _FIELD_TYPES:
            if type(fields[name]) not in kinds:
                raise TypeError(f"{name} must be {_kind_name(kinds)}, "
                                f"not {type(fields[name]).__name__}")
    if not isinstance(record.details, dict):
        raise TypeError("details must be a JSON object")
    if record.priority not in _PRIORITIES:  # checked above to be an int
        JobPriority(record.priority)  # raises, naming the value
    state = record.state
    member = _STATES.get(state) if type(state) is str else None  # a dict, not the enum's call
    record.state = member if member is not None else JobState(state)
    # Few brackets in the text the details came from: they cannot nest deeper than that.
    few = bool(texts) and _brackets(texts[-1]) <= MAX_DETAILS_DEPTH
    if not few and _depth_over(record.details, MAX_DETAILS_DEPTH):
        raise ValueError(f"details nest deeper than {MAX_DETAILS_DEPTH} levels")


def _kind_name(kinds: frozenset[type]) -> str:
    if float in kinds:
        return "a number or null" if type(None) in kinds else "a number"
    if str in kinds:
        return "a string or null" if type(None) in kinds else "a string"
    return "an integer"


def _brackets(text: str | bytes) -> int:
    if isinstance(text, str):
        return text.count("{") + text.count("[")
    return text.count(b"{") + text.count(b"[")


def _depth_over(value: Any, limit: int) -> bool:
    """Whether ``value`` (JSON-like) nests deeper than ``limit`` levels; iterative, so that it
    works however deep (or cyclic) the value is."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        for child in (item.values() if isinstance(item, dict) else item):
            if isinstance(child, dict | list | tuple):
                stack.append((child, depth + 1))
    return False


def check_details(details: Mapping[str, Any]) -> None:
    """Check that ``details`` may be posted: JSON-serialisable, nested at most
    ``MAX_DETAILS_DEPTH`` levels and at most ``MAX_DETAILS_BYTES`` as JSON.

    Raises:
        JobTooLarge: nested too deep or too large (a ``ValueError``), naming the limit.
        SerializationError: not JSON-serialisable (a ``TypeError``).
    """
    if _depth_over(details, MAX_DETAILS_DEPTH):
        raise errors.JobTooLarge(
            f"job details nest deeper than {MAX_DETAILS_DEPTH} levels, the most a board "
            "accepts", limit=f"{MAX_DETAILS_DEPTH} levels")
    try:
        size = len(json.dumps(details).encode())
    except (TypeError, ValueError) as exc:
        raise errors.SerializationError(f"job details are not JSON: {exc}") from None
    if size > MAX_DETAILS_BYTES:
        raise errors.JobTooLarge(
            f"job details are {size} bytes as JSON, more than the {MAX_DETAILS_BYTES} a board "
            "accepts (keep large data in the job's book)", limit=f"{MAX_DETAILS_BYTES} bytes")


def _utc(ts: float | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(ts, dt.UTC) if ts is not None else None


class Job:
    """A job on a board, as seen by one caller.

    The ``Job`` that ``claim`` returns carries the claim's fencing number in ``fence``; pass that
    object to ``renew``/``consume``/``abandon``/``trash``.
    """

    def __init__(self, board: JobBoard, record: JobRecord, *, fence: int | None = None) -> None:
        self.board = board
        self._record = record
        self.fence = fence
        #: The board's data ``epoch`` when this object was made (see ``JobBoard.epoch``).
        self.epoch = board._epoch
        self._book: LogBook | None = None

    def __repr__(self) -> str:
        return f"<Job {self.name!r} {self.uuid} priority={self.priority.name}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Job) and other.uuid == self.uuid

    def __hash__(self) -> int:
        return hash(self.uuid)

    # Read through ``operator.attrgetter``: no Python frame per read (a job's run reads these
    # a dozen times).
    uuid = property(operator.attrgetter("_record.uuid"))
    name = property(operator.attrgetter("_record.name"))
    details = property(operator.attrgetter("_record.details"))
    book_uuid = property(operator.attrgetter("_record.book_uuid"))
    book_name = property(operator.attrgetter("_record.book_name"))
    attempts = property(operator.attrgetter("_record.attempts"),
                        doc="Claims so far (when read).")
    reason = property(operator.attrgetter("_record.reason"),
                      doc="Last abandon or trash reason.")
    cancel_requested = property(
        operator.attrgetter("_record.cancel"),
        doc="The reason ``cancel`` gave while the job was claimed (when read), or None.")
    record = property(operator.attrgetter("_record"))

    @property
    def position(self) -> str:
        """Where the job stands in claim order, ``"PRIORITY:SEQUENCE"``: give it to
        ``iterjobs(after=...)`` to list the jobs after this one."""
        return f"{self._record.priority}:{self._record.sequence}"

    @property
    def priority(self) -> JobPriority:
        return JobPriority(self._record.priority)

    @property
    def created_on(self) -> dt.datetime:
        created = _utc(self._record.created_on)
        assert created is not None
        return created

    @property
    def last_modified(self) -> dt.datetime | None:
        return _utc(self._record.last_modified)

    @property
    def state(self) -> JobState:
        """The job's state now (read from the board): COMPLETE once consumed or trashed.

        Raises:
            BoardDataLost: the job was lost with the board's data (it never completed).
        """
        return self.board.state_of(self)

    @property
    def loaded_book(self) -> LogBook | None:
        """The job's logbook if it is in memory already (posted from here, read with the
        claim from a persistence sharing the board's database, or read through ``book``);
        None otherwise. Never reads."""
        return self._book

    @property
    def book(self) -> LogBook | None:
        """The job's logbook, loaded from the board's persistence on first access."""
        if self._book is None and self.book_uuid is not None:
            if self.board.persistence is None:
                raise errors.JobFailure("the board has no persistence to load the book from",
                                        job_uuid=self.uuid)
            self._book = self.board.persistence.get_logbook(self.book_uuid)
        return self._book

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job is consumed or trashed; return False if ``timeout`` passed first.

        Raises:
            BoardDataLost: the job was lost with the board's data (it never completed).
        """
        return self.board.wait_for_completion(self, timeout)


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """What a kind of board does beyond the contract; each board class declares one as
    ``CAPABILITIES``, and conductors read it there.

    Attributes:
        notifications: ``wait`` wakes at once on a post from any process (for the memory board:
            from this process), instead of checking every ``poll_interval``.
        sends_without_waiting: ``consume_and_claim_next_async`` returns before the board has
            answered (the board implements ``_send_consume_and_claim_next``); on other boards
            it makes the call there and then, so conductors do not claim ahead on them.
        pipelined_sends: calls sent without waiting queue up on one connection whose answers a
            background thread of the client reads (kazoo): a second call may be sent before the
            first answer is read at no extra cost, and one wake-up of that thread carries both.
            Conductors then send a job's consume before reading the previous one's answer.
            Implies ``sends_without_waiting``.
        gathered_sends: up to this many ``consume_and_claim_next_async`` calls are gathered
            into one request to the server (ZooKeeper: one ``multi``), which is written when
            that many have gathered or when any of their answers is asked for; each call keeps
            its own answer, and one that fails alone is made alone. Fewer messages per job, at
            the price of a consume waiting for the next one. Conductors keep that many more
            calls in flight. More than 1 implies ``pipelined_sends``.
    """

    notifications: bool = False
    sends_without_waiting: bool = False
    pipelined_sends: bool = False
    gathered_sends: int = 1

    def __post_init__(self) -> None:
        if self.pipelined_sends and not self.sends_without_waiting:
            raise ValueError("pipelined_sends needs sends_without_waiting")
        if isinstance(self.gathered_sends, bool) or not isinstance(self.gathered_sends, int) \
                or self.gathered_sends < 1:
            raise ValueError(f"gathered_sends must be an int >= 1, not {self.gathered_sends!r}")
        if self.gathered_sends > 1 and not self.pipelined_sends:
            raise ValueError("gathered_sends above 1 needs pipelined_sends")


class JobBoard(abc.ABC):
    """Where producers post jobs and conductors claim them. Use ``legato.jobboard.connect(url)``.

    Args:
        name: a name for this board object (used in logs).
        persistence: where jobs' logbooks live, for ``Job.book``.
        ttl: default claim lease in seconds.
        poll_interval: longest sleep between checks when waiting without notifications.
        clock: returns the current time in seconds since the epoch (tests inject a fake one).
    """

    #: What this kind of board does beyond the contract (every board class declares its own).
    CAPABILITIES: ClassVar[Capabilities] = Capabilities()

    def __init__(self, *, name: str = "legato", persistence: Persistence | None = None,
                 ttl: float = 30.0, poll_interval: float = 0.5,
                 clock: Clock | None = None) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be > 0")
        if poll_interval <= 0:
            raise ValueError("poll_interval must be > 0")
        self.name = name
        self.persistence = persistence
        self.ttl = ttl
        self.poll_interval = poll_interval
        self.clock: Clock = clock or time.time
        self.notifier = Notifier()
        self._epoch: str | None = None
        self._connected = False
        self._connect_lock = threading.Lock()

    @classmethod
    @abc.abstractmethod
    def from_url(cls, url: str, *, persistence: Persistence | None = None,
                 **options: Any) -> JobBoard:
        """Build an unconnected board from its URL and keyword options."""

    @property
    def lease_cap(self) -> float | None:
        """The longest, in seconds, a claim made through this board can be trusted to last
        after its last renewal (or claim) was sent, whatever its TTL; None when only the TTL
        bounds it. A ZooKeeper claim ends with its session, so there it is the session
        timeout. Conductors cap their lease deadlines with it (``legato.conductor``)."""
        return None

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def epoch(self) -> str | None:
        """An id of the data this board object works on, on backends whose server can lose
        its data without an error (Redis: a random id written at first connect, checked by
        every script); None on the others.

        A call that finds the server's epoch gone or changed raises ``BoardDataLost`` and this
        object takes the server's new epoch: jobs made under the old one that are gone are
        then reported lost by ``state_of``, never COMPLETE.
        """
        return self._epoch

    def connect(self) -> None:
        """Connect to the backend (no-op when already connected)."""
        with self._connect_lock:
            if not self._connected:
                self._connect()
                self._connected = True

    def close(self) -> None:
        """Disconnect. Claims made through this board stay until they expire or are released."""
        with self._connect_lock:
            if self._connected:
                self._connected = False
                self._close()

    def __enter__(self) -> JobBoard:
        self.connect()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _require_connected(self) -> None:
        if not self._connected:
            raise errors.JobFailure(f"board {self.name!r} is not connected; call connect()")

    # -- posting and reading ---------------------------------------------------------------

    def post(self, name: str, book: LogBook | None = None, details: dict[str, Any] | None = None,
             priority: JobPriority | str | int = JobPriority.NORMAL, *,
             delay: float | None = None, save_book_in: Persistence | None = None) -> Job:
        """Post a new job; with ``delay`` it cannot be claimed for that many seconds.

        With ``save_book_in``, ``book`` is saved there with the job, its meta naming the job
        (``meta["job_uuid"]``, ``meta["job_name"]``, set on the caller's book) from its first
        write. When that persistence shares this board's database (``shares_database``) the
        book and the job are written in one transaction (on PostgreSQL one statement);
        otherwise the book is saved first and destroyed again if the post fails. Either way
        there is never a job without its book, and a post that fails leaves no book.

        With OpenTelemetry installed (``legato[otel]``) and a span current, the job's details
        also carry its trace context (``details["trace"]``, W3C ``traceparent``), so the
        conductor that runs the job continues the trace.

        Raises:
            ValueError: an empty name, a negative delay, an unknown priority, or a NUL character
                (U+0000) in the name, the book's name or any string of ``details`` (keys too):
                not every backend can store one (PostgreSQL cannot), so no board accepts it.
            TypeError: ``details`` is not a dict.
            JobTooLarge: ``details`` nest deeper than ``MAX_DETAILS_DEPTH`` (64) levels or are
                more than ``MAX_DETAILS_BYTES`` (1 MiB) as JSON; a ``ValueError``.
            SerializationError: ``details`` are not JSON-serialisable; a ``TypeError``.
                Also the book's (with ``save_book_in``).
        """
        self._require_connected()
        if not name:
            raise ValueError("a job needs a non-empty name")
        if save_book_in is not None and book is None:
            raise ValueError("save_book_in needs a book to save")
        if details is not None and not isinstance(details, dict):
            raise TypeError("details must be a dict")
        if details:
            check_details(details)
        if delay is not None and delay < 0:
            raise ValueError("delay must be >= 0")
        refuse_nul(name, book.name if book is not None else None, details)
        if _tracing.loaded():  # carry the producer's trace to the conductor
            details = _tracing.inject(details)

        now = self.clock()
        record = JobRecord(
            uuid=new_uuid(), name=name, details=dict(details or {}),
            book_uuid=book.uuid if book is not None else None,
            book_name=book.name if book is not None else None,
            priority=int(JobPriority.parse(priority)), created_on=now, last_modified=now,
            available_at=now + delay if delay else None,
        )
        if save_book_in is None:
            self._post(record)
        else:
            assert book is not None
            book.meta.update(job_uuid=record.uuid, job_name=name)
            self._post_with_book(record, book, save_book_in)
        job = Job(self, record)
        if book is not None:
            job._book = book
        self.notifier.notify(POSTED, {"job": job})
        return job

    def iterjobs(self, only_unclaimed: bool = False, ensure_fresh: bool = False, *,
                 after: str | None = None) -> Iterator[Job]:
        """Jobs on the board in claim order (priority, then oldest). Lazy: stop when you like.

        With ``only_unclaimed``, only jobs that can be claimed now. With ``after`` (a
        ``Job.position``), only the jobs after that place in claim order, found through the
        board's index without reading the ones before it (the job there need not still be on
        the board): a page of a listing costs its own rows, however deep it is.

        Raises:
            ValueError: ``after`` is not a position.
        """
        self._require_connected()
        start = parse_position(after) if after is not None else None
        for record in self._iter_records(only_unclaimed, ensure_fresh, start):
            if only_unclaimed and not record.claimable(self.clock()):
                continue
            yield Job(self, record)

    def get(self, job_uuid: str) -> Job:
        """The job with that uuid.

        Raises:
            NotFound: no such job on the board (never posted, consumed or trashed).
        """
        self._require_connected()
        return Job(self, self._get(job_uuid))

    def state_of(self, job: Job) -> JobState:
        """The job's state now: COMPLETE once it was consumed or trashed.

        Raises:
            BoardDataLost: the job is gone because the board lost its data (the job was made
                under an older ``epoch``), or the board finds its data lost now.
        """
        self._require_connected()
        try:
            record = self._get(job.uuid)
        except errors.NotFound:
            if self._lost_since(job):
                raise self._lost_job(job) from None
            return JobState.COMPLETE
        return record.effective_state(self.clock())

    @property
    def job_count(self) -> int:
        """How many jobs are on the board (claimed or not; trashed ones excluded)."""
        self._require_connected()
        return self._job_count()

    def job_counts(self) -> JobCounts:
        """How many jobs are waiting, delayed, claimed and trashed, from counts the backend
        keeps (never by reading every job): cheap enough for a metrics scrape every few
        seconds. A snapshot: the numbers may come from slightly different instants."""
        self._require_connected()
        return self._job_counts()

    def counts(self) -> dict[str, int]:
        """``job_counts()`` as a dict: ``waiting``, ``delayed``, ``claimed``, ``trashed``."""
        return dataclasses.asdict(self.job_counts())

    def oldest_waiting(self) -> Job | None:
        """The waiting job posted first, whatever its priority; None when none waits.

        Waiting as in ``job_counts``: claimable now (never claimed, abandoned, released, or its
        claim lapsed); delayed and claimed jobs are not waiting. Within one priority claim
        order is post order, so this is the oldest of the first waiting job of each priority:
        boards find those with one index lookup per priority, without reading the whole
        board. A snapshot, for monitoring: a board whose claimable set is refreshed lazily
        (Redis) may not see a lapsed claim or an ended delay that no call has noticed yet.
        """
        self._require_connected()
        now = self.clock()
        heads = [record for record in self._waiting_heads() if record.claimable(now)]
        if not heads:
            return None
        return Job(self, min(heads, key=lambda record: (record.created_on, record.sequence)))

    def iter_claimed(self) -> Iterator[Job]:
        """The jobs under a live claim, in no particular order; ``find_owner``'s answer is in
        each one's ``record.effective_owner``. Read from the board's index of claims, never by
        reading the jobs that wait: cheap enough to show what every conductor holds."""
        self._require_connected()
        now = self.clock()
        for record in self._iter_claimed():
            if record.effective_state(now) is JobState.CLAIMED:
                yield Job(self, record)

    def find_owner(self, job: Job) -> str | None:
        """The owner of the job's live claim, or None.

        Raises:
            NotFound: the job is gone.
        """
        self._require_connected()
        return self._get(job.uuid).effective_owner(self.clock())

    # -- claims ----------------------------------------------------------------------------

    def claim(self, job: Job, who: str, *, ttl: float | None = None) -> Job:
        """Claim ``job`` for ``who``; return a ``Job`` carrying the new fencing number.

        Raises:
            UnclaimableJob: someone else holds it, or it is delayed.
            NotFound: it is gone.
        """
        self._require_connected()
        _check_owner(who)
        record = self._on_job(job, self._claim, who, self._ttl(ttl))
        return self._claimed(job, record)

    def claim_next(self, who: str, *, ttl: float | None = None) -> Job | None:
        """Claim the first claimable job in order, or return None when there is none.

        A board whose ``persistence`` keeps its data in the board's ``database`` reads the
        job's logbook in the claim's transaction (``Job.loaded_book``), so whoever runs the
        job need not read it again."""
        self._require_connected()
        _check_owner(who)
        claimed = self._claim_next_with_book(who, self._ttl(ttl))
        if claimed is None:
            return None
        record, book = claimed
        job = Job(self, record, fence=record.fence)
        job._book = book
        return job

    def renew(self, job: Job, who: str, ttl: float | None = None) -> str | None:
        """Extend the claim's lease to ``ttl`` seconds from now.

        Returns:
            The job's cancel mark (see ``cancel``): the reason the owner should trash the job
            with, or None when nobody cancelled it.

        Raises:
            NotOwner: ``who`` does not hold the job's current claim.
            NotFound: the job is gone.
        """
        self._require_connected()
        _check_owner(who)
        return self._on_job(job, self._renew, who, job.fence, self._ttl(ttl))

    def cancel(self, job: Job, who: str, *, reason: str | None = None) -> bool:
        """Cancel the job on behalf of ``who`` (an operator, a program).

        A job with no live claim is trashed at once, its reason ``cancelled by WHO at TIME:
        REASON``. A claimed job keeps running until its owner learns of the cancel: the job
        gets that text as its cancel mark, which ``renew`` returns (and a later claim carries
        in ``Job.cancel_requested``); the owner trashes it with it (a conductor does at the
        next atom boundary after its next renewal).

        Returns:
            True when the job was trashed now, False when its owner was asked to.

        Raises:
            NotFound: the job is gone (finished, trashed, or never posted).
        """
        self._require_connected()
        _check_owner(who)
        mark = cancel_reason(who, reason, self.clock())
        trashed = self._on_job(job, self._cancel, mark)
        if trashed:
            self.notifier.notify(REMOVAL, {"job": job})
        return trashed

    def consume(self, job: Job, who: str) -> None:
        """Mark the claimed job done; it leaves the board.

        Raises:
            NotOwner / NotFound: as for ``renew``.
        """
        self._require_connected()
        _check_owner(who)
        self._on_job(job, self._consume, who, job.fence)
        self.notifier.notify(REMOVAL, {"job": job})

    def consume_and_claim_next(self, job: Job, who: str, *,
                               ttl: float | None = None) -> Job | None:
        """Consume ``job``, then claim the next claimable job for ``who`` (None if none).

        The same as ``consume`` followed by ``claim_next``, in one round trip on boards that
        can (Redis, SQL): a conductor that finishes one job and wants another pays for one
        call. An error means ``job`` was not consumed (and nothing was claimed); once the
        consume has happened, a failure to claim just returns None.

        Raises:
            NotOwner / NotFound: as for ``consume``.
        """
        self._require_connected()
        _check_owner(who)
        ttl = self._ttl(ttl)
        record = self._on_job(job, self._consume_and_claim_next, who, job.fence, ttl)
        return self._consumed_and_claimed(job, record)

    def consume_and_claim_next_async(self, job: Job, who: str, *,
                                     ttl: float | None = None) -> Pending[Job | None]:
        """``consume_and_claim_next``, sent without waiting for the answer.

        The call is on its way when this returns (on ZooKeeper, queued for kazoo's connection
        thread, which writes it at the caller's next wait; on boards that cannot send without
        waiting, already made); ``result()`` on the returned ``Pending`` gives what
        ``consume_and_claim_next`` would have returned or raised. A conductor uses it to let
        the board work while it runs the next job.

        Raises:
            ValueError: a bad owner or ttl (at once; board errors come from ``result()``).
        """
        self._require_connected()
        _check_owner(who)
        ttl = self._ttl(ttl)
        return self._send_consume_and_claim_next(job.uuid, who, job.fence, ttl).then(
            functools.partial(self._consumed_and_claimed, job))

    @property
    def database(self) -> str | None:
        """Which database this board keeps its jobs in, when it can consume a job inside a
        transaction someone else opened on it (``consume_in``); None when it cannot. Equal to
        a persistence's ``database`` when both reach the same tables: a conductor then
        consumes a job in the transaction that records its flow's end."""
        return None

    def consume_in(self, transaction: Any, job: Job, who: str, *, claim_next: bool = False,
                   ttl: float | None = None) -> Job | None:
        """Consume ``job`` inside ``transaction``, a write transaction opened by someone else
        on this board's ``database`` (SQL boards: a SQLAlchemy ``Connection``); with
        ``claim_next``, then claim the next claimable job for ``who`` in it too.

        Owner and fence are checked inside the transaction, so the consume lands only if the
        claim is still ``who``'s, and only if that transaction commits: call ``consumed(job)``
        once it has (the board's notifications), and use the job returned only then (a
        rolled-back transaction claimed nothing). When the board's ``persistence`` keeps its
        data in the same database, the next job's logbook is read in the transaction too
        (``Job.loaded_book``). Driver errors are not translated: they belong to the
        transaction's owner, which rolls back.

        Returns:
            The next job claimed (with ``claim_next``), or None.

        Raises:
            NotOwner / NotFound: as for ``consume`` (the caller rolls back).
            ValueError: this board has no ``database`` to share.
        """
        self._require_connected()
        _check_owner(who)
        if self.database is None:
            raise ValueError(f"board {self.name!r} cannot consume inside another component's "
                             "transaction (it has no shared database)")
        record = self._consume_in_transaction(transaction, job.uuid, who, job.fence,
                                              self._ttl(ttl) if claim_next else None)
        if record is None:
            return None
        following = Job(self, record, fence=record.fence)
        following._book = self._book_in(transaction, record)
        return following

    def consumed(self, job: Job) -> None:
        """Announce a consume made by ``consume_in`` whose transaction committed."""
        self._consumed_elsewhere()
        self.notifier.notify(REMOVAL, {"job": job})

    def _consumed_and_claimed(self, job: Job, record: JobRecord | None) -> Job | None:
        self.notifier.notify(REMOVAL, {"job": job})
        return Job(self, record, fence=record.fence) if record is not None else None

    def release(self, job: Job, who: str) -> None:
        """Hand a claimed job back unstarted: it is claimable again at once, and this claim
        does not count in its ``attempts`` (nor changes its ``reason``). For a job claimed
        ahead of need, e.g. by a conductor that was stopped before it could start it.

        Raises:
            NotOwner / NotFound: as for ``renew``.
        """
        self._require_connected()
        _check_owner(who)
        self._on_job(job, self._release, who, job.fence)

    def abandon(self, job: Job, who: str, *, delay: float | None = None,
                reason: str | None = None) -> None:
        """Give up the claim; the job may be claimed again once ``delay`` seconds have passed.

        Raises:
            NotOwner / NotFound: as for ``renew``.
        """
        self._require_connected()
        _check_owner(who)
        if delay is not None and delay < 0:
            raise ValueError("delay must be >= 0")
        self._on_job(job, self._abandon, who, job.fence, delay or 0.0, reason)

    def trash(self, job: Job, who: str, *, reason: str | None = None) -> None:
        """Move the claimed job to the trash (it leaves the board, listed by ``iter_trash``).

        Raises:
            NotOwner / NotFound: as for ``renew``.
        """
        self._require_connected()
        _check_owner(who)
        self._on_job(job, self._trash, who, job.fence, reason)
        self.notifier.notify(REMOVAL, {"job": job})

    def iter_trash(self) -> Iterator[Job]:
        """Trashed jobs, most recently trashed first; ``job.reason`` says why."""
        self._require_connected()
        for record in self._iter_trash():
            yield Job(self, record)

    def requeue(self, job: Job) -> Job:
        """Post a trashed job again and take it out of the trash, in one atomic step: same
        name, logbook, details and priority, a new uuid, no attempts and no reason. Requeueing
        one trashed job twice posts it once (the second call finds it gone).

        Args:
            job: a job from ``iter_trash``.

        Raises:
            NotFound: the job is not in the trash (never trashed, or requeued already).
        """
        self._require_connected()

        now = self.clock()
        record = JobRecord(
            uuid=new_uuid(), name=job.name, details=dict(job.details),
            book_uuid=job.book_uuid, book_name=job.book_name,
            priority=int(job.priority), created_on=now, last_modified=now)
        self._requeue(job.uuid, record)
        posted = Job(self, record)
        self.notifier.notify(POSTED, {"job": posted})
        return posted

    # -- waiting ---------------------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a claimable job may exist; False if ``timeout`` passed first.

        Boards with ``CAPABILITIES.notifications`` wake at once on a post from any process;
        the others check every ``poll_interval``. Woken by a post it knows of (PostgreSQL:
        a post's own notification), a board answers True without reading again.
        """
        self._require_connected()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if next(self.iterjobs(only_unclaimed=True), None) is not None:
                return True
            remaining = self.poll_interval if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._wait_for_change(min(remaining, self.poll_interval)):
                return True

    def wait_for_completion(self, job: Job, timeout: float | None = None) -> bool:
        """Block until ``job`` is consumed or trashed; False if ``timeout`` passed first.

        Raises:
            BoardDataLost: as for ``state_of``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.state_of(job) is not JobState.COMPLETE:
            remaining = self.poll_interval if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._wait_for_change(min(remaining, self.poll_interval))
        return True

    # -- entities --------------------------------------------------------------------------

    def register_entity(self, entity: Entity, *, ttl: float | None = None) -> None:
        """Record ``entity`` as live for ``ttl`` seconds (the board's ``ttl`` by default).

        Register again before it lapses to stay listed.
        """
        self._require_connected()
        self._register_entity(entity, self._ttl(ttl))

    def unregister_entity(self, entity: Entity) -> None:
        """Remove ``entity`` from the live listing (no error if it is not there)."""
        self._require_connected()
        self._unregister_entity(entity)

    def iter_entities(self, kind: str | None = None) -> Iterator[Entity]:
        """Live entities, of one ``kind`` or all."""
        self._require_connected()
        return (e for e in self._iter_entities() if kind is None or e.kind == kind)

    # -- helpers ---------------------------------------------------------------------------

    def _ttl(self, ttl: float | None) -> float:
        if ttl is None:
            return self.ttl
        if ttl <= 0:
            raise ValueError("ttl must be > 0")
        return float(ttl)

    def _claims_lost(self, reason: str) -> None:
        """For backends: every claim made through this board has ended (``CLAIMS_LOST``)."""
        logger.warning("board %r: every claim it held has ended: %s", self.name, reason)
        self.notifier.notify(CLAIMS_LOST, {"reason": reason})

    def _on_job(self, job: Job, primitive: Callable[..., T], *args: Any) -> T:
        """``primitive(job.uuid, *args)``; a ``NotFound`` for a job made under an epoch the
        board has lost since becomes ``BoardDataLost``: the job went with the data."""
        try:
            return primitive(job.uuid, *args)
        except errors.NotFound:
            if self._lost_since(job):
                raise self._lost_job(job) from None
            raise

    def _lost_since(self, job: Job) -> bool:
        """Whether ``job``, not found, went with data the board lost since it was made (rather
        than being consumed or trashed). Asks the backend (``_check_epoch``) when the board
        has not noticed a loss itself: only jobs that are gone pay for it."""
        if job.epoch is not None and job.epoch == self._epoch:
            self._check_epoch()
        return job.epoch != self._epoch

    def _lost_job(self, job: Job) -> errors.BoardDataLost:
        """The error for ``job``, gone from a board whose data was lost since it was made."""
        return errors.BoardDataLost(
            f"job {job.uuid} was lost with the data of board {self.name!r} (epoch {job.epoch} "
            f"is gone, the board now holds {self.epoch}); it never completed",
            job_uuid=job.uuid)

    def _claimed(self, job: Job, record: JobRecord) -> Job:
        claimed = Job(self, record, fence=record.fence)
        claimed._book = job._book
        return claimed

    # -- primitives each backend implements ------------------------------------------------

    @abc.abstractmethod
    def _connect(self) -> None: ...

    @abc.abstractmethod
    def _close(self) -> None: ...

    @abc.abstractmethod
    def _post(self, record: JobRecord) -> None:
        """Store a new job; assign ``record.sequence`` (grows with every post)."""

    def _post_with_book(self, record: JobRecord, book: LogBook,
                        persistence: Persistence) -> None:
        """``_post``, ``book`` saved in ``persistence`` with it: in one transaction when the
        two share a database (``_post_sharing``), else the book first and the job then, the
        book destroyed again if the post fails (a job is never without its book)."""
        if self.shares_database(persistence):
            self._post_sharing(record, book, persistence)
            return
        persistence.save_logbook(book)
        try:
            self._post(record)
        except BaseException:
            with contextlib.suppress(errors.LegatoError):
                persistence.destroy_logbook(book.uuid)
            raise

    def _post_sharing(self, record: JobRecord, book: LogBook,
                      persistence: Persistence) -> None:
        """``_post`` and ``persistence.save_logbook_in(transaction, book)`` in one transaction
        of this board's database, all or nothing; boards with a ``database`` implement it."""
        raise NotImplementedError

    @abc.abstractmethod
    def _get(self, job_uuid: str) -> JobRecord:
        """The stored record; ``NotFound`` when consumed, trashed or never posted."""

    @abc.abstractmethod
    def _iter_records(self, only_unclaimed: bool, ensure_fresh: bool,
                      after: Position | None = None) -> Iterator[JobRecord]:
        """Records in claim order, read lazily (in pages); undecodable ones skipped with a
        warning. With ``only_unclaimed`` a backend may skip records that are not claimable.
        With ``after`` (priority, sequence), only the records after that place in claim order
        (a lower priority, or the same one and a larger sequence), found through an index:
        the records before it are not read."""

    def _waiting_heads(self) -> list[JobRecord]:
        """Records among which the oldest waiting one is: at least the first claimable record
        of each priority (in claim order), or that oldest alone; others are allowed (the base
        drops the unclaimable ones). This default lists the claimable records from the start
        of each priority with ``_iter_records(after=...)``, one page per priority; backends
        override it with one lookup per priority in their index."""
        now = self.clock()
        heads: list[JobRecord] = []
        for priority in sorted(map(int, JobPriority), reverse=True):
            for record in self._iter_records(True, False, (priority, -1)):
                if record.priority != priority:
                    break
                if record.claimable(now):
                    heads.append(record)
                    break
        return heads

    def _iter_claimed(self) -> Iterator[JobRecord]:
        """At least every record under a live claim (others are allowed: the base drops
        them). This default reads the whole board; backends override it with an index of
        claims, so that its cost follows the number of claims, not of jobs."""
        return (record for record in self._iter_records(False, True)
                if record.state is JobState.CLAIMED)

    @abc.abstractmethod
    def _job_count(self) -> int: ...

    def _job_counts(self) -> JobCounts:
        """The counts of ``job_counts``. This default reads every job and the whole trash;
        backends override it with counts their storage keeps."""
        now = self.clock()
        waiting = delayed = claimed = 0
        for record in self._iter_records(False, True):
            if record.effective_state(now) is JobState.CLAIMED:
                claimed += 1
            elif record.claimable(now):
                waiting += 1
            else:
                delayed += 1
        return JobCounts(waiting, delayed, claimed, sum(1 for _ in self._iter_trash()))

    @abc.abstractmethod
    def _claim(self, job_uuid: str, who: str, ttl: float) -> JobRecord:
        """Atomically: if claimable, set owner, a fence larger than any before, lease, and
        attempts + 1; return the new record. ``UnclaimableJob`` / ``NotFound`` otherwise."""

    def _claim_next(self, who: str, ttl: float) -> JobRecord | None:
        """Claim the first claimable record in order. Backends override this with a single
        atomic step that does not read the whole board."""
        for record in self._iter_records(True, False):
            if not record.claimable(self.clock()):
                continue
            try:
                return self._claim(record.uuid, who, ttl)
            except (errors.UnclaimableJob, errors.NotFound):
                continue
        return None

    @abc.abstractmethod
    def _renew(self, job_uuid: str, who: str, fence: int | None, ttl: float) -> str | None:
        """Atomically check owner (and fence, unless None) and extend the lease; return the
        job's cancel mark (``JobRecord.cancel``)."""

    @abc.abstractmethod
    def _cancel(self, job_uuid: str, mark: str) -> bool:
        """Atomically: if the job has a live claim, set its cancel mark to ``mark`` and return
        False; otherwise move it to the trash with ``mark`` as its reason and return True.
        ``NotFound`` when the job is gone."""

    @abc.abstractmethod
    def _consume(self, job_uuid: str, who: str, fence: int | None) -> None:
        """Atomically check owner (and fence, unless None) and remove the job."""

    def _claim_next_with_book(self, who: str,
                              ttl: float) -> tuple[JobRecord, LogBook | None] | None:
        """``_claim_next``, with the claimed job's logbook when the backend read it in the
        claim's transaction (``_book_in``); by default it reads none."""
        record = self._claim_next(who, ttl)
        return None if record is None else (record, None)

    def shares_database(self, persistence: Persistence | None) -> bool:
        """Whether ``persistence`` keeps its data in this board's ``database``, so one
        transaction can hold the board's and the persistence's writes (``consume_in``) and a
        claim can bring the job's logbook (``Job.loaded_book``)."""
        database = self.database
        return (database is not None and persistence is not None
                and persistence.database == database)

    def _shares_persistence(self) -> bool:
        """Whether the board's own ``persistence`` shares its database."""
        return self.shares_database(self.persistence)

    def _book_in(self, transaction: Any, record: JobRecord) -> LogBook | None:
        """The logbook of the job ``record`` claimed, read inside ``transaction`` on this
        board's database when the board's ``persistence`` shares it
        (``Persistence.get_logbook_in``); None when it does not, or the job names no book, or
        the book is gone (whoever runs the job finds that out)."""
        if record.book_uuid is None or not self._shares_persistence():
            return None
        assert self.persistence is not None
        try:
            return self.persistence.get_logbook_in(transaction, record.book_uuid)
        except errors.NotFound:
            return None

    def _consume_and_claim_next(self, job_uuid: str, who: str, fence: int | None,
                                ttl: float) -> JobRecord | None:
        """``_consume``, then ``_claim_next``. Backends that can do both in one round trip
        override this; the consume must come first and its errors must propagate, while
        after it an error claiming is logged and becomes None (the caller claims again)."""
        self._consume(job_uuid, who, fence)
        try:
            return self._claim_next(who, ttl)
        except Exception as exc:  # consumed already: the caller's next claim_next retries
            logger.debug("board %r: claim after consuming %s failed: %s", self.name,
                         job_uuid, exc)
            return None

    def _consume_in_transaction(self, transaction: Any, job_uuid: str, who: str,
                                fence: int | None, ttl: float | None) -> JobRecord | None:
        """Inside ``transaction``: ``_consume``, then (with a ``ttl``) claim the first
        claimable job, skipping records it cannot decode without failing the transaction.
        Only boards with a ``database`` implement it."""
        raise NotImplementedError(f"board {self.name!r} has no shared database")

    def _consumed_elsewhere(self) -> None:
        """Wake this board's waiters after a ``consume_in`` committed (boards whose waiters
        this process wakes itself override it)."""

    def _send_consume_and_claim_next(self, job_uuid: str, who: str, fence: int | None,
                                     ttl: float) -> Pending[JobRecord | None]:
        """``_consume_and_claim_next`` without waiting for the answer. Backends whose client
        can send a request and read its reply later override this; by default the call is
        made at once."""
        return Pending.of(lambda: self._consume_and_claim_next(job_uuid, who, fence, ttl))

    @abc.abstractmethod
    def _release(self, job_uuid: str, who: str, fence: int | None) -> None:
        """Atomically check owner (and fence, unless None), clear the claim, make the job
        claimable now and take back the claim's count from ``attempts``; ``reason`` stays."""

    @abc.abstractmethod
    def _abandon(self, job_uuid: str, who: str, fence: int | None, delay: float,
                 reason: str | None) -> None:
        """Atomically check owner (and fence, unless None), clear the claim, set
        ``available_at`` to now + ``delay`` and keep ``reason``."""

    @abc.abstractmethod
    def _trash(self, job_uuid: str, who: str, fence: int | None, reason: str | None) -> None:
        """Atomically check owner (and fence, unless None) and move the job to the trash."""

    @abc.abstractmethod
    def _iter_trash(self) -> Iterator[JobRecord]: ...

    @abc.abstractmethod
    def _requeue(self, trashed_uuid: str, record: JobRecord) -> None:
        """Atomically remove the trash entry of ``trashed_uuid`` and post ``record`` (setting
        its ``sequence``); ``NotFound`` (nothing posted) when there is no such entry."""

    def _check_epoch(self) -> None:
        """Raise ``BoardDataLost`` (taking the server's new ``epoch``) when the data the board
        knew is gone. Called when a job is not found; backends whose every call checks the
        epoch already (Redis) keep this no-op."""

    def _wait_for_change(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds, returning early when the backend reports a change.

        Returns:
            True when the backend knows that a job was posted while this thread slept, so
            that ``wait`` answers without reading the board again (the claim that follows
            finds the job, or finds that another claimer was faster); False otherwise.
        """
        time.sleep(timeout)
        return False

    @abc.abstractmethod
    def _register_entity(self, entity: Entity, ttl: float) -> None: ...

    @abc.abstractmethod
    def _unregister_entity(self, entity: Entity) -> None: ...

    @abc.abstractmethod
    def _iter_entities(self) -> Iterator[Entity]: ...


def refuse_nul(name: str, book_name: str | None, details: dict[str, Any] | None) -> None:
    """Raise ``ValueError`` naming a field that holds a NUL character (U+0000).

    Iterative, so a deep document cannot make it raise ``RecursionError`` (depth and size are
    checked separately).
    """
    if "\x00" in name:
        raise ValueError(f"job name {name!r} contains a NUL character (U+0000)")
    if book_name is not None and "\x00" in book_name:
        raise ValueError(f"book name {book_name!r} contains a NUL character (U+0000)")
    stack: list[tuple[str, Any]] = [("details", details)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                raise ValueError(f"job {path} contains a NUL character (U+0000)")
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and "\x00" in key:
                    raise ValueError(f"job {path} has a key with a NUL character (U+0000): "
                                     f"{key!r}")
                stack.append((f"{path}[{key!r}]", item))
        elif isinstance(value, list | tuple):
            stack.extend((f"{path}[{index}]", item) for index, item in enumerate(value))


def parse_position(text: str) -> Position:
    """A ``Job.position`` (``"PRIORITY:SEQUENCE"``) as a tuple; ``ValueError`` naming what is
    wrong otherwise."""
    priority, colon, sequence = str(text).strip().partition(":")
    try:
        if not colon:
            raise ValueError
        position = (int(priority), int(sequence))
        JobPriority(position[0])
    except ValueError:
        raise ValueError(f"not a job position: {str(text)[:60]!r} (expected PRIORITY:SEQUENCE "
                         "as Job.position gives, such as '0:17')") from None
    if position[1] < 0:
        raise ValueError(f"not a job position: {str(text)[:60]!r} (a negative sequence)")
    return position


def cancel_reason(who: str, reason: str | None, now: float) -> str:
    """The trash reason of a job ``who`` cancelled at ``now`` (seconds since the epoch)."""
    when = dt.datetime.fromtimestamp(now, dt.UTC).isoformat(timespec="seconds")
    return f"cancelled by {who} at {when}: {reason or 'no reason given'}"


def _check_owner(who: str) -> None:
    if not isinstance(who, str) or not who.strip():
        raise ValueError("an owner must be a non-empty string")


def not_owner(job_uuid: str, who: str, actual: str | None, *, fence: int | None = None,
              actual_fence: int | None = None) -> errors.NotOwner:
    """The error a backend raises when ``who`` (with ``fence``, if it gave one) does not hold
    the job's current claim: ``actual`` holds it (None: nobody), and ``actual_fence`` is the
    fence of the job's latest claim (None when the backend cannot tell)."""
    held = f"held by {actual!r}" if actual else "not claimed"
    if actual_fence is not None:
        held += f" under fence {actual_fence}" if actual else f" (last fence {actual_fence})"
    caller = f"{who!r} under fence {fence}" if fence is not None else repr(who)
    return errors.NotOwner(f"job {job_uuid} is {held}, not by {caller}",
                           job_uuid=job_uuid, owner=who, actual_owner=actual, fence=fence,
                           actual_fence=actual_fence)
