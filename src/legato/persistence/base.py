"""The persistence contract.

A ``Persistence`` stores logbooks, flow details and atom details. The public methods here are
concrete: they check arguments, make sure values are JSON, copy models in and out (callers never
share objects with the backend) and retry idempotent operations a bounded number of times. Each
backend implements only the small ``_``-prefixed primitives.

Errors: unknown ids raise ``NotFound``; an unreachable or failing backend raises
``StorageFailure`` chained to the driver's error; values that are not JSON raise
``SerializationError`` naming the atom.

Concurrency: any number of processes may use one database at once. An atom update writes that
atom's row only, never the whole book.

Fencing: ``take_flow(flow_uuid, fence)`` records a claim's ``Fence`` on a flow detail (refusing
one older than the recorded fence). The writes an engine makes (``update_atom_details``,
``update_flow_state``, ``update_flow_details``) accept ``fence=``: given one, the write lands only
if the flow detail records exactly that fence, checked in the same statement as the write (no
extra round trip); otherwise ``FencedOut`` is raised and nothing is written. So a conductor whose
claim lapsed can never overwrite what the job's new owner records. Without ``fence`` writes are
unconditional (engines used without a conductor).

Writing together: ``update_many(FlowWrites(...), fence=...)`` makes several writes to one flow
detail (its row, its new or changed atoms, a take, a claim's start or end) in one transaction:
all land or none does, and with a fence none lands unless the flow records that fence. Engines
use it to put an atom's result and the next atom's start in one commit. A conductor may also
defer a take (``take_flow(..., defer=True)``) to the first fenced write of the flow, and give
the claim's end to ride on the write that ends the flow (``ending=``). A backend whose
``database`` is not None lets statements of another component that keeps its data in that same
database (a SQL jobboard consuming the job) run in the same transaction (``FlowWrites.then``).

History: every claim of a job is a ``Claim`` (owner, fence, times, outcome, reason, flow state,
atoms run), kept here so it outlives the board. A conductor records a claim's start with the
``take_flow`` that starts it (same transaction) and its end with ``record_claim``;
``job_history`` reads it back, ``list_flows`` and ``claim_counts`` summarise it.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, Protocol, TypeVar

from legato import errors
from legato.persistence.models import (
    AtomDetail,
    Claim,
    Fence,
    FlowDetail,
    FlowSummary,
    LogBook,
    utcnow,
)
from legato.states import FlowState

__all__ = ["BookParts", "ClaimEnding", "Connection", "FlowWrites", "JoinableThen",
           "OneStatement", "Persistence", "StatementParts"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Characters a uuid prefix may hold (anything else matches nothing: no LIKE escaping needed).
_PREFIX_CHARS = frozenset("0123456789abcdefABCDEF-")

#: ``claim_counts`` keys besides the outcomes: jobs that ended (consumed or trashed), and those
#: that failed (trashed, or consumed with a flow that did not succeed).
FINISHED, FAILED = "finished", "failed"


#: One encoder for every check (``json.dumps`` with options builds a new one per call).
_STRICT_JSON = json.JSONEncoder(allow_nan=False)


def _check_json(value: Any, what: str, owner: str) -> None:
    """Raise ``SerializationError`` naming ``what`` of ``owner`` if ``value`` is not JSON (the
    message is only formatted then)."""
    try:
        _STRICT_JSON.encode(value)
    except (TypeError, ValueError) as exc:
        raise errors.SerializationError(
            f"{what} {owner!r} is not JSON-serialisable: {exc}") from exc


#: Values that are always JSON (exact types: a float may be NaN, a subclass may encode as
#: anything).
_PLAIN = frozenset({type(None), str, int, bool})

_ATOM_JSON_FIELDS = ("results", "revert_results", "meta", "failure", "revert_failure")


def check_atom_json(atom_detail: AtomDetail) -> None:
    """Raise ``SerializationError`` naming the atom (and the field) if a value is not JSON."""
    ad = atom_detail
    if (type(ad.results) in _PLAIN and not ad.meta and type(ad.meta) is dict
            and ad.failure is None
            and ad.revert_results is None and ad.revert_failure is None):
        return  # nothing to encode: a started atom, or one whose result is a plain scalar
    try:  # one encoding for the common case; field by field only to explain a failure
        _STRICT_JSON.encode([ad.results, ad.revert_results, ad.meta, ad.failure,
                             ad.revert_failure])
    except (TypeError, ValueError) as exc:
        for field in _ATOM_JSON_FIELDS:
            _check_json(getattr(atom_detail, field), f"{field} of atom", atom_detail.name)
        raise errors.SerializationError(
            f"atom {atom_detail.name!r} is not JSON-serialisable: {exc}") from exc


@dataclasses.dataclass(slots=True)
class FlowWrites:
    """Writes to one flow detail that ``Persistence.update_many`` makes in one transaction.

    Attributes:
        flow_uuid: the flow detail written.
        flow: its row (name, state, meta) and the atoms it carries, inserted or updated, like
            ``update_flow_details``.
        state: the flow's state, like ``update_flow_state`` (None: not written; over
            ``flow``'s own state when both are given).
        atoms: atom details of the flow, each updated like ``update_atom_details``.
        take: record the write's fence first, when the flow records no fence (or this one):
            a take of a flow never taken, riding on the write. Needs a fence.
        started: with ``take``, a claim's start, added unless recorded (like ``take_flow``).
        ended: a claim's end, recorded like ``record_claim``.
        then: called last, inside the transaction, with the backend's handle on it (SQL: the
            SQLAlchemy ``Connection``), to make writes of another component in the same
            database (``Persistence.database``); whatever it raises rolls every write back
            and is raised. Only on a backend with a ``database``. A ``then`` that is a
            ``JoinableThen`` may instead be handed a ``OneStatement`` (see there).
    """

    flow_uuid: str
    flow: FlowDetail | None = None
    state: FlowState | None = None
    atoms: list[AtomDetail] = dataclasses.field(default_factory=list)
    take: bool = False
    started: Claim | None = None
    ended: Claim | None = None
    then: Callable[[Any], None] | None = None


def _state_of(writes: FlowWrites) -> FlowState | None:
    """The flow state ``writes`` records, if any."""
    if writes.state is not None:
        return writes.state
    return writes.flow.state if writes.flow is not None else None


class StatementParts(Protocol):
    """Writes of another component sharing a backend's ``database``, given as parts of a
    statement rather than statements of their own, so that the backend makes them and its own
    writes as ONE statement (``OneStatement.join``). Built once and reused (the backend caches
    the joined statement by the parts object); the values come with each ``join``.

    SQL backends (PostgreSQL): SQLAlchemy Core elements, the parts' parameter names distinct
    from the backend's (which start with ``b_``, ``f_``, ``fl_``, ``s_``, ``u``, ``a``,
    ``e_``)."""

    def __hash__(self) -> int:
        """Parts are hashable: the joined statement is cached by them (identity will do)."""

    def check(self) -> Any:
        """A ``SELECT`` that finds and locks (``FOR UPDATE``) the rows the parts write, while
        they may be written: the backend's own writes land only if it finds a row."""

    def writes(self, gate: Any) -> tuple[list[Any], Callable[[Any], Any]]:
        """The parts' data-modifying CTEs, each landing only where ``gate`` (a boolean
        expression: the backend's write landed) holds, and a function that adds to the
        statement's ``SELECT`` (one row: ``written``, ``joined`` and the backend's own
        columns) the columns telling the parts' outcome."""


