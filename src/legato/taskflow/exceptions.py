"""``taskflow.exceptions``: Legato's errors under TaskFlow's names."""

from __future__ import annotations

from legato.errors import (
    AmbiguousDependency,
    CompilationError,
    DependencyFailure,
    ExecutionFailure,
    JobFailure,
    LegatoError,
    MissingDependencies,
    NotFound,
    StorageFailure,
    UnclaimableJob,
    WrappedFailure,
)

#: TaskFlow's root exception.
TaskFlowException = LegatoError

__all__ = [
    "AmbiguousDependency",
    "CompilationError",
    "DependencyFailure",
    "ExecutionFailure",
    "JobFailure",
    "MissingDependencies",
    "NotFound",
    "StorageFailure",
    "TaskFlowException",
    "UnclaimableJob",
    "WrappedFailure",
]
