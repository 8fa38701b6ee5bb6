"""Finding a job (or a logbook) by uuid or unique prefix, wherever it is now: on the board,
in the trash, or, once consumed, in the job history persistence keeps."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING

from legato import errors

if TYPE_CHECKING:
    from legato.jobboard.base import Job, JobBoard
    from legato.persistence.base import Persistence
    from legato.persistence.models import Claim, LogBook

__all__ = ["Ambiguous", "Found", "ambiguous", "find_anywhere", "find_logbooks"]

#: Candidates named in an "ambiguous" error.
_SHOWN = 5


@dataclasses.dataclass
class Found:
    """A job found by ``find_anywhere``.

    Attributes:
        uuid: the job's uuid.
        job: the job on the board or in the trash (None once consumed).
        trashed: whether it is in the trash.
        history: its recorded claims, oldest first.
    """

    uuid: str
    job: Job | None
    trashed: bool
    history: list[Claim]

    @property
    def name(self) -> str | None:
        if self.job is not None:
            return str(self.job.name)
        return next((c.job_name for c in reversed(self.history) if c.job_name), None)

    @property
    def book_uuid(self) -> str | None:
        if self.job is not None:
            book_uuid: str | None = self.job.book_uuid
            return book_uuid
        return next((c.book_uuid for c in reversed(self.history) if c.book_uuid), None)

    @property
    def state(self) -> str:
        """The job's state on the board, TRASHED, or CONSUMED (gone from the board)."""
        if self.trashed:
            return "TRASHED"
        if self.job is not None:
            return str(self.job.record.effective_state(self.job.board.clock()))
        return "CONSUMED"


class Ambiguous(errors.NotFound):
    """A prefix matches several jobs or logbooks (``candidates``)."""

    def __init__(self, message: str, candidates: list[str]) -> None:
        super().__init__(message)
        self.candidates = candidates


def ambiguous(ref: str, what: str, candidates: list[str]) -> Ambiguous:
    """The one-line error for a prefix matching several ``what``s."""
    shown = ", ".join(candidates[:_SHOWN])
    more = f" and {len(candidates) - _SHOWN} more" if len(candidates) > _SHOWN else ""
    return Ambiguous(f"{what} id {ref!r} is ambiguous: matches {shown}{more}", candidates)


def _matches(board: JobBoard, ref: str, *, trash: bool) -> list[Job]:
    jobs = board.iter_trash() if trash else board.iterjobs()
    return [job for job in jobs if job.uuid.startswith(ref)]


def find_anywhere(board: JobBoard, backend: Persistence, ref: str) -> Found:
    """The job whose uuid is ``ref`` or starts with it, on the board, in the trash or in the
    history (a consumed job).

    Raises:
        NotFound: nothing matches, or a prefix matches several jobs (the message lists them).
    """
    ref = ref.strip()
    if not ref:
        raise errors.NotFound("no job id given")
    with contextlib.suppress(errors.NotFound):
        job = board.get(ref)
        return Found(job.uuid, job, False, backend.job_history(job.uuid))
    on_board = {job.uuid: job for job in _matches(board, ref, trash=False)}
    trashed = {job.uuid: job for job in _matches(board, ref, trash=True)}
    uuids = sorted({*on_board, *trashed, *backend.find_jobs(ref, limit=_SHOWN + 1)})
    if not uuids:
        raise errors.NotFound(f"no job {ref!r} on the board, in the trash or in the history")
    if len(uuids) > 1:
        raise ambiguous(ref, "job", uuids)
    (uuid,) = uuids
    return Found(uuid, on_board.get(uuid) or trashed.get(uuid),
                 uuid in trashed and uuid not in on_board, backend.job_history(uuid))


def find_logbooks(backend: Persistence, ref: str) -> list[LogBook]:
    """Logbooks whose uuid is ``ref`` or starts with it (lazy)."""
    ref = ref.strip()
    with contextlib.suppress(errors.NotFound):
        return [backend.get_logbook(ref, lazy=True)]
    return backend.find_logbooks(ref, limit=_SHOWN + 1)
