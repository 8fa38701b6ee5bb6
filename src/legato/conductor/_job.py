"""Turning a claimed job into an engine, and deciding what becomes of the job.

Everything here is per job and board-free except for reading the job's book: the conductor loop
(``executor.py``) does the claiming, the events and the board calls.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from legato import errors
from legato.persistence.models import Fence

if TYPE_CHECKING:
    from legato.jobboard.base import Job
    from legato.persistence.base import Persistence
    from legato.persistence.models import Claim, FlowDetail
    from legato.states import FlowState

__all__ = [
    "CONSUMED",
    "TOO_MANY_ATTEMPTS",
    "Action",
    "CannotRun",
    "Cause",
    "NotHere",
    "Outcome",
    "Tally",
    "exhausted",
    "fence_of",
    "load_flow_detail",
    "merged_store",
    "storage_down",
    "take_flow_detail",
]

#: Trash reason of a job that failed on ``max_attempts`` claims.
TOO_MANY_ATTEMPTS = "too many attempts"
#: Prefix of the reason when persistence failed before the flow could start (``Cause.STORAGE``).
STORAGE_REASON = "storage unavailable"
#: Prefix of the reason when persistence's storage is damaged (``Cause.CORRUPT``).
CORRUPT_REASON = "storage corrupted"


class Cause(enum.Enum):
    """Why a job was not consumed: decides whether the claim counts towards ``max_attempts``,
    whether the job may be trashed at once, and whether the conductor looks misconfigured."""

    #: A failure another claim may get past (the flow raised ``ExecutionFailure``, the factory
    #: raised, the engine suspended): abandoned with back-off, counted.
    FAILED = "failed"
    #: The job cannot run on *this* conductor (factory refused or not importable here, book or
    #: flow detail missing from this persistence, unknown engine kind): abandoned with
    #: back-off and counted, and a streak of them pauses the conductor.
    NOT_HERE = "not here"
    #: Persistence could not be reached before the flow started: the job is released
    #: (uncounted: its ``attempts`` do not grow, so no claimant ever trashes it for this) and
    #: the conductor waits, with back-off, before claiming again.
    STORAGE = "storage unavailable"
    #: Persistence failed while the flow ran (the engine raised ``StorageFailure``): like
    #: ``FAILED`` (the seed's no-consume rule), counted as a storage error in the metrics.
    STORAGE_MID_RUN = "storage failed mid-run"
    #: Persistence's storage is damaged: the job is released uncounted, the conductor stops.
    CORRUPT = "storage corrupted"
    #: The job can never run anywhere (its details are not a valid job document): trashed at
    #: once.
    INVALID = "invalid"
    #: Claimed ``max_attempts`` times without finishing: trashed.
    EXHAUSTED = "too many attempts"
    #: The claim was lost under the run (renewal refused or lapsed, a newer claim's fence,
    #: another owner at the finishing call): abandoned, no delay; "lost claim" in the history.
    LOST = "claim lost"
    #: ``stop()`` came while the job ran: abandoned, no delay; "stopped" in the history.
    STOPPED = "conductor stopping"
    #: The run could not go on for the conductor's sake (the executor refused the job, the
    #: board failed the finishing call): abandoned, no delay.
    INTERRUPTED = "interrupted"
    #: Cancelled by an operator (``JobBoard.cancel``): trashed with who cancelled and why.
    CANCELLED = "cancelled"


#: Causes counted towards ``max_attempts`` (and tallied in the job's reason).
COUNTED = frozenset({Cause.FAILED, Cause.NOT_HERE, Cause.STORAGE_MID_RUN})
#: Causes that are persistence failures (the ``storage_errors`` metric).
STORAGE_CAUSES = frozenset({Cause.STORAGE, Cause.STORAGE_MID_RUN, Cause.CORRUPT})


class Action(enum.Enum):
    """What the conductor does with a job once its engine is done with it."""

    CONSUME = "consume"
    ABANDON = "abandon"
    TRASH = "trash"
    #: Hand the job back uncounted (``JobBoard.release``): the conductor, not the job, failed.
    RELEASE = "release"


@dataclasses.dataclass(frozen=True)
class Outcome:
    """The decision for one job.

    Attributes:
        action: consume, abandon or trash.
        reason: why (for abandon and trash).
        delay: seconds before the job may be claimed again (abandon only); None means the
            conductor's back-off for the job's attempt count.
        cause: why the job was not consumed (None when it was).
    """

    action: Action
    reason: str | None = None
    delay: float | None = None
    cause: Cause | None = None

    @property
    def retryable(self) -> bool:
        """A failure another claim may get past; counted towards ``max_attempts``."""
        return self.cause in COUNTED

    @property
    def storage_error(self) -> bool:
        """Persistence failed (unreachable, or its storage damaged)."""
        return self.cause in STORAGE_CAUSES


#: The outcome of a job whose flow ran to its end (frozen: one for every such job).
CONSUMED = Outcome(Action.CONSUME)


def exhausted(tally: Tally) -> Outcome:
    """Trash: too many attempts, with every distinct reason collected."""
    text = tally.text()
    return Outcome(Action.TRASH, f"{TOO_MANY_ATTEMPTS}: {text}" if text else TOO_MANY_ATTEMPTS,
                   cause=Cause.EXHAUSTED)


def storage_down(exc: errors.StorageFailure) -> Outcome:
    """Persistence could not be reached before the flow started: no fault of the job's. It is
    released, so the claim does not count in its ``attempts`` and no claimant ever trashes it
    for an outage; the conductor waits before claiming again."""
    return Outcome(Action.RELEASE, f"{STORAGE_REASON}: {exc}", cause=Cause.STORAGE)


class CannotRun(Exception):
    """The job can never run as posted (its details are not a valid job document); it is
    trashed at once with ``reason``."""

    cause = Cause.INVALID

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotHere(CannotRun):
    """The job cannot run on this conductor (its book or flow detail is not in this
    conductor's persistence...); another conductor may run it, so it is abandoned, counted."""

    cause = Cause.NOT_HERE


def _job_flow_uuid(job: Job) -> str | None:
    """Check the job's details; the flow uuid they name, if any.

    Raises:
        CannotRun: malformed details.
    """
    details = job.details
    if not isinstance(details, dict):
        raise CannotRun("malformed details: not a JSON object")
    flow_uuid = details.get("flow_uuid")
    if flow_uuid is not None and not isinstance(flow_uuid, str):
        raise CannotRun("malformed details: flow_uuid must be a string")
    store = details.get("store")
    if store is not None and not isinstance(store, dict):
        raise CannotRun("malformed details: store must be a JSON object")
    if job.book_uuid is None:
        raise CannotRun("malformed job: it names no logbook")
    return flow_uuid


def _choose(book_uuid: str, flows: list[FlowDetail], flow_uuid: str | None) -> FlowDetail:
    """The job's flow among its book's: the one named, else the only one."""
    if flow_uuid is not None:
        for flow_detail in flows:
            if flow_detail.uuid == flow_uuid:
                return flow_detail
        raise NotHere(f"flow detail not found: {flow_uuid} is not in logbook {book_uuid}")
    if not flows:
        raise NotHere(f"flow detail not found: logbook {book_uuid} has no flow detail")
    if len(flows) > 1:
        raise NotHere(f"flow detail not chosen: logbook {book_uuid} has {len(flows)} flow "
                      "details and the job names no flow_uuid")
    return flows[0]


def load_flow_detail(job: Job, persistence: Persistence) -> FlowDetail:
    """The flow detail the job runs: ``details["flow_uuid"]``, else the book's only one.

    Raises:
        CannotRun: malformed details, or the job names no book.
        NotHere: no such book or flow uuid here, or no or several flow details.
        StorageFailure: persistence cannot be reached.
    """
    flow_uuid = _job_flow_uuid(job)
    assert job.book_uuid is not None
    book = job.loaded_book
    if book is not None and job.board.shares_database(persistence):
        # Read with the claim, in its transaction, from this very database.
        return _choose(book.uuid, list(book.flows.values()), flow_uuid)
    try:
        book = persistence.get_logbook(job.book_uuid)
    except errors.NotFound:
        raise NotHere(f"logbook not found: {job.book_uuid} is not in this conductor's "
                      "persistence") from None
    return _choose(book.uuid, list(book.flows.values()), flow_uuid)


def fence_of(job: Job) -> Fence | None:
    """The fence the job's claim gives its engine's writes (None for a board without fences)."""
    return None if job.fence is None else Fence(job.uuid, job.fence)


class ClaimStart(Protocol):
    """Gives the claim's start to record with the take, and its end to record with the flow's
    end state (``_history.ClaimLog``, which builds on this module)."""

    def start(self, flow_uuid: str) -> Claim: ...

    def end_with(self, state: FlowState) -> Claim | None: ...

    def in_transaction(self, state: FlowState) -> Callable[[Any], None] | None: ...

    def ended(self, claim: Claim) -> None: ...


def take_flow_detail(job: Job, persistence: Persistence, fence: Fence | None,
                     history: ClaimStart | None = None) -> FlowDetail:
    """The job's flow detail (see ``load_flow_detail``), taken with ``fence``, as of the take:
    with ``history``, the claim's start is recorded with the take (same transaction), and its
    end may ride on the write of the flow's end state.
    A write by an earlier owner either landed before the take, and is in what is returned, or
    comes after it, and is refused. A flow read with no fence recorded (a job's first claim)
    is taken with its engine's first write (``take_flow(defer=True)``: no writer can have
    changed it since, and if one took it meanwhile that write is refused); after a take that
    replaced a fence it is read again.

    Raises:
        CannotRun, NotHere, StorageFailure: see ``load_flow_detail``.
        FencedOut: the flow detail records a newer claim of this job (this claim is stale).
    """
    flow_detail = load_flow_detail(job, persistence)
    if fence is None:
        return flow_detail
    claim = history.start(flow_detail.uuid) if history is not None else None
    try:
        if persistence.take_flow(flow_detail.uuid, fence, claim=claim,
                                 defer=flow_detail.fence is None and history is not None,
                                 ending=history):
            return flow_detail
        return persistence.get_flow_details(flow_detail.uuid)
    except errors.NotFound:
        raise NotHere(f"flow detail not found: {flow_detail.uuid}") from None


def merged_store(job: Job, flow_detail: FlowDetail) -> dict[str, Any]:
    """``flow_detail.meta["store"]`` updated with ``job.details["store"]`` (the job wins)."""
    store: dict[str, Any] = {}
    meta_store = flow_detail.meta.get("store")
    if isinstance(meta_store, dict):
        store.update(meta_store)
    job_store = job.details.get("store")
    if isinstance(job_store, dict):
        store.update(job_store)
    return store


def check_factory(flow_detail: FlowDetail) -> None:
    """Raise ``NotHere`` when the flow detail records no usable factory."""
    factory = flow_detail.meta.get("factory")
    if not isinstance(factory, dict) or not isinstance(factory.get("name"), str):
        raise NotHere(f"factory not recorded: flow detail {flow_detail.uuid} records no flow "
                      "factory")


def found(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """``exc`` if it is a ``kind``, or the first ``kind`` a ``WrappedFailure`` holds; else
    None."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, errors.WrappedFailure):
        for failure in exc:
            if failure.check(kind) is not None and isinstance(failure.exception, kind):
                return failure.exception
    return None


def is_no_consume(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> bool:
    """Whether ``exc`` (or every failure a ``WrappedFailure`` holds) is one of ``kinds``."""
    if isinstance(exc, kinds):
        return True
    if isinstance(exc, errors.WrappedFailure):
        return len(exc) > 0 and all(f.check(*kinds) is not None for f in exc)
    return False


#: Opens the tally kept at the end of an abandoned job's reason (see ``Tally``).
TALLY_OPEN = " [so far: "
#: Distinct (reason, conductor) pairs a tally keeps; later ones are counted as "other".
MAX_TALLY = 8
#: Longest "last reason" kept before the tally (in characters).
MAX_LAST_REASON = 1000
#: Follows a count in a tally (the multiplication sign).
TIMES = "\N{MULTIPLICATION SIGN}"
_ENTRY = re.compile(r"^(?P<label>.+) on (?P<where>\S+) \((?P<count>\d+)" + TIMES + r"\)$")
_UNSAFE = re.compile(r"[\[\](),\s" + TIMES + "]+")
_OTHER = ("other reasons", "-")


class Tally:
    """Every distinct reason a job was abandoned for, each with the conductor (``name@host``)
    that met it and how often.

    The tally travels with the job in the reason its board keeps (the one text every board
    stores through ``abandon`` and ``release``), so it survives conductors coming and going:
    ``"<last reason> [so far: factory refused on a@h1 (3×), logbook not found on b@h2 (2×)]"``.
    Only the claim's holder writes a job's reason (abandon is fenced), so reading the tally
    from the claimed job and writing it back with the abandon never loses a count. At
    ``max_attempts`` the job is trashed with ``"too many attempts: <tally>"``.
    """  # noqa: RUF002

    def __init__(self, counts: dict[tuple[str, str], int] | None = None) -> None:
        self.counts: dict[tuple[str, str], int] = dict(counts or {})

    @classmethod
    def of(cls, reason: str | None) -> Tally:
        """The tally at the end of a stored reason (empty when there is none)."""
        tally = cls()
        if not reason or not reason.endswith("]"):
            return tally
        at = reason.rfind(TALLY_OPEN)
        if at < 0:
            return tally
        for item in reason[at + len(TALLY_OPEN):-1].split(", "):
            match = _ENTRY.match(item)
            if match is not None and len(tally.counts) < MAX_TALLY + 1:
                key = (match["label"], match["where"])
                tally.counts[key] = tally.counts.get(key, 0) + int(match["count"])
        return tally

    @staticmethod
    def last(reason: str | None) -> str | None:
        """A stored reason without its tally."""
        if not reason or not reason.endswith("]"):
            return reason
        at = reason.rfind(TALLY_OPEN)
        return reason[:at] if at >= 0 else reason

    def add(self, reason: str | None, owner: str) -> None:
        """Count one more claim that ended for ``reason`` on conductor ``owner``."""
        key = (label_of(reason), where_of(owner))
        if key not in self.counts and len(self.counts) >= MAX_TALLY:
            key = _OTHER
        self.counts[key] = self.counts.get(key, 0) + 1

    def text(self) -> str:
        """``"factory refused on a@h1 (3×), logbook not found on b@h2 (2×)"``."""  # noqa: RUF002
        return ", ".join(f"{label} on {where} ({count}{TIMES})"
                         for (label, where), count in self.counts.items())

    def reason(self, last: str | None) -> str | None:
        """The reason to store: ``last`` (cut short) followed by the tally."""
        if not self.counts:
            return last
        head = (last or "")[:MAX_LAST_REASON]
        return f"{head}{TALLY_OPEN}{self.text()}]"


def label_of(reason: str | None) -> str:
    """The short kind of a reason (what comes before its first colon), safe in a tally."""
    head = (reason or "").partition(":")[0]
    label = _UNSAFE.sub(" ", head).strip()[:60].strip()
    return label or "failed"


def where_of(owner: str) -> str:
    """``name@host`` of a claim owner ``name@host:pid[/token]``, safe in a tally."""
    name, at, host = owner.rpartition("@")
    where = f"{name}{at}{host.partition(':')[0]}" if at else owner.partition(":")[0]
    return _UNSAFE.sub("_", where) or "?"
