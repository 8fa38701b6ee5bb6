"""Every error Legato raises, under one root.

The tree is shallow on purpose; catch ``LegatoError`` to catch them all::

    LegatoError
    ├── NotFound                  an id, a job, a plugin kind that does not exist
    ├── UnknownBackend            a URL scheme or engine kind with no plugin (also ValueError)
    ├── MissingDriver             the backend's driver is not installed; names the extra
    ├── StorageFailure            persistence unreachable or refusing a write
    ├── StorageCorrupted          persistence's files are damaged: not an outage, never retried
    ├── FencedOut                 a write carrying an older claim's fence (never retried)
    ├── ExecutionFailure          an engine could not run (not a task failure)
    ├── JobFailure                a jobboard call failed
    │   ├── UnclaimableJob        the job is claimed by someone else
    │   ├── NotOwner              the caller is not the job's owner (or holds an older fence)
    │   ├── BoardUnavailable      the board's server is unreachable
    │   ├── GarbageRecord         a stored job that cannot be decoded (also ValueError)
    │   └── BoardDataLost         the board's server lost the jobs it held (e.g. a Redis
    │                             restarted without persistence)
    ├── JobTooLarge               details nested too deep or too large to post (also ValueError)
    ├── CompilationError          a flow cannot be compiled (duplicate names, bad link)
    │   └── DependencyFailure     atoms that depend on each other in a cycle (TaskFlow's name)
    │       └── AmbiguousDependency  several atoms provide the same name to one consumer
    ├── MissingDependencies       arguments no atom or store provides (names every one)
    ├── DisallowedFactory         a flow factory neither registered nor under an allowed prefix
    ├── SerializationError        a result or detail that cannot be stored as JSON (also TypeError)
    └── WrappedFailure            several task failures at once (iterable of Failure)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol

__all__ = [
    "AmbiguousDependency",
    "BoardDataLost",
    "BoardUnavailable",
    "CompilationError",
    "DependencyFailure",
    "DisallowedFactory",
    "ExecutionFailure",
    "FencedOut",
    "GarbageRecord",
    "JobFailure",
    "JobTooLarge",
    "LegatoError",
    "MissingDependencies",
    "MissingDriver",
    "NotFound",
    "NotOwner",
    "SerializationError",
    "StorageCorrupted",
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


class StorageCorrupted(LegatoError):
    """Persistence's storage is damaged (e.g. a SQLite file whose pages are not a database).

    Not a ``StorageFailure``: those are outages, retried once the server is back, while a
    damaged file stays damaged. A conductor that meets it stops claiming and says so.
    """


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
        fence: the fencing number the caller gave (None when it gave none).
        actual_fence: the job's current fencing number, that of its latest claim (None when
            the board could not tell).
    """

    def __init__(self, message: str, *, job_uuid: str | None = None,
                 owner: str | None = None, actual_owner: str | None = None,
                 fence: int | None = None, actual_fence: int | None = None) -> None:
        super().__init__(message, job_uuid=job_uuid)
        self.owner = owner
        self.actual_owner = actual_owner
        self.fence = fence
        self.actual_fence = actual_fence


class BoardUnavailable(JobFailure):
    """The jobboard's server cannot be reached (or answered too late)."""


class GarbageRecord(JobFailure, ValueError):
    """A job record in a board's storage that cannot be decoded (not JSON, nested too deep,
    a field of the wrong type...). Boards set such records aside: claims and listings skip
    them with a warning, and asking for one by uuid raises this."""


class JobTooLarge(LegatoError, ValueError):
    """A job's details are nested deeper or are larger than a board accepts.

    Attributes:
        limit: the limit passed, e.g. ``"64 levels"``.
    """

    def __init__(self, message: str, *, limit: str) -> None:
        super().__init__(message)
        self.limit = limit

class BoardDataLost(JobFailure):
    """The board's server lost the jobs it held: a Redis that persists nothing restarted, or
    its keys were deleted. Jobs posted before are gone; they never ran to completion here.

    Not a ``BoardUnavailable``: the server answers, and retrying the same call for a job that
    was lost never succeeds. Each board object raises it from the first call that meets the
    loss and then works on with what the server holds now; ``Job.state`` and ``Job.wait()``
    keep raising it for every job the loss took (``job_uuid`` names the job when there is one).
    """


class CompilationError(LegatoError):
    """The flow cannot be compiled into something runnable."""


class DependencyFailure(CompilationError):
    """Atoms whose dependencies cannot be ordered: a cycle. ``GraphFlow.add`` and ``link``
    raise it for the atom or link that closes one (as TaskFlow's graph flow does); the
    compiler raises it for a cycle closed later (a subflow changed after it was added)."""


class AmbiguousDependency(DependencyFailure):
    """Several atoms provide one name to the same consumer."""


class MissingDependencies(DependencyFailure):
    """Arguments that no atom provides and the store does not hold (a ``DependencyFailure``,
    as in TaskFlow).

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


class CapturedFailure(Protocol):
    """What a ``WrappedFailure`` holds: a ``legato.Failure``, as this module sees it.

    ``legato.failure`` builds on this module, so this module names only the part of
    ``Failure`` it relies on and never imports it (see "Layers" in docs/design.md).
    """

    @property
    def exception(self) -> BaseException | None: ...
    @property
    def exc_type_names(self) -> tuple[str, ...]: ...
    @property
    def message(self) -> str: ...
    @property
    def traceback_str(self) -> str: ...

    def check(self, *exc_types: type[BaseException] | str) -> type[BaseException] | str | None:
        ...

    def to_dict(self) -> dict[str, Any]: ...


class WrappedFailure(LegatoError):
    """Several atoms failed in one run; iterate it to get each ``Failure``."""

    def __init__(self, failures: Iterable[CapturedFailure]) -> None:
        self._failures = list(failures)
        super().__init__(f"{len(self._failures)} atoms failed: "
                         + "; ".join(str(f) for f in self._failures))

    def __iter__(self) -> Iterator[CapturedFailure]:
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
