"""State names and the transitions allowed between them.

Flow and atom states are persisted as their string values, so the values are part of the
storage format: never rename one.
"""

from __future__ import annotations

import enum

from legato import errors

__all__ = [
    "AtomState",
    "EngineState",
    "FlowState",
    "Intention",
    "JobPriority",
    "JobState",
    "check_atom_transition",
    "check_flow_transition",
]


class FlowState(enum.StrEnum):
    """States of a whole flow (stored in ``FlowDetail.state``)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    REVERTING = "REVERTING"
    REVERTED = "REVERTED"
    SUSPENDING = "SUSPENDING"
    SUSPENDED = "SUSPENDED"
    RESUMING = "RESUMING"


class AtomState(enum.StrEnum):
    """States of one task or retry (stored in ``AtomDetail.state``)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    REVERTING = "REVERTING"
    REVERTED = "REVERTED"
    REVERT_FAILURE = "REVERT_FAILURE"
    RETRYING = "RETRYING"
    IGNORE = "IGNORE"


class Intention(enum.StrEnum):
    """What the engine means to do with an atom next (stored in ``AtomDetail.intention``)."""

    EXECUTE = "EXECUTE"
    REVERT = "REVERT"
    RETRY = "RETRY"
    IGNORE = "IGNORE"


class EngineState(enum.StrEnum):
    """States an engine passes through; ``run_iter()`` yields them."""

    RESUMING = "RESUMING"
    SCHEDULING = "SCHEDULING"
    WAITING = "WAITING"
    ANALYZING = "ANALYZING"
    SUCCESS = "SUCCESS"
    REVERTED = "REVERTED"
    FAILURE = "FAILURE"
    SUSPENDED = "SUSPENDED"


class JobState(enum.StrEnum):
    """States of a job on a board. Trashed jobs leave the board and are listed separately."""

    UNCLAIMED = "UNCLAIMED"
    CLAIMED = "CLAIMED"
    COMPLETE = "COMPLETE"


class JobPriority(enum.IntEnum):
    """Job priorities: a higher value is claimed first; within one value, the oldest post first."""

    VERY_LOW = -2
    LOW = -1
    NORMAL = 0
    HIGH = 1
    VERY_HIGH = 2

    @classmethod
    def parse(cls, value: str | int | JobPriority) -> JobPriority:
        """Accept a member, its name in any case (``"very_high"``) or its integer value."""
        if isinstance(value, JobPriority):
            return value
        if isinstance(value, int):
            return cls(value)
        try:
            return cls[value.strip().upper().replace("-", "_")]
        except KeyError:
            names = ", ".join(m.name for m in cls)
            raise ValueError(f"unknown priority {value!r}; expected one of {names}") from None


_FLOW_TRANSITIONS: dict[FlowState, frozenset[FlowState]] = {
    FlowState.PENDING: frozenset({FlowState.RUNNING, FlowState.SUSPENDED}),
    FlowState.RUNNING: frozenset({FlowState.SUCCESS, FlowState.FAILURE, FlowState.REVERTING,
                                  FlowState.SUSPENDING}),
    FlowState.REVERTING: frozenset({FlowState.REVERTED, FlowState.FAILURE,
                                    FlowState.SUSPENDING}),
    FlowState.SUSPENDING: frozenset({FlowState.SUSPENDED, FlowState.SUCCESS,
                                     FlowState.REVERTED, FlowState.FAILURE}),
    FlowState.SUSPENDED: frozenset({FlowState.RESUMING, FlowState.RUNNING}),
    FlowState.RESUMING: frozenset({FlowState.RUNNING, FlowState.SUSPENDED}),
    FlowState.SUCCESS: frozenset({FlowState.RESUMING, FlowState.RUNNING}),
    FlowState.REVERTED: frozenset({FlowState.RESUMING, FlowState.RUNNING}),
    FlowState.FAILURE: frozenset({FlowState.RESUMING, FlowState.RUNNING}),
}


def check_flow_transition(old: FlowState, new: FlowState) -> bool:
    """Return True if the flow may move from ``old`` to ``new``; False if it is a no-op.

    Raises:
        InvalidState: the transition is not allowed.
    """
    if old == new:
        return False
    if new in _FLOW_TRANSITIONS[old]:
        return True
    raise errors.InvalidState(f"flow cannot go from {old} to {new}")


_ATOM_TRANSITIONS: dict[AtomState, frozenset[AtomState]] = {
    AtomState.PENDING: frozenset({AtomState.RUNNING, AtomState.REVERTING, AtomState.IGNORE,
                                  AtomState.REVERTED}),
    AtomState.RUNNING: frozenset({AtomState.SUCCESS, AtomState.FAILURE, AtomState.PENDING}),
    AtomState.SUCCESS: frozenset({AtomState.REVERTING, AtomState.RETRYING, AtomState.PENDING}),
    AtomState.FAILURE: frozenset({AtomState.REVERTING, AtomState.PENDING}),
    AtomState.REVERTING: frozenset({AtomState.REVERTED, AtomState.REVERT_FAILURE,
                                    AtomState.PENDING}),
    AtomState.REVERTED: frozenset({AtomState.PENDING}),
    AtomState.REVERT_FAILURE: frozenset({AtomState.REVERTING, AtomState.PENDING}),
    AtomState.RETRYING: frozenset({AtomState.RUNNING, AtomState.PENDING}),
    AtomState.IGNORE: frozenset({AtomState.PENDING}),
}


def check_atom_transition(old: AtomState, new: AtomState) -> bool:
    """Return True if an atom may move from ``old`` to ``new``; False if it is a no-op.

    Raises:
        InvalidState: the transition is not allowed.
    """
    if old == new:
        return False
    if new in _ATOM_TRANSITIONS[old]:
        return True
    raise errors.InvalidState(f"atom cannot go from {old} to {new}")
