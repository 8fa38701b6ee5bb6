"""``taskflow.retry``: retry controllers and their decisions are Legato's."""

from __future__ import annotations

from legato.flow.retry import (
    AlwaysRevert,
    AlwaysRevertAll,
    Decision,
    ForEach,
    History,
    ParameterizedForEach,
    Retry,
    Times,
)

#: The decisions a retry's ``on_failure`` returns, under TaskFlow's module-level names.
RETRY = Decision.RETRY
REVERT = Decision.REVERT
REVERT_ALL = Decision.REVERT_ALL

__all__ = [
    "RETRY",
    "REVERT",
    "REVERT_ALL",
    "AlwaysRevert",
    "AlwaysRevertAll",
    "Decision",
    "ForEach",
    "History",
    "ParameterizedForEach",
    "Retry",
    "Times",
]