class BookParts(Protocol):
    """A logbook's read (its flows and atoms) as parts of another component's statement, so
    that a board sharing the backend's ``database`` claims a job and reads its book as ONE
    statement: the book's rows are joined on the book uuid of the row the board's statement
    finds (``Persistence.book_parts``). Built once and reused.

    SQL backends: SQLAlchemy Core elements; the columns are labelled with prefixes
    (``lb_``, ``fd_``, ``ad_``) no column of the other component starts with."""

    def columns(self) -> list[Any]:
        """The columns the statement selects besides its own."""

    def join(self, source: Any, book_uuid: Any) -> Any:
        """``source`` (the other component's rows) outer-joined with the rows of the book
        whose uuid is ``book_uuid`` (a column of ``source``): one row per atom (NULLs for a
        flow without atoms, a book without flows, a book that is not there)."""

    def order_by(self) -> list[Any]:
        """The order the book's rows must come in."""

    def book(self, rows: Iterable[Mapping[str, Any]]) -> LogBook:
        """The logbook in ``rows`` (the statement's rows, by column name).

        Raises:
            NotFound: the rows hold no book.
        """


class OneStatement(abc.ABC):
    """What a backend hands a ``JoinableThen`` instead of a transaction when it can make its
    write and the other component's (``StatementParts``) one statement, run as its own
    transaction (PostgreSQL: autocommit, no ``BEGIN``/``COMMIT`` round trips).

    Either ``join`` (once): the backend's write and the parts in one statement, landing all or
    none; or anything else (``connection``, or any attribute of it): a transaction is opened,
    the backend's write made in it, and the caller goes on as with a plain ``then``."""

    @abc.abstractmethod
    def join(self, parts: StatementParts, params: Mapping[str, Any]) -> Any:
        """Make the backend's write with ``parts`` (values ``params``) as one statement, and
        return its row (the parts' columns; ``joined``: how many rows the parts' ``check``
        found). It has landed when this returns, unless the parts' ``check`` found nothing
        (``joined`` 0: nothing was written; the caller raises its own refusal). A refusal of
        the backend's own write (``FencedOut``, ``NotFound``) is raised, to the backend, past
        the caller: nothing was written."""

    @property
    @abc.abstractmethod
    def connection(self) -> Any:
        """The backend's handle on the write (SQL: a SQLAlchemy ``Connection``): after a
        ``join`` the one the statement ran on (autocommit); else a transaction holding the
        backend's write, committed after ``then`` returns."""


