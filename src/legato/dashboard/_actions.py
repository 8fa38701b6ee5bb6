"""What the dashboard's actions add to ``legato.operations`` (the steps the command line
shares): the acting token's name as who acted, default reasons, a bounded look through the
trash, and posting only factories registered in the dashboard's process."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from legato import errors, operations
from legato.flow.factory import registered_factories, registered_factory
from legato.states import JobPriority

if TYPE_CHECKING:
    from legato.jobboard.base import Job, JobBoard
    from legato.persistence.base import Persistence

__all__ = ["cancel", "factories", "find_trashed", "post", "requeue", "requeue_many", "trash"]

#: Most trashed jobs one look through the trash reads (by id, or all with a reason).
_TRASH_SCAN = 100_000


def trash(
    board: JobBoard, backend: Persistence, job: Job, who: str, reason: str | None
) -> dict[str, Any]:
    """Trash a job nobody holds (see ``operations.trash``)."""
    return operations.trash(board, backend, job, who, reason=reason or f"trashed by {who}")


def cancel(
    board: JobBoard, backend: Persistence, job: Job, who: str, reason: str | None
) -> dict[str, Any]:
    """Cancel a job (see ``operations.cancel``)."""
    return operations.cancel(board, backend, job, who, reason=reason)


def find_trashed(board: JobBoard, uuid: str) -> Job:
    """The trashed job ``uuid``.

    Raises:
        NotFound: not in the trash.
    """
    found = operations.trashed(board, uuids=[uuid], limit=_TRASH_SCAN)
    if not found:
        raise errors.NotFound(f"no job {uuid} in the trash")
    return found[0]


def requeue(board: JobBoard, job: Job) -> dict[str, Any]:
    return operations.requeue(board, job)


def requeue_many(
    board: JobBoard, *, uuids: list[str] | None = None, reason: str | None = None
) -> list[dict[str, Any]]:
    """Requeue the trashed jobs named by ``uuids``, or (``uuids`` None) every trashed job
    whose reason contains ``reason`` (any case; all of them for an empty one)."""
    chosen = operations.trashed(board, uuids=uuids, reason=reason, limit=_TRASH_SCAN)
    return operations.requeue_all(board, chosen)


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
    spec = operations.job_spec(
        fn,
        kwargs=kwargs,
        store=store,
        name=name,
        priority=JobPriority.parse(priority.strip().upper() or "NORMAL"),
    )
    return operations.post(board, backend, spec)
