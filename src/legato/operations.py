"""Operators' actions on jobs — trash, cancel, requeue and post — shared by the command line
(``legato jobs trash|cancel|requeue``, ``legato post``) and the dashboard.

Each action goes through the board's and persistence's public calls, and what ends a job's
claim (trash, cancel of a waiting job) is recorded in the job's history under who acted. The
callers only parse their input, name the actor and print or render the answer.

Posting is two steps: ``job_spec`` checks everything that needs no service (the store, the
name, the factory's flow and the inputs it requires), so bad input is refused before any
board is opened; ``post`` then records the logbook and posts the job.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from legato import _tracing, errors
from legato.flow.factory import factory_name
from legato.jobboard.base import cancel_reason, check_details, refuse_nul
from legato.persistence.models import Claim, FlowDetail, LogBook, utcnow
from legato.states import JobPriority

if TYPE_CHECKING:
    from legato.flow.patterns import Flow
    from legato.jobboard.base import Job, JobBoard
    from legato.persistence.base import Persistence

__all__ = [
    "TRASH_CLAIM_TTL",
    "JobSpec",
    "cancel",
    "job_spec",
    "post",
    "requeue",
    "requeue_all",
    "trash",
    "trashed",
]

#: Lease taken on a job only to trash it.
TRASH_CLAIM_TTL = 30.0


def trash(
    board: JobBoard, backend: Persistence, job: Job, who: str, *, reason: str
) -> dict[str, Any]:
    """Trash a job nobody holds: claim it briefly as ``who``, trash it, and record that claim
    in its history. A job another owner holds is refused: taking a live claim away would let
    two parties work on one job.

    Raises:
        UnclaimableJob: the job is claimed (the message names the owner).
    """
    try:
        claimed = board.claim(job, who, ttl=TRASH_CLAIM_TTL)
    except errors.UnclaimableJob as exc:
        holder = exc.owner or board.find_owner(job)
        why = f"it is claimed by {holder}" if holder else "it cannot be claimed now"
        raise errors.UnclaimableJob(
            f"job {job.uuid} not trashed: {why}; cancel it, stop that conductor or retry later",
            job_uuid=job.uuid,
            owner=holder,
        ) from None
    claimed_at = utcnow()
    board.trash(claimed, who, reason=reason)
    _record(backend, job, who, fence=claimed.fence, at=claimed_at, reason=reason)
    return {"uuid": job.uuid, "trashed": True, "reason": reason}


def cancel(
    board: JobBoard, backend: Persistence, job: Job, who: str, *, reason: str | None = None
) -> dict[str, Any]:
    """Cancel a job: one with no live claim is trashed at once (and the history says who
    cancelled it); a running one gets a cancel mark its conductor reads at its next lease
    renewal, then it stops the flow at the next step and trashes the job (recording it).

    Returns:
        ``{"uuid", "trashed", "owner"}``: ``owner`` is who still holds it when not trashed.
    """
    asked_at = utcnow()
    trashed_now = board.cancel(job, who, reason=reason)
    holder = None
    if trashed_now:
        _record(
            backend,
            job,
            who,
            fence=job.fence,
            at=asked_at,
            reason=cancel_reason(who, reason, asked_at.timestamp()),
        )
    else:
        with contextlib.suppress(errors.NotFound):  # its conductor was quick
            holder = board.find_owner(job)
    return {"uuid": job.uuid, "trashed": trashed_now, "owner": holder}


def _record(
    backend: Persistence, job: Job, who: str, *, fence: int | None, at: Any, reason: str
) -> None:
    backend.record_claim(
        Claim(
            job_uuid=job.uuid,
            fence=fence or 0,
            owner=who,
            claimed_at=at,
            job_name=job.name,
            book_uuid=job.book_uuid,
            ended_at=utcnow(),
            outcome="trashed",
            reason=reason,
        )
    )


def requeue(board: JobBoard, job: Job) -> dict[str, Any]:
    """Post a trashed job again (same name, logbook, details and priority; a new uuid) and
    take it out of the trash in the same step.

    Raises:
        NotFound: it is no longer in the trash (requeued meanwhile).
    """
    new = board.requeue(job)
    return {"uuid": new.uuid, "requeued_from": job.uuid, "name": new.name}


def trashed(
    board: JobBoard,
    *,
    uuids: Iterable[str] | None = None,
    reason: str | None = None,
    limit: int | None = None,
) -> list[Job]:
    """Trashed jobs, newest first: those named by ``uuids``, or (``uuids`` None) those whose
    reason contains ``reason`` (any case; every one for an empty or None ``reason``). Looks at
    the newest ``limit`` trashed jobs (None: all)."""
    wanted = set(uuids) if uuids is not None else None
    text = (reason or "").casefold()
    return [
        job
        for job in itertools.islice(board.iter_trash(), limit)
        if (job.uuid in wanted if wanted is not None else text in (job.reason or "").casefold())
    ]


def requeue_all(board: JobBoard, jobs: Iterable[Job]) -> list[dict[str, Any]]:
    """Requeue each trashed job (see ``requeue``), skipping those requeued meanwhile."""
    done = []
    for job in jobs:
        with contextlib.suppress(errors.NotFound):
            done.append(requeue(board, job))
    return done


# -- posting ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """A job checked and ready to post (``job_spec`` builds it)."""

    factory: Callable[..., Flow]
    name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    store: dict[str, Any] = dataclasses.field(default_factory=dict)
    priority: JobPriority = JobPriority.NORMAL
    delay: float | None = None
    #: A trace context to continue (``{"traceparent": ..., "tracestate": ...}``), when the
    #: poster was handed one rather than running inside a span.
    trace: dict[str, str] | None = None


def job_spec(
    factory: Callable[..., Flow],
    *,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    store: dict[str, Any] | None = None,
    name: str | None = None,
    priority: JobPriority = JobPriority.NORMAL,
    delay: float | None = None,
) -> JobSpec:
    """Check a job before anything is written: the store (a JSON object within the board's
    limits, no NUL), the name (default the factory's), and the flow the factory builds with
    ``args`` and ``kwargs``, whose required inputs the store must give.

    Raises:
        ValueError: a store that is no object or too large, a NUL, a factory that cannot be
            called with these arguments.
        TypeError: the factory did not return a flow.
        MissingDependencies: naming each atom and the inputs the store lacks for it.
    """
    label = factory_name(factory)
    if store is not None and not isinstance(store, dict):
        raise ValueError("store must be a JSON object")
    inputs = dict(store or {})
    job_name = (name or "").strip() or label
    if inputs:  # what the board would refuse is said first, before what the flow lacks
        check_details({"store": inputs})
        refuse_nul(job_name, None, {"store": inputs})
    else:
        refuse_nul(job_name, None, None)
    kwargs = dict(kwargs or {})
    try:
        flow = factory(*args, **kwargs)
    except TypeError as exc:
        raise ValueError(f"flow factory {label} cannot be called so: {exc}") from None
    _check_inputs(label, flow, inputs)
    return JobSpec(factory, job_name, tuple(args), kwargs, inputs, priority, delay)


def _check_inputs(label: str, flow: Any, inputs: dict[str, Any]) -> None:
    from legato.flow.patterns import Flow

    if not isinstance(flow, Flow):
        raise TypeError(f"factory {label} returned {type(flow).__name__}, not a flow")
    missing = flow.requires - inputs.keys()
    if not missing:
        return
    by_atom: dict[str, list[str]] = {}
    for atom in flow.iter_atoms():
        names = sorted(atom.requires & missing)
        if names:
            by_atom[atom.name] = names
    raise errors.MissingDependencies(by_atom)


def post(board: JobBoard, backend: Persistence, spec: JobSpec) -> dict[str, Any]:
    """Record ``spec``'s flow factory in a new logbook and post a job for it; the logbook
    names its job (``meta["job_uuid"]``, ``meta["job_name"]``). A job that cannot be posted
    leaves no logbook behind.

    Returns:
        ``{"uuid", "name", "book_uuid", "flow_uuid", "priority"}``.
    """
    from legato.engine import record_factory

    book = LogBook(spec.name)
    flow_detail = FlowDetail(spec.name)
    book.add(flow_detail)
    # The factory rides on the book's only write, made with the post's (one transaction when
    # board and persistence share a database); a post that fails leaves no book.
    record_factory(flow_detail, spec.factory, spec.args, spec.kwargs)
    details: dict[str, Any] = {"flow_uuid": flow_detail.uuid}
    if spec.store:
        details["store"] = spec.store
    if spec.trace:
        details[_tracing.TRACE_KEY] = dict(spec.trace)
    job = board.post(spec.name, book, details, spec.priority, delay=spec.delay,
                     save_book_in=backend)
    return {
        "uuid": job.uuid,
        "name": job.name,
        "book_uuid": book.uuid,
        "flow_uuid": flow_detail.uuid,
        "priority": spec.priority.name,
    }