class JoinableThen(abc.ABC):
    """A ``FlowWrites.then`` that may be called with a ``OneStatement`` rather than the
    backend's transaction. Once its ``join`` returned the writes have landed: whatever it
    raises after is raised but rolls nothing back, so it must raise nothing after a ``join``
    that it would have wanted to undo the writes."""

    __slots__ = ()

    @abc.abstractmethod
    def __call__(self, transaction: Any) -> None: ...


class ClaimEnding(Protocol):
    """What a conductor gives ``take_flow(..., ending=)``: the claim's end to write with the
    flow's end state, when that state already tells how the claim ends."""

    def end_with(self, state: FlowState) -> Claim | None:
        """The claim's end to record with the flow's ``state`` (None: not known yet)."""

    def in_transaction(self, state: FlowState) -> Callable[[Any], None] | None:
        """What else to do in the transaction that writes the flow's ``state`` with the
        claim's end (``FlowWrites.then``), e.g. consume the job on a board in the same
        database; None: nothing. Asked only when ``end_with`` gave an end, and only by a
        persistence with a ``database``."""

    def ended(self, claim: Claim) -> None:
        """``claim`` (what ``end_with`` gave) is recorded, with what ``in_transaction`` gave
        done in the same transaction."""


class _Riders:
    """What rides on a claim's fenced writes of one flow: a deferred take (and the claim's
    start), and the claim's end."""

    __slots__ = ("ending", "started", "take")

    def __init__(self, take: bool, started: Claim | None, ending: ClaimEnding | None) -> None:
        self.take = take
        self.started = started
        self.ending = ending


#: Flow states that end a run: a claim's end may ride on their write.
_END_STATES = frozenset({FlowState.SUCCESS})


