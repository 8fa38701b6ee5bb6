"""Legato: durable workflow execution.

Producers post jobs on a jobboard; conductors claim them, rebuild each job's flow from a
registered factory, run it in an engine that records every step, then consume, abandon or trash
the job. See the README for a tour.
"""

from __future__ import annotations

from legato.engine.factories import FactoryPolicy
from legato.errors import (
    AmbiguousDependency,
    BoardUnavailable,
    CompilationError,
    DependencyFailure,
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
from legato.failure import Failure
from legato.flow import (
    AlwaysRevert,
    AlwaysRevertAll,
    Decision,
    ForEach,
    GraphFlow,
    LinearFlow,
    ParameterizedForEach,
    Retry,
    Task,
    Times,
    UnorderedFlow,
    flow_factory,
    task,
)
from legato.states import AtomState, FlowState, JobPriority, JobState

__version__ = "0.1.0"

__all__ = [
    "AlwaysRevert",
    "AlwaysRevertAll",
    "AmbiguousDependency",
    "AtomState",
    "BoardUnavailable",
    "CompilationError",
    "Decision",
    "DependencyFailure",
    "DisallowedFactory",
    "ExecutionFailure",
    "FactoryPolicy",
    "Failure",
    "FlowState",
    "ForEach",
    "GraphFlow",
    "JobFailure",
    "JobPriority",
    "JobState",
    "LegatoError",
    "LinearFlow",
    "MissingDependencies",
    "NotFound",
    "NotOwner",
    "ParameterizedForEach",
    "Retry",
    "SerializationError",
    "StorageFailure",
    "Task",
    "Times",
    "UnclaimableJob",
    "UnorderedFlow",
    "WrappedFailure",
    "__version__",
    "flow_factory",
    "task",
]
