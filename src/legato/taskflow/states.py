"""``taskflow.states``: the state names, as Legato's string enums (equal to TaskFlow's strings)."""

from __future__ import annotations

from legato.states import AtomState, FlowState, Intention, JobState

PENDING = AtomState.PENDING
RUNNING = AtomState.RUNNING
SUCCESS = AtomState.SUCCESS
FAILURE = AtomState.FAILURE
REVERTING = AtomState.REVERTING
REVERTED = AtomState.REVERTED
REVERT_FAILURE = AtomState.REVERT_FAILURE
RETRYING = AtomState.RETRYING
IGNORE = AtomState.IGNORE
SUSPENDING = FlowState.SUSPENDING
SUSPENDED = FlowState.SUSPENDED
RESUMING = FlowState.RESUMING

EXECUTE = Intention.EXECUTE
REVERT = Intention.REVERT
RETRY = Intention.RETRY

UNCLAIMED = JobState.UNCLAIMED
CLAIMED = JobState.CLAIMED
COMPLETE = JobState.COMPLETE

__all__ = [
    "CLAIMED",
    "COMPLETE",
    "EXECUTE",
    "FAILURE",
    "IGNORE",
    "PENDING",
    "RESUMING",
    "RETRY",
    "RETRYING",
    "REVERT",
    "REVERTED",
    "REVERTING",
    "REVERT_FAILURE",
    "RUNNING",
    "SUCCESS",
    "SUSPENDED",
    "SUSPENDING",
    "UNCLAIMED",
]