class Persistence(abc.ABC):
    """Where engines record flow progress. Use ``legato.persistence.connect(url)``.

    Args:
        url: the backend URL (``memory://``, ``sqlite:///path.db``, ``postgresql://...``).
        retries: how many times an idempotent operation is retried after a ``StorageFailure``.
        retry_delay: seconds before the first retry; doubled for each further one.
    """


    def __init__(self, url: str, *, retries: int = 3, retry_delay: float = 0.05,
                 **options: Any) -> None:
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self.url = url
        self.retries = retries
        self.retry_delay = retry_delay
        self.options = options
        # By (flow uuid, fence): writes that ride on that claim's next fenced writes.
        self._riders: dict[tuple[str, Fence], _Riders] = {}
        self._riders_lock = threading.Lock()

    @property
    def database(self) -> str | None:
        """Which database this backend writes to, when another component keeping its data in
        the same database may join its write transactions (``FlowWrites.then``); None when
        none can. Two components whose ``database`` is equal (and not None) reach the same
        tables (SQL backends: the URL without driver and password, ``legato._sql``)."""
        return None

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Persistence:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def upgrade(self) -> None:
        """Create or migrate the schema. Idempotent; safe from many processes at once."""

    def validate(self) -> None:
        """Check the backend is reachable and its schema current.

        Raises:
            StorageFailure: it is not.
        """

    def close(self) -> None:
        """Release connections. The object must not be used afterwards."""

    def get_connection(self) -> Connection:
        """This backend as TaskFlow's connection object: the same methods (``upgrade``,
        ``save_logbook``, ``get_logbook``...), and a ``close`` that leaves the backend open, so
        ``with contextlib.closing(backend.get_connection()) as conn:`` works unchanged."""
        return Connection(self)

    # -- logbooks --------------------------------------------------------------------------

    def save_logbook(self, book: LogBook) -> LogBook:
        """Insert or update a logbook with all its flow and atom details; return a copy."""
        _check_json(book.meta, "meta of logbook", book.name)
        for fd in book.flows.values():
            self._check_flow(fd)
        # The caller's book with a new time; not copied (backends never keep what they are
        # given): the copy handed back is the only one needed.
        saved = LogBook(book.name, book.uuid, book.created_at, utcnow(), book.meta, book.flows)
        self._retry(lambda: self._save_logbook(saved))
        return saved.copy()

    def get_logbook(self, book_uuid: str, *, lazy: bool = False) -> LogBook:
        """Return the logbook; with ``lazy`` its flows are not loaded.

        Raises:
            NotFound: no such logbook.
        """
        return self._retry(self._get_logbook, book_uuid, lazy)

    def get_logbook_in(self, transaction: Any, book_uuid: str) -> LogBook:
        """The logbook with its flows and atoms, read inside ``transaction``, a transaction
        someone else opened on this backend's ``database`` (SQL backends: a SQLAlchemy
        ``Connection``): a board sharing the database reads a job's book in the claim's
        transaction, so the conductor need not ask for it. Not retried; driver errors are not
        translated: they belong to the transaction's owner.

        Raises:
            NotFound: no such logbook.
            ValueError: this backend has no ``database`` to share.
        """
        if self.database is None:
            raise ValueError(f"{type(self).__name__} cannot read inside another component's "
                             "transaction (it has no shared database)")
        return self._get_logbook_in(transaction, book_uuid)

    def book_parts(self) -> BookParts | None:
        """The read of a logbook as parts of a statement of a component sharing this
        backend's ``database`` (``BookParts``), or None when the backend has none (the
        component reads the book with ``get_logbook_in``)."""
        return None

    def save_logbook_in(self, transaction: Any, book: LogBook, *, along: Any = None,
                        along_params: Mapping[str, Any] | None = None) -> Any:
        """``save_logbook`` inside ``transaction``, a transaction someone else opened on this
        backend's ``database`` (SQL backends: a SQLAlchemy ``Connection``): a board sharing
        the database posts a job and saves its logbook in one transaction, so there is never
        one without the other. With ``along`` (the caller's statement, returning rows, and
        its ``along_params``), that statement runs after the book's writes in the same
        transaction — as part of the same statement when ``saves_in_one_statement(book)`` —
        and its first row is returned (None without ``along``). Not retried; driver errors are
        not translated: they belong to the transaction's owner.

        Raises:
            ValueError: this backend has no ``database`` to share.
            SerializationError: like ``save_logbook``.
        """
        if self.database is None:
            raise ValueError(f"{type(self).__name__} cannot write inside another component's "
                             "transaction (it has no shared database)")
        _check_json(book.meta, "meta of logbook", book.name)
        for fd in book.flows.values():
            self._check_flow(fd)
        saved = LogBook(book.name, book.uuid, book.created_at, utcnow(), book.meta, book.flows)
        return self._save_logbook_in(transaction, saved, along, along_params)

    def saves_in_one_statement(self, book: LogBook) -> bool:
        """Whether ``save_logbook_in`` writes ``book`` (and its ``along``) as one statement,
        which its caller may then run as its own transaction (PostgreSQL: in autocommit, no
        ``BEGIN``/``COMMIT`` round trips). False unless the backend says so."""
        return self.database is not None and self._saves_in_one_statement(book)

    def get_logbooks(self, *, lazy: bool = False) -> Iterator[LogBook]:
        """Every logbook, oldest first."""
        return iter(self._retry(lambda: list(self._get_logbooks(lazy))))

    def destroy_logbook(self, book_uuid: str) -> None:
        """Delete a logbook and, with it, all its flow and atom details.

        Raises:
            NotFound: no such logbook.
        """
        self._retry(lambda: self._destroy_logbook(book_uuid))

    # -- flow details ----------------------------------------------------------------------

    def take_flow(self, flow_uuid: str, fence: Fence, *, claim: Claim | None = None,
                  defer: bool = False, ending: ClaimEnding | None = None) -> bool:
        """Record ``fence`` on the flow detail: from now on writes with another fence are refused.

        With ``claim``, the claim's start is added to its job's history in the same
        transaction as the take (unless that claim is recorded already); a take that replaces
        a fence also ends the job's earlier claims that recorded no end (their conductor died
        or lost its claim), or an end as consumed that the board never saw (recorded with the
        flow's SUCCESS, and the conductor died before the consume), as ``lost claim``.

        It lands when the flow detail records no fence, a fence of another job, or a fence of
        the same job with a number no larger than ``fence.number`` (taking again with the same
        fence is a no-op, so a retried take is safe). One conditional write when the flow was
        never taken (the common case: a job's first claim), two otherwise.

        With ``defer`` nothing is written now: the take (and ``claim``'s start) ride on the
        first write this object makes with ``fence`` to the flow (same transaction). Only for
        a flow read with no fence recorded (``FlowDetail.fence`` None): that write then lands
        only if the flow still records no fence (or this one), else it raises ``FencedOut``
        and writes nothing. With ``ending``, the claim's end rides on the write of the flow's
        end state (see ``ClaimEnding``). ``forget_claim`` drops what never rode.

        Returns:
            True when the flow recorded no fence before: no fenced writer can have changed it
            since it was last read. False when the take replaced a fence (or may have, after a
            retry): an earlier owner's writes may have landed since, so read the flow again.
            With ``defer``: True.

        Raises:
            FencedOut: the flow detail records a newer fence of the same job.
            NotFound: no such flow detail.
        """
        if claim is not None:
            claim = claim.copy()
        if defer or ending is not None:
            with self._riders_lock:
                self._riders[(flow_uuid, fence)] = _Riders(defer, claim if defer else None,
                                                           ending)
            if defer:
                return True
        if self._retry(lambda: self._take_new_flow(flow_uuid, fence, claim)):
            return True
        self._retry(lambda: self._take_flow(flow_uuid, fence, claim))
        return False

    def forget_claim(self, flow_uuid: str, fence: Fence) -> None:
        """Drop a deferred take and claim ending of ``take_flow`` that never rode on a write
        (the claim ended first). Idempotent."""
        key = (flow_uuid, fence)
        if key not in self._riders:  # only the claim's own thread adds its riders
            return
        with self._riders_lock:
            self._riders.pop(key, None)

    def update_many(self, writes: FlowWrites, *, fence: Fence | None = None,
                    checked: bool = False) -> None:
        """Make every write of ``writes`` in one transaction: all land, or none does.

        With ``fence`` nothing is written unless the flow detail records exactly that fence
        (after the take, when ``writes.take``). A take deferred by ``take_flow(defer=True)``
        for this flow and fence rides on it, and so does the claim's end given to
        ``take_flow(ending=)`` when ``writes`` ends the flow. Nothing given is copied or kept.

        With ``checked`` the atoms' values are not checked here: the caller checked each with
        ``check_atom_json`` and has not changed it since (an engine checks an atom's result
        once, when it defers its write). The flow's meta is checked either way.

        Raises:
            NotFound: the flow detail, or one of the atoms, was never saved.
            SerializationError: the meta or an atom's value is not JSON.
            FencedOut: ``fence`` is not the flow detail's fence (nothing was written).
            ValueError: ``take`` without a fence; ``then`` on a backend with no ``database``.
        """
        if writes.take and fence is None:
            raise ValueError("a take needs a fence")
        if writes.then is not None and self.database is None:
            raise ValueError(f"{type(self).__name__} cannot run another component's writes "
                             "in its transactions (it has no shared database)")
        if writes.flow is not None:
            self._check_flow(writes.flow)
        if not checked:
            for atom_detail in writes.atoms:
                check_atom_json(atom_detail)
        # Read without the lock (one dict lookup is atomic); only this claim's own thread
        # adds or drops its riders.
        riders = self._riders.get((writes.flow_uuid, fence)) if fence is not None else None
        if riders is None or not (riders.take or (riders.ending is not None and (
                writes.ended is not None or _state_of(writes) in _END_STATES))):
            # Nothing rides on this write (most of a run's writes: an atom's end and the
            # next one's start): written as given.
            self._retry(self._update_many, writes, fence)
            return
        self._write_riding(writes, fence, riders)

    def _write_riding(self, writes: FlowWrites, fence: Fence | None,
                      riders: _Riders | None = None) -> None:
        """``update_many`` with what rides on this claim's writes of the flow, if anything
        (``riders``, when the caller looked them up already)."""
        if riders is None and fence is not None:
            riders = self._riders.get((writes.flow_uuid, fence))
        if riders is None:
            self._retry(self._update_many, writes, fence)
            return
        state = _state_of(writes)
        ended, then = writes.ended, writes.then
        if riders.ending is not None and ended is None and state in _END_STATES:
            assert state is not None
            ended = riders.ending.end_with(state)
            if ended is not None and then is None and self.database is not None:
                then = riders.ending.in_transaction(state)
        # Built field by field: dataclasses.replace costs as much as the rest of this method.
        batch = FlowWrites(writes.flow_uuid, flow=writes.flow, state=writes.state,
                           atoms=writes.atoms, take=writes.take or riders.take,
                           started=riders.started if riders.take else writes.started,
                           ended=ended, then=then)
        self._retry(self._update_many, batch, fence)
        riders.take, riders.started = False, None
        if batch.ended is not None and riders.ending is not None:
            riders.ending.ended(batch.ended)
            self.forget_claim(writes.flow_uuid, fence)  # type: ignore[arg-type]

    def update_flow_details(self, flow_detail: FlowDetail, *,
                            fence: Fence | None = None) -> FlowDetail:
        """Write the flow's own row and insert or update each atom detail it carries.

        Atom details stored earlier but absent from ``flow_detail.atoms`` are left as they are,
        so passing a flow detail with no atoms writes the flow's row alone (engines write a
        state change with ``update_flow_state`` instead, which leaves the meta alone). Like
        ``update_atom_details`` this is on the engine's hot path, so nothing is copied: backends
        never keep a reference to what they are given.

        With ``fence`` nothing is written unless the flow detail records exactly that fence.

        Raises:
            NotFound: the flow detail was never saved through its logbook.
            SerializationError: the meta or an atom's value is not JSON.
            FencedOut: ``fence`` is not the flow detail's fence.
        """
        self._check_flow(flow_detail)
        if fence is not None and self._riders:
            self._write_riding(FlowWrites(flow_detail.uuid, flow=flow_detail), fence)
            return flow_detail
        self._retry(self._update_flow_details, flow_detail, fence)
        return flow_detail

    def update_flow_state(self, flow_uuid: str, state: FlowState | None, *,
                          fence: Fence | None = None) -> None:
        """Write the flow's state and nothing else (its meta and atoms stay as stored).

        What engines call on every flow state change: unlike ``update_flow_details`` it never
        re-encodes the meta. With ``fence`` nothing is written unless the flow detail records
        exactly that fence.

        Raises:
            NotFound: no such flow detail.
            FencedOut: ``fence`` is not the flow detail's fence.
        """
        if fence is not None and self._riders and state is not None:
            self._write_riding(FlowWrites(flow_uuid, state=state), fence)
            return
        self._retry(self._update_flow_state, flow_uuid, state, fence)

    def get_flow_details(self, flow_uuid: str, *, lazy: bool = False) -> FlowDetail:
        """Return the flow detail; with ``lazy`` its atoms are not loaded.

        Raises:
            NotFound: no such flow detail.
        """
        return self._retry(self._get_flow_details, flow_uuid, lazy)

    def get_flows_for_book(self, book_uuid: str, *, lazy: bool = False) -> Iterator[FlowDetail]:
        """The flow details of one logbook.

        Raises:
            NotFound: no such logbook.
        """
        return iter(self._retry(lambda: list(self._get_flows_for_book(book_uuid, lazy))))

    # -- atom details ----------------------------------------------------------------------

    def update_atom_details(self, atom_detail: AtomDetail, *,
                            fence: Fence | None = None) -> AtomDetail:
        """Write one atom detail's row (and nothing else); return the detail as written.

        This is the engine's hot path, so the detail is not copied: backends never keep a
        reference to it (the memory backend stores its own copy). With ``fence`` nothing is
        written unless the atom's flow detail records exactly that fence.

        Raises:
            NotFound: the atom detail was never saved through its flow detail.
            SerializationError: a value is not JSON; the message names the atom.
            FencedOut: ``fence`` is not the flow detail's fence.
        """
        check_atom_json(atom_detail)
        if fence is not None and self._riders:
            flow_uuid = self._riding_flow(atom_detail, fence)
            if flow_uuid is not None:
                self._write_riding(FlowWrites(flow_uuid, atoms=[atom_detail]), fence)
                return atom_detail
        self._retry(self._update_atom_details, atom_detail, fence)
        return atom_detail

    def get_atom_details(self, atom_uuid: str) -> AtomDetail:
        """Return one atom detail.

        Raises:
            NotFound: no such atom detail.
        """
        return self._retry(self._get_atom_details, atom_uuid)

    def get_atoms_for_flow(self, flow_uuid: str) -> Iterator[AtomDetail]:
        """The atom details of one flow, in the order they were added.

        Raises:
            NotFound: no such flow detail.
        """
        return iter(self._retry(lambda: list(self._get_atoms_for_flow(flow_uuid))))

    def clear_all(self) -> None:
        """Delete every logbook, flow and atom detail, and every job's history."""
        self._retry(self._clear_all)

    # -- job history -----------------------------------------------------------------------

    def record_claim(self, claim: Claim) -> None:
        """Record a claim of a job, by (job, fence): added when new, else replaced (a claim's
        end replaces the start ``take_flow`` recorded). One write."""
        if not claim.job_uuid or not claim.owner:
            raise ValueError("a claim needs a job uuid and an owner")
        saved = claim.copy()
        self._retry(lambda: self._record_claim(saved))

    def job_history(self, job_uuid: str) -> list[Claim]:
        """Every recorded claim of the job, oldest first (empty when none)."""
        return self._retry(lambda: list(self._job_history(job_uuid)))

    def find_jobs(self, prefix: str, *, limit: int = 10) -> list[str]:
        """Uuids of jobs with a recorded history whose uuid starts with ``prefix`` (at most
        ``limit``, sorted). Found through an index, not by reading every history."""
        if not _is_prefix(prefix):
            return []
        return self._retry(lambda: sorted(self._find_jobs(prefix.lower(), limit)))

    def find_logbooks(self, prefix: str, *, limit: int = 10) -> list[LogBook]:
        """Logbooks (lazy: no flows) whose uuid starts with ``prefix``, at most ``limit``."""
        if not _is_prefix(prefix):
            return []
        return self._retry(lambda: list(self._find_logbooks(prefix.lower(), limit)))

    def list_flows(self, *, state: FlowState | str | None = None,
                   since: dt.datetime | None = None, factory: str | None = None,
                   limit: int = 100) -> list[FlowSummary]:
        """Flows newest first, each with its job, state, last error, attempts and duration,
        from the flows' rows and their jobs' history (atoms are never read).

        Args:
            state: only flows in this state (``PENDING``: never ran).
            since: only flows whose jobs' claims started or ended at or after this time.
            factory: only flows built by this flow factory (the newest ``limit`` of them,
                however many newer flows other factories built).
            limit: at most this many flows.
        """
        if limit < 1:
            raise ValueError("limit must be >= 1")
        wanted = None if state is None else str(FlowState(str(state)))
        rows = self._flow_rows_of(wanted, since, factory, limit)
        claims = self._retry(lambda: list(self._claims_of_flows([fd.uuid for fd, _ in rows])))
        by_flow: dict[str, list[Claim]] = {}
        for claim in claims:
            if claim.flow_uuid is not None:
                by_flow.setdefault(claim.flow_uuid, []).append(claim)
        return [_summary(fd, book_uuid, by_flow.get(fd.uuid, [])) for fd, book_uuid in rows]

    def _flow_rows_of(self, state: str | None, since: dt.datetime | None, factory: str | None,
                      limit: int) -> list[tuple[FlowDetail, str]]:
        """The newest ``limit`` flow rows, of ``factory`` when given. The factory is in each
        flow's meta, which no backend indexes: rows are read newest first in growing batches
        until ``limit`` of them match or none are left."""
        if factory is None:
            return self._retry(lambda: list(self._flow_rows(state, since, limit)))
        def read(n: int) -> list[tuple[FlowDetail, str]]:
            return self._retry(lambda: list(self._flow_rows(state, since, n)))

        batch = limit * 4
        while True:
            rows = read(batch)
            matching = [(fd, book) for fd, book in rows
                        if _factory_of(fd) == factory][:limit]
            if len(matching) == limit or len(rows) < batch:
                return matching
            batch *= 4

    def claim_counts(self, since: dt.datetime) -> dict[str, int]:
        """Claims that ended at or after ``since``, by outcome, plus ``finished`` (consumed or
        trashed jobs) and ``failed`` (trashed, or consumed with a flow that did not
        succeed). One aggregate query."""
        counts: dict[str, int] = {FINISHED: 0, FAILED: 0}
        for outcome, flow_state, n in self._retry(lambda: list(self._claim_counts(since))):
            if outcome is None:
                continue
            counts[outcome] = counts.get(outcome, 0) + n
            if outcome in ("consumed", "trashed"):
                counts[FINISHED] += n
            if outcome == "trashed" or (outcome == "consumed"
                                        and flow_state != str(FlowState.SUCCESS)):
                counts[FAILED] += n
        return counts

    # -- shared machinery ------------------------------------------------------------------

    @staticmethod
    def _fenced_out(what: str, fence: Fence) -> errors.FencedOut:
        """The error backends raise for a refused fenced write or take."""
        return errors.FencedOut(f"{what}: fence {fence} is not the flow detail's fence "
                                "(a newer claim took it over)")

    def _check_flow(self, flow_detail: FlowDetail) -> None:
        _check_json(flow_detail.meta, "meta of flow", flow_detail.name)
        for atom_detail in flow_detail.atoms.values():
            check_atom_json(atom_detail)

    def _retry(self, operation: Callable[..., T], *args: Any) -> T:
        """Run an idempotent operation (called with ``args``), retrying ``StorageFailure``
        with doubling delays."""
        try:
            return operation(*args)
        except errors.StorageFailure as exc:
            if not self.retries:
                raise
            failure = exc
        delay = self.retry_delay
        for attempt in range(1, self.retries + 1):
            logger.warning("storage operation failed (%s); retry %d/%d in %.2fs",
                           failure, attempt, self.retries, delay)
            time.sleep(delay)
            delay *= 2
            try:
                return operation(*args)
            except errors.StorageFailure as exc:
                if attempt == self.retries:
                    raise
                failure = exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _riding_flow(self, atom_detail: AtomDetail, fence: Fence) -> str | None:
        """The flow of a claim with ``fence`` that has writes riding on its next one, if any
        (the atom's flow is not known here: only a claim's riders name it)."""
        with self._riders_lock:
            flows = [flow for flow, f in self._riders if f == fence]
        if len(flows) != 1:
            return None
        return flows[0]

    # -- primitives each backend implements ------------------------------------------------

    @abc.abstractmethod
    def _update_many(self, writes: FlowWrites, fence: Fence | None) -> None:
        """Make every write of ``writes`` in one transaction, in this order: the take (record
        ``fence`` if the flow records none or this one, else ``FencedOut``; add ``started``
        unless recorded), the flow's row (``flow`` and its atoms upserted, ``state``), the
        atoms' updates, the claim's end, then ``then`` (with the transaction's handle). With
        ``fence`` each write is fenced as its single counterpart is; any refusal
        (``FencedOut``, ``NotFound``), or an error from ``then``, writes nothing."""

    def _get_logbook_in(self, transaction: Any, book_uuid: str) -> LogBook:
        """``get_logbook`` (not lazy) inside ``transaction``; only backends with a
        ``database`` implement it."""
        raise NotImplementedError

    def _save_logbook_in(self, transaction: Any, book: LogBook, along: Any,
                         along_params: Mapping[str, Any] | None) -> Any:
        """``save_logbook_in``, ``book`` checked and stamped; only backends with a
        ``database`` implement it."""
        raise NotImplementedError

    def _saves_in_one_statement(self, book: LogBook) -> bool:
        """``saves_in_one_statement`` of a backend with a ``database``."""
        return False

    @abc.abstractmethod
    def _save_logbook(self, book: LogBook) -> None: ...

    @abc.abstractmethod
    def _get_logbook(self, book_uuid: str, lazy: bool) -> LogBook: ...

    @abc.abstractmethod
    def _get_logbooks(self, lazy: bool) -> Iterator[LogBook]: ...

    @abc.abstractmethod
    def _destroy_logbook(self, book_uuid: str) -> None: ...

    @abc.abstractmethod
    def _take_new_flow(self, flow_uuid: str, fence: Fence, claim: Claim | None) -> bool:
        """Atomically: record ``fence`` if the flow records none, and then add ``claim`` (if
        any, and not recorded yet) to the history; whether it did (False also for an unknown
        flow: ``_take_flow`` then says ``NotFound``)."""

    @abc.abstractmethod
    def _take_flow(self, flow_uuid: str, fence: Fence, claim: Claim | None) -> None:
        """Atomically: record ``fence`` (and add ``claim`` like ``_take_new_flow``, ending the
        job's earlier claims with no end like ``lost_claim(claim)`` does) unless the flow
        records a larger fence of the same job (then raise ``FencedOut``); ``NotFound`` for an
        unknown flow."""

    @abc.abstractmethod
    def _record_claim(self, claim: Claim) -> None:
        """Insert the claim, or replace the one recorded with its (job, fence), atomically."""

    @abc.abstractmethod
    def _job_history(self, job_uuid: str) -> Iterable[Claim]:
        """The job's claims ordered by fence."""

    @abc.abstractmethod
    def _find_jobs(self, prefix: str, limit: int) -> Iterable[str]:
        """Distinct job uuids in the history starting with ``prefix`` (a safe prefix)."""

    @abc.abstractmethod
    def _find_logbooks(self, prefix: str, limit: int) -> Iterable[LogBook]:
        """Lazy logbooks whose uuid starts with ``prefix`` (a safe prefix)."""

    @abc.abstractmethod
    def _flow_rows(self, state: str | None, since: dt.datetime | None,
                   limit: int) -> Iterable[tuple[FlowDetail, str]]:
        """Lazy flow details with their book's uuid, newest first: in ``state`` (``PENDING``
        also matches no state), with a claim started or ended since ``since``."""

    @abc.abstractmethod
    def _claims_of_flows(self, flow_uuids: list[str]) -> Iterable[Claim]:
        """The claims that ran these flows, ordered by start."""

    @abc.abstractmethod
    def _claim_counts(self, since: dt.datetime) -> Iterable[tuple[str | None, str | None, int]]:
        """(outcome, flow state, count) of claims that ended at or after ``since``."""

    @abc.abstractmethod
    def _update_flow_details(self, flow_detail: FlowDetail, fence: Fence | None) -> None:
        """Write the flow's row and upsert its atoms; with ``fence``, atomically only if the
        flow records that fence (else ``FencedOut``, nothing written)."""

    @abc.abstractmethod
    def _update_flow_state(self, flow_uuid: str, state: FlowState | None,
                           fence: Fence | None) -> None:
        """Set one flow's state in one write, fenced like ``_update_flow_details``."""

    @abc.abstractmethod
    def _get_flow_details(self, flow_uuid: str, lazy: bool) -> FlowDetail: ...

    @abc.abstractmethod
    def _get_flows_for_book(self, book_uuid: str, lazy: bool) -> Iterator[FlowDetail]: ...

    @abc.abstractmethod
    def _update_atom_details(self, atom_detail: AtomDetail, fence: Fence | None) -> None:
        """Write one atom's row; with ``fence``, in the same statement only if the atom's flow
        records that fence (else ``FencedOut``, nothing written)."""

    @abc.abstractmethod
    def _get_atom_details(self, atom_uuid: str) -> AtomDetail: ...

    @abc.abstractmethod
    def _get_atoms_for_flow(self, flow_uuid: str) -> Iterator[AtomDetail]: ...

    @abc.abstractmethod
    def _clear_all(self) -> None: ...


