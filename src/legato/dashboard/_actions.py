"""What the dashboard's actions do: trash, cancel, requeue and post, each recorded in the
job's history under the acting token's name, through the board's and persistence's public
calls (as ``legato jobs trash|cancel|requeue`` and ``legato post`` do)."""

from __future__ import annotations

import contextlib
import itertools
from typing import TYPE_CHECKING, Any

from legato import errors
from legato.flow.factory import registered_factories, registered_factory
from legato.jobboard.base import cancel_reason, check_details, refuse_nul
from legato.persistence.models import Claim, FlowDetail, LogBook, utcnow
from legato.states import JobPriority

if TYPE_CHECKING:
    from legato.jobboard.base import Job, JobBoard
    from legato.persistence.base import Persistence

__all__ = ["cancel", "factories", "post", "requeue", "requeue_many", "trash"]

#: Lease the dashboard takes on a job only to trash it.
_TRASH_CLAIM_TTL = 30.0
#: Most trashed jobs one "requeue all with this reason" looks at.
_REQUEUE_SCAN = 100_000


def trash(
    board: JobBoard, backend: Persistence, job: Job, who: str, reason: str | None
) -> dict[str, Any]:
    """Trash an unclaimed job (claim it briefly, then trash it); a claimed job is refused.

    Raises:
        UnclaimableJob: the job is claimed (the message names the owner).
    """
    reason = reason or f"trashed by {who}"
    try:
        claimed = board.claim(job, who, ttl=_TRASH_CLAIM_TTL)
    except errors.UnclaimableJob as exc:
        holder = exc.owner or board.find_owner(job)
        raise errors.UnclaimableJob(
            f"job {job.uuid} not trashed: it is claimed by {holder or 'someone'}; cancel it "
            "instead",
            job_uuid=job.uuid,
            owner=holder,
        ) from None
    claimed_at = utcnow()
    board.trash(claimed, who, reason=reason)
    backend.record_claim(
        Claim(
            job_uuid=job.uuid,
            fence=claimed.fence or 0,
            owner=who,
            claimed_at=claimed_at,
            job_name=job.name,
            book_uuid=job.book_uuid,
            ended_at=utcnow(),
            outcome="trashed",
            reason=reason,
        )
    )
    return {"uuid": job.uuid, "trashed": True, "reason": reason}


def cancel(
    board: JobBoard, backend: Persistence, job: Job, who: str, reason: str | None
) -> dict[str, Any]:
    """Cancel a job: trashed at once when unclaimed, else its conductor stops it at the next
    step and trashes it."""
    asked_at = utcnow()
    trashed = board.cancel(job, who, reason=reason)
    holder = None
    if trashed:
        backend.record_claim(
            Claim(
                job_uuid=job.uuid,
                fence=job.fence or 0,
                owner=who,
                claimed_at=asked_at,
                job_name=job.name,
                book_uuid=job.book_uuid,
                ended_at=utcnow(),
                outcome="trashed",
                reason=cancel_reason(who, reason, asked_at.timestamp()),
            )
        )
    else:
        with contextlib.suppress(errors.NotFound):
            holder = board.find_owner(job)
    return {"uuid": job.uuid, "trashed": trashed, "owner": holder}


def find_trashed(board: JobBoard, uuid: str) -> Job:
    """The trashed job ``uuid``.

    Raises:
        NotFound: not in the trash.
    """
    for job in itertools.islice(board.iter_trash(), _REQUEUE_SCAN):
        if job.uuid == uuid:
            return job
    raise errors.NotFound(f"no job {uuid} in the trash")


def requeue(board: JobBoard, job: Job) -> dict[str, Any]:
    """Post a trashed job again (a new uuid) and take it out of the trash."""
    new = board.requeue(job)
    return {"uuid": new.uuid, "requeued_from": job.uuid, "name": new.name}


def requeue_many(
    board: JobBoard, *, uuids: list[str] | None = None, reason: str | None = None
) -> list[dict[str, Any]]:
    """Requeue the trashed jobs named by ``uuids``, or (``uuids`` None) every trashed job
    whose reason contains ``reason`` (any case; all of them for an empty one)."""
    wanted = set(uuids or ())
    text = (reason or "").casefold()
    chosen = [
        job
        for job in itertools.islice(board.iter_trash(), _REQUEUE_SCAN)
        if (job.uuid in wanted if uuids is not None else text in (job.reason or "").casefold())
    ]
    done = []
    for job in chosen:
        with contextlib.suppress(errors.NotFound):  # requeued meanwhile by someone else
            done.append(requeue(board, job))
    return done


def factories() -> list[str]:
    """Names of the flow factories registered in this process, which ``post`` may use."""
    return sorted(registered_factories())


def post(
    board: JobBoard,
    backend: Persistence,
    *,
    factory: str,
    store: dict[str, Any],
    name: str | None = None,
    priority: str = "NORMAL",
    kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Post a job running the registered ``factory``'s flow (called with ``kwargs``) with
    ``store`` as its inputs.

    Raises:
        ValueError: an unregistered factory, a bad priority or store.
        MissingDependencies: the flow requires inputs ``store`` lacks.
    """
    fn = registered_factory(factory)
    if fn is None:
        raise ValueError(
            f"flow factory {factory!r} is not registered in the dashboard "
            "(start it with --import MODULE)"
        )
    if not isinstance(store, dict):
        raise ValueError("store must be a JSON object")
    kwargs = dict(kwargs or {})
    try:
        flow = fn(**kwargs)
    except TypeError as exc:
        raise ValueError(f"flow factory {factory!r} cannot be called so: {exc}") from None
    job_priority = JobPriority.parse(priority.strip().upper() or "NORMAL")
    job_name = (name or "").strip() or factory
    check_details({"store": store})
    refuse_nul(job_name, None, {"store": store})
    missing = flow.requires - store.keys()
    if missing:
        raise errors.MissingDependencies({factory: sorted(missing)})
    book = LogBook(job_name)
    flow_detail = FlowDetail(job_name)
    book.add(flow_detail)
    backend.save_logbook(book)
    from legato.engine import save_factory_details

    try:
        save_factory_details(flow_detail, fn, (), kwargs, persistence=backend)
        details: dict[str, Any] = {"flow_uuid": flow_detail.uuid}
        if store:
            details["store"] = store
        job = board.post(job_name, book, details, job_priority)
    except BaseException:
        with contextlib.suppress(errors.LegatoError):
            backend.destroy_logbook(book.uuid)
        raise
    book.meta.update(job_uuid=job.uuid, job_name=job.name)
    backend.save_logbook(LogBook(book.name, book.uuid, book.created_at, meta=book.meta))
    return {
        "uuid": job.uuid,
        "name": job.name,
        "book_uuid": book.uuid,
        "priority": job_priority.name,
    }
