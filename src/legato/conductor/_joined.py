"""A job's consume riding in the transaction that records its flow's SUCCESS.

When the board and the persistence keep their data in one database (``JobBoard.database ==
Persistence.database``: the same SQL URL), the conductor gives the claim's ending a
``JoinedConsume``: the persistence calls it inside the transaction that writes the flow's
SUCCESS and the claim's end (``FlowWrites.then``), and it consumes the job there
(``JobBoard.consume_in``), claiming the next job too when the conductor wants one. So a job is
consumed if and only if its flow's end state is recorded, in one commit instead of two. It is a
``JoinableThen``: on PostgreSQL the board makes the consume and the claim parts of the
persistence's statement (``OneStatement``), one autocommitted statement for the three, and
nothing here raises after it.

The board checks owner and fence in that transaction; a refusal (``NotOwner``, ``NotFound``:
the claim was lost) becomes ``FencedOut``, which rolls the flow's write back too: the engine
stops as for any refused write, and the step whose result was not recorded runs again on the
next claim. A job claimed in the transaction is used only once it committed (``committed``).

A transaction whose commit was sent but whose answer was lost (``StorageFailure``) is made again
by the persistence; if the first one landed, the job is gone by then. The flow still records this
claim's fence (else the write would have been refused first), so no later claim consumed it: the
earlier attempt did, and the retry goes on as consumed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from legato import errors
from legato.persistence.base import JoinableThen

if TYPE_CHECKING:
    from legato.jobboard.base import Job, JobBoard

__all__ = ["JoinedConsume"]


class JoinedConsume(JoinableThen):
    """The consume of one claimed job (and maybe the claim of the next) to run inside the
    persistence's transaction.

    Args:
        board: the job's board (its ``database`` is the persistence's).
        job: the claimed job.
        owner: the claim's owner.
        claim_next: asked inside the transaction: whether to claim the next job too.
        ttl: the next claim's TTL (the board's when None).
        committed: called once the transaction committed (stops the renewal of the claim).
    """

    __slots__ = ("_after", "_attempts", "_board", "_claim_next", "_job", "_owner", "_pending",
                 "_ttl", "done", "following")

    def __init__(self, board: JobBoard, job: Job, owner: str, *,
                 claim_next: Callable[[], bool] | None, ttl: float | None,
                 committed: Callable[[], None]) -> None:
        self._board = board
        self._job = job
        self._owner = owner
        self._claim_next = claim_next
        self._ttl = ttl
        self._after = committed
        self._pending: tuple[Job, float] | None = None
        self._attempts = 0
        #: The consume committed.
        self.done = False
        #: The job claimed in the committed transaction, with when its claim was sent.
        self.following: tuple[Job, float] | None = None

    def __call__(self, transaction: Any) -> None:
        """Consume the job in ``transaction`` (and claim the next one when wanted)."""
        self._pending = None  # a retried transaction: what the rolled-back one claimed is void
        self._attempts += 1
        claim = self._claim_next is not None and self._claim_next()
        claimed_at = time.monotonic()
        try:
            following = self._board.consume_in(transaction, self._job, self._owner,
                                               claim_next=claim, ttl=self._ttl)
        except errors.NotFound as exc:
            if self._attempts > 1:
                return  # consumed by the earlier attempt, whose answer was lost (see above)
            raise errors.FencedOut(f"consuming job {self._job.uuid} with its flow's end: "
                                   f"{exc}") from exc
        except errors.NotOwner as exc:
            raise errors.FencedOut(f"consuming job {self._job.uuid} with its flow's end: "
                                   f"{exc}") from exc
        if following is not None:
            self._pending = (following, claimed_at)

    def committed(self) -> None:
        """The transaction that ran this committed: the job is consumed."""
        self.done = True
        self.following, self._pending = self._pending, None
        self._after()