#: Outcomes of a job's earlier claims that a take replacing the fence ends as lost: none (the
#: conductor died), or consumed as recorded with the flow's SUCCESS (``take_flow(ending=)``)
#: while the job's consume never happened (a consumed job is never claimed again).
ENDED_BY_A_TAKE = (None, "consumed")

#: Reason recorded for a claim that a later claim found with no end.
UNENDED_REASON = "claim ended without an outcome (its conductor died or lost the board)"


def lost_claim(claim: Claim) -> dict[str, Any]:
    """What a take by ``claim`` writes over the job's earlier claims that recorded no end."""
    return {"outcome": "lost claim", "reason": UNENDED_REASON, "ended_at": claim.claimed_at}


def _is_prefix(prefix: str) -> bool:
    return bool(prefix) and all(c in _PREFIX_CHARS for c in prefix)


def _factory_of(fd: FlowDetail) -> str | None:
    """The name of the factory a flow detail records, if any."""
    factory = fd.meta.get("factory")
    name = factory.get("name") if isinstance(factory, dict) else None
    return name if isinstance(name, str) else None


def _summary(fd: FlowDetail, book_uuid: str, claims: list[Claim]) -> FlowSummary:
    """A flow's summary from its lazy detail and its claims (ordered by start)."""
    error = fd.meta.get("error")
    if not isinstance(error, str):
        error = next((c.reason for c in reversed(claims) if c.reason), None)
    ends = [c.ended_at for c in claims if c.ended_at is not None]
    return FlowSummary(
        flow_uuid=fd.uuid, name=fd.name, book_uuid=book_uuid,
        state=str(fd.state) if fd.state is not None else None,
        factory=_factory_of(fd), job_uuid=claims[-1].job_uuid if claims else None,
        attempts=len(claims), error=error,
        started_at=claims[0].claimed_at if claims else None,
        ended_at=max(ends) if ends else None)


class Connection:
    """A persistence backend seen through TaskFlow's ``get_connection()``: every attribute is
    the backend's, except ``close``, which ends only this view (the backend stays open, as a
    TaskFlow connection's close leaves its backend usable)."""

    def __init__(self, backend: Persistence) -> None:
        self.backend = backend

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    def close(self) -> None:
        """End this view; the backend stays open."""

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

