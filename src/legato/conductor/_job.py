"""Turning a claimed job into an engine, and deciding what becomes of the job.

Everything here is per job and board-free except for reading the job's book: the conductor loop
(``executor.py``) does the claiming, the events and the board calls.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import TYPE_CHECKING, Any

from legato import errors
from legato.persistence.models import Fence

if TYPE_CHECKING:
    from legato.conductor._history import ClaimLog
    from legato.jobboard.base import Job
    from legato.persistence.base import Persistence
    from legato.persistence.models import FlowDetail

__all__ = [
    "TOO_MANY_ATTEMPTS",
    "Action",
    "CannotRun",
    "Outcome",
    "fence_of",
    "load_flow_detail",
    "merged_store",
    "take_flow_detail",
]

#: Trash reason of a job that failed on ``max_attempts`` claims.
TOO_MANY_ATTEMPTS = "too many attempts"
#: Prefix of the abandon reason when persistence failed before the flow could start. Such jobs
#: are never trashed for their attempt count (a storage outage must not destroy jobs).
STORAGE_REASON = "storage unavailable"
#: Prefix of the reason when persistence's storage is damaged (``StorageCorrupted``).
CORRUPT_REASON = "storage corrupted"


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
        retryable: a failure that another claim may get past; counted towards ``max_attempts``.
    """

    action: Action
    reason: str | None = None
    delay: float | None = None
    retryable: bool = False


class CannotRun(Exception):
    """The job can never run as posted; it is trashed with ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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
        raise CannotRun("job has no logbook")
    return flow_uuid


def _choose(book_uuid: str, flows: list[FlowDetail], flow_uuid: str | None) -> FlowDetail:
    """The job's flow among its book's: the one named, else the only one."""
    if flow_uuid is not None:
        for flow_detail in flows:
            if flow_detail.uuid == flow_uuid:
                return flow_detail
        raise CannotRun(f"flow detail {flow_uuid} not in logbook {book_uuid}")
    if not flows:
        raise CannotRun(f"logbook {book_uuid} has no flow detail")
    if len(flows) > 1:
        raise CannotRun(f"logbook {book_uuid} has {len(flows)} flow details and the job "
                        "names no flow_uuid")
    return flows[0]


def load_flow_detail(job: Job, persistence: Persistence) -> FlowDetail:
    """The flow detail the job runs: ``details["flow_uuid"]``, else the book's only one.

    Raises:
        CannotRun: malformed details, no book, unknown flow uuid, no or several flow details.
        StorageFailure: persistence cannot be reached.
    """
    flow_uuid = _job_flow_uuid(job)
    assert job.book_uuid is not None
    try:
        book = persistence.get_logbook(job.book_uuid)
    except errors.NotFound:
        raise CannotRun(f"logbook {job.book_uuid} not found") from None
    return _choose(book.uuid, list(book.flows.values()), flow_uuid)


def fence_of(job: Job) -> Fence | None:
    """The fence the job's claim gives its engine's writes (None for a board without fences)."""
    return None if job.fence is None else Fence(job.uuid, job.fence)


def take_flow_detail(job: Job, persistence: Persistence, fence: Fence | None,
                     history: ClaimLog | None = None) -> FlowDetail:
    """The job's flow detail (see ``load_flow_detail``), taken with ``fence``, as of the take:
    with ``history``, the claim's start is recorded with the take (same transaction).
    a write by an earlier owner either landed before the take, and is in what is returned, or
    comes after it, and is refused. The flow is read once when it was never taken (no fenced
    writer can have changed it since); after a take that replaced a fence it is read again.

    Raises:
        CannotRun, StorageFailure: see ``load_flow_detail``.
        FencedOut: the flow detail records a newer claim of this job (this claim is stale).
    """
    flow_detail = load_flow_detail(job, persistence)
    if fence is None:
        return flow_detail
    claim = history.start(flow_detail.uuid) if history is not None else None
    try:
        if persistence.take_flow(flow_detail.uuid, fence, claim=claim):
            return flow_detail
        return persistence.get_flow_details(flow_detail.uuid)
    except errors.NotFound:
        raise CannotRun(f"flow detail {flow_detail.uuid} not found") from None


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
    """Raise ``CannotRun`` when the flow detail records no usable factory."""
    factory = flow_detail.meta.get("factory")
    if not isinstance(factory, dict) or not isinstance(factory.get("name"), str):
        raise CannotRun(f"flow detail {flow_detail.uuid} records no flow factory")


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
