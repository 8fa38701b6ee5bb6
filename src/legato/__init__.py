"""Legato: durable workflow execution.

Producers post jobs on a jobboard; conductors claim them, rebuild each job's flow from a
registered factory, run it in an engine that records every step, then consume, abandon or trash
the job. See the README for a tour.
"""

from __future__ import annotations

from legato.errors import (
    AmbiguousDependency,
    BoardUnavailable,
    CompilationError,
    DisallowedFactory,
    ExecutionFailure,
    JobFailure,
    LegatoError,
    MissingDependencies,
    NotFound,
    NotOwner,
    SerializationError,
    StorageFailure,
    UnclaimableJob,
    WrappedFailure,
)
from legato.states import AtomState, FlowState, JobPriority, JobState

__version__ = "0.1.0"

__all__ = [
    "AmbiguousDependency",
    "AtomState",
    "BoardUnavailable",
    "CompilationError",
    "DisallowedFactory",
    "ExecutionFailure",
    "FlowState",
    "JobFailure",
    "JobPriority",
    "JobState",
    "LegatoError",
    "MissingDependencies",
    "NotFound",
    "NotOwner",
    "SerializationError",
    "StorageFailure",
    "UnclaimableJob",
    "WrappedFailure",
    "__version__",
]
