"""What a conductor records of each claim in the job's history (``Persistence.record_claim``).

A claim's start rides on the ``take_flow`` write that starts the run (same transaction: on a
job's first claim, the engine's first write). Its end rides on the write of the flow's SUCCESS,
as consumed (what a successful flow's claim becomes); it is written again, on its own, only when
the claim ended otherwise after all (the consume failed), or had no such write. A claim that
ended before its flow was taken (trashed for too many attempts, a missing logbook, ...) is
recorded once, at its end.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from legato.conductor._job import CONSUMED, Action, Cause, Outcome
from legato.persistence.models import Claim, Fence, utcnow
from legato.states import AtomState, FlowState, Intention

if TYPE_CHECKING:
    from legato.conductor._joined import JoinedConsume
    from legato.jobboard.base import Job
    from legato.persistence.base import Persistence
    from legato.persistence.models import FlowDetail

__all__ = ["ClaimLog", "outcome_name"]

logger = logging.getLogger(__name__)

#: An atom's state and intention before it ever ran.
_UNTOUCHED = (AtomState.PENDING, Intention.EXECUTE)


def outcome_name(outcome: Outcome) -> str:
    """The history's name for how a claim ended: its board action, and for an abandon
    without the job failing, why (from the typed cause, never the reason's text)."""
    if outcome.action is Action.CONSUME:
        return "consumed"
    if outcome.action is Action.TRASH:
        return "trashed"
    if outcome.action is Action.RELEASE:
        return "released"
    if outcome.cause is Cause.LOST:
        return "lost claim"
    if outcome.cause is Cause.STOPPED:
        return "stopped"
    return "abandoned"


class ClaimLog:
    """One claim's record as the conductor builds it: started when the flow is taken, ended
    with the claim's outcome."""

    __slots__ = ("_joining", "before", "claim", "flow_detail", "joined", "recorded")

    def __init__(self, job: Job, owner: str, *, claimed_at: float) -> None:
        # One wall-clock read, moved back by how long ago (monotonic) the claim was sent.
        wall = dt.datetime.fromtimestamp(time.time() - max(0.0, time.monotonic() - claimed_at),
                                         dt.UTC)
        self.claim = Claim(job_uuid=job.uuid, fence=job.fence or 0, owner=owner,
                           claimed_at=wall, job_name=job.name, book_uuid=job.book_uuid)
        self.flow_detail: FlowDetail | None = None
        self.before: dict[str, tuple[Any, Any]] = {}
        #: The end recorded with the flow's end state, if any (``ended``).
        self.recorded: Claim | None = None
        #: The job's consume, to ride with the flow's SUCCESS (board and persistence share a
        #: database), or None.
        self.joined: JoinedConsume | None = None
        self._joining = False

    def start(self, flow_uuid: str) -> Claim:
        """The claim's start, to record with the take of ``flow_uuid``."""
        self.claim.flow_uuid = flow_uuid
        return self.claim

    def end_with(self, state: FlowState) -> Claim | None:
        """The claim's end to record with the flow's end ``state``: consumed, for SUCCESS."""
        if state is not FlowState.SUCCESS:
            return None
        return self.end(CONSUMED).copy()

    def in_transaction(self, state: FlowState) -> Callable[[Any], None] | None:
        """The job's consume, to run in the transaction writing the flow's SUCCESS (when
        ``joined`` is set)."""
        if state is not FlowState.SUCCESS or self.joined is None:
            return None
        self._joining = True
        return self.joined

    def ended(self, claim: Claim) -> None:
        """``claim`` (from ``end_with``) is recorded, and the job consumed with it when
        ``in_transaction`` gave the consume."""
        self.recorded = claim
        if self._joining and self.joined is not None:
            self.joined.committed()

    def taken(self, flow_detail: FlowDetail) -> None:
        """The flow as the claim took it: atoms whose state changes from here ran in it."""
        self.flow_detail = flow_detail
        # States as they are (str enums: equal to their text, and no conversion per atom).
        before = self.before
        for ad in flow_detail:  # a loop, not a comprehension: no function call for one atom
            before[ad.uuid] = (ad.state, ad.intention)

    def end(self, outcome: Outcome) -> Claim:
        """The claim's end: ``outcome`` is how it ended (the one the board call made)."""
        claim = self.claim
        claim.ended_at = utcnow()
        claim.reason = outcome.reason
        claim.outcome = "consumed" if outcome.action is Action.CONSUME else outcome_name(outcome)
        fd = self.flow_detail
        if fd is not None:
            claim.flow_state = str(fd.state) if fd.state is not None else None
            before = self.before
            atoms = claim.atoms = []
            for ad in fd:  # a loop, not a comprehension: no function call for one atom
                if before.get(ad.uuid, _UNTOUCHED) != (ad.state, ad.intention):
                    atoms.append(ad.name)
        return claim

    def record(self, persistence: Persistence, outcome: Outcome) -> None:
        """Write the claim's end; a failure is logged, never raised (the job's outcome is on
        the board already)."""
        claim = self.claim
        if claim.flow_uuid is not None and claim.job_uuid:
            persistence.forget_claim(claim.flow_uuid, Fence(claim.job_uuid, claim.fence))
        if (self.recorded is not None and outcome.action is Action.CONSUME
                and outcome.reason is None):
            return  # recorded with the flow's SUCCESS, as it ended
        try:
            persistence.record_claim(self.end(outcome))
        except Exception as exc:
            logger.warning("job %s: could not record the end of claim %s in its history: %s",
                           self.claim.job_uuid, self.claim.fence, exc)
