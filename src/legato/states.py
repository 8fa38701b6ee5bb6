"""State names for flows, atoms, engines and jobs.

Flow and atom states are persisted as their string values, so the values are part of the
storage format: never rename one.
"""

from __future__ import annotations

import enum

__all__ = [
    "AtomState",
    "EngineState",
    "FlowState",
    "Intention",
    "JobPriority",
    "JobState",
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
