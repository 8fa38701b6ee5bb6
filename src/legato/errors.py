"""Every error Legato raises, under one root.

The tree is shallow on purpose; catch ``LegatoError`` to catch them all::

    LegatoError
    ├── NotFound                  an id, a job, a plugin kind that does not exist
    ├── UnknownBackend            a URL scheme or engine kind with no plugin (also ValueError)
    ├── MissingDriver             the backend's driver is not installed; names the extra
    ├── StorageFailure            persistence unreachable or refusing a write
    ├── FencedOut                 a write carrying an older claim's fence (never retried)
    ├── ExecutionFailure          an engine could not run (not a task failure)
    ├── JobFailure                a jobboard call failed
    │   ├── UnclaimableJob        the job is claimed by someone else
    │   ├── NotOwner              the caller is not the job's owner (or holds an older fence)
    │   └── BoardUnavailable      the board's server is unreachable
    ├── CompilationError          a flow cannot be compiled (cycle, bad link)
    │   └── AmbiguousDependency   several atoms provide the same name to one consumer
    ├── MissingDependencies       arguments no atom or store provides (names every one)
    ├── DisallowedFactory         a flow factory neither registered nor under an allowed prefix
    ├── SerializationError        a result or detail that cannot be stored as JSON (also TypeError)
    └── WrappedFailure            several task failures at once (iterable of Failure)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from legato.engine.failure import Failure

__all__ = [
    "AmbiguousDependency",
    "BoardUnavailable",
    "CompilationError",
    "DisallowedFactory",
    "ExecutionFailure",
    "FencedOut",
    "JobFailure",
    "LegatoError",
    "MissingDependencies",
    "MissingDriver",
    "NotFound",
    "NotOwner",
    "SerializationError",
    "StorageFailure",
    "UnclaimableJob",
    "UnknownBackend",
    "WrappedFailure",
]


class LegatoError(Exception):
    """Root of every error Legato raises."""


class NotFound(LegatoError):
    """The thing asked for does not exist (a logbook, a job, a plugin kind)."""


class UnknownBackend(LegatoError, ValueError):
    """No plugin is registered for a URL scheme or a kind name."""


class MissingDriver(LegatoError, ImportError):
    """A backend's driver is not installed.

    Attributes:
        extra: the ``legato[...]`` extra that installs it.
    """

    def __init__(self, message: str, *, extra: str) -> None:
        super().__init__(message)
        self.extra = extra


class StorageFailure(LegatoError):
    """Persistence is unreachable or refused an operation."""


class FencedOut(LegatoError):
    """A persistence write was refused because a newer claim took the flow detail over.

    Not a ``StorageFailure``: it is never retried, and an engine that gets it stops at once,
    without recording anything more and without reverting: the flow belongs to the newer owner.
    Engines raise it too when their caller marked the claim lost before a revert would start.
    """


class ExecutionFailure(LegatoError):
    """An engine could not run the flow for a reason other than a task failing."""


class JobFailure(LegatoError):
    """A jobboard operation failed.

    Attributes:
        job_uuid: the job concerned, when there is one.
    """

    def __init__(self, message: str, *, job_uuid: str | None = None) -> None:
        super().__init__(message)
        self.job_uuid = job_uuid


class UnclaimableJob(JobFailure):
    """The job cannot be claimed now: another owner holds it, or it is delayed or finished.

    Attributes:
        owner: the current owner, when known.
    """

    def __init__(self, message: str, *, job_uuid: str | None = None,
                 owner: str | None = None) -> None:
        super().__init__(message, job_uuid=job_uuid)
        self.owner = owner


class NotOwner(JobFailure):
    """The caller does not own the job's current claim.

    Attributes:
        owner: who asked.
        actual_owner: who holds the claim now (None when nobody does).
    """

    def __init__(self, message: str, *, job_uuid: str | None = None,
                 owner: str | None = None, actual_owner: str | None = None) -> None:
        super().__init__(message, job_uuid=job_uuid)
        self.owner = owner
        self.actual_owner = actual_owner


class BoardUnavailable(JobFailure):
    """The jobboard's server cannot be reached (or answered too late)."""


class CompilationError(LegatoError):
    """The flow cannot be compiled into something runnable."""


class AmbiguousDependency(CompilationError):
    """Several atoms provide one name to the same consumer."""


class MissingDependencies(LegatoError):
    """Arguments that no atom provides and the store does not hold.

    Attributes:
        missing: mapping of atom name to the sorted list of its missing argument names.
    """

    def __init__(self, missing: dict[str, list[str]]) -> None:
        parts = [f"{atom} needs {', '.join(names)}" for atom, names in sorted(missing.items())]
        super().__init__("missing arguments: " + "; ".join(parts))
        self.missing = missing


class DisallowedFactory(LegatoError):
    """A flow factory that is neither registered nor under an allowed module prefix.

    Attributes:
        factory_name: the ``module:qualname`` that was refused.
    """

    def __init__(self, message: str, *, factory_name: str) -> None:
        super().__init__(message)
        self.factory_name = factory_name


class SerializationError(LegatoError, TypeError):
    """A value that must be stored as JSON is not JSON-serialisable."""


class WrappedFailure(LegatoError):
    """Several atoms failed in one run; iterate it to get each ``Failure``."""

    def __init__(self, failures: Iterable[Failure]) -> None:
        self._failures = list(failures)
        super().__init__(f"{len(self._failures)} atoms failed: "
                         + "; ".join(str(f) for f in self._failures))

    def __iter__(self) -> Iterator[Failure]:
        return iter(self._failures)

    def __len__(self) -> int:
        return len(self._failures)

    def check(self, *exc_types: type[BaseException] | str) -> Any:
        """Return the first exception type any wrapped failure matches, else None."""
        for failure in self._failures:
            found = failure.check(*exc_types)
            if found is not None:
                return found
        return None
