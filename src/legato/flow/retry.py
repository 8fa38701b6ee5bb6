"""Retry controllers: atoms that decide what happens when something in their scope fails.

A retry is attached to a flow (``LinearFlow("f", retry=Times(3))``); the flow's atoms are its
scope. The retry runs first in its scope: ``execute(history)`` returns a value that tasks of the
scope may require (for example the item ``ForEach`` is trying). When an atom in the scope fails,
the engine calls ``on_failure(history)`` and follows the ``Decision``:

- ``RETRY``: revert the scope's atoms (newest first), then run the scope again;
- ``REVERT``: revert the scope and let the enclosing scope's retry decide (at the top: revert all);
- ``REVERT_ALL``: revert the whole flow, whatever the enclosing retries would say.

Before the scope runs again (``RETRY``) every atom in it is reset to PENDING, nested retries
included: a nested controller's history starts afresh on its parent's next attempt, as in
TaskFlow, where a reverted controller's history is cleaned up.

``history`` (a ``History``) holds one ``(result, {atom name: Failure})`` pair per attempt,
oldest first; the engine persists it in the retry's ``RetryDetail`` and passes it to
``execute``, ``revert`` and ``on_failure`` as the keyword argument ``history``, so a controller
may take it by name or in ``**kwargs``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from legato import errors
from legato.flow.atom import Atom

if TYPE_CHECKING:
    from legato.failure import Failure

__all__ = [
    "AlwaysRevert",
    "AlwaysRevertAll",
    "Decision",
    "ForEach",
    "History",
    "ParameterizedForEach",
    "Retry",
    "Times",
]


class Decision(enum.StrEnum):
    """What a retry controller wants done after a failure in its scope."""

    RETRY = "RETRY"
    REVERT = "REVERT"
    REVERT_ALL = "REVERT_ALL"


class History:
    """Attempts of one retry scope, oldest first, as TaskFlow's ``History``.

    Each attempt is ``(provided, {atom name: Failure})``: what the controller's ``execute``
    returned, and the failures that ended the attempt (keyed by the failed atom's name, or by
    a nested retry's name when the failure came up through it). ``failure`` is the
    controller's own failure (its ``execute`` raised), kept apart from the attempts.
    """

    def __init__(self, entries: Sequence[tuple[Any, dict[str, Failure]]] = (), *,
                 failure: Failure | None = None) -> None:
        self._entries = list(entries)
        self._failure = failure

    @property
    def failure(self) -> Failure | None:
        """The controller's own failure, or None."""
        return self._failure

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[tuple[Any, dict[str, Failure]]]:
        return iter(self._entries)

    def __getitem__(self, index: int) -> tuple[Any, dict[str, Failure]]:
        return self._entries[index]

    def provided_iter(self) -> Iterator[Any]:
        """What each attempt provided, oldest first."""
        return (provided for provided, _ in self._entries)

    def outcomes_iter(self, index: int | None = None) -> Iterator[tuple[str, Failure]]:
        """``(atom name, Failure)`` of every attempt, or of attempt ``index`` only. The
        controller's own failure is not among them (see ``failure``)."""
        entries = self._entries if index is None else [self._entries[index]]
        return ((name, failure) for _, failures in entries for name, failure in failures.items())

    def caused_by(self, exception_cls: type[BaseException] | str, index: int | None = None,
                  include_retry: bool = False) -> bool:
        """Whether a failure of the attempts (or of attempt ``index``) is an
        ``exception_cls``; with ``include_retry``, the controller's own failure counts too."""
        if any(failure.check(exception_cls) for _, failure in self.outcomes_iter(index)):
            return True
        return bool(include_retry and self._failure is not None
                    and self._failure.check(exception_cls))

    @property
    def last_result(self) -> Any:
        """The result of the latest attempt (None before the first)."""
        return self._entries[-1][0] if self._entries else None

    def failures(self) -> list[Failure]:
        """Every failure recorded, oldest first."""
        return [f for _, failures in self._entries for f in failures.values()]

    def __repr__(self) -> str:
        return f"History({self._entries!r})"


class Retry(Atom):
    """Base of retry controllers. Override ``on_failure``; optionally ``execute`` and ``revert``.

    ``execute(history, ...)`` and ``on_failure(history, ...)`` may take further arguments, which
    are required like a task's (inferred from ``execute``'s signature). ``history`` is always
    given by keyword; ``revert`` also gets ``flow_failures`` if it takes it.
    """

    _engine_args = ("history",)
    _revert_engine_args = ("history",)

    def execute(self, history: History, **kwargs: Any) -> Any:
        """Return the value this attempt provides (default: the attempt number, from 1)."""
        return len(history) + 1

    def revert(self, history: History, **kwargs: Any) -> Any:
        """Called when the scope is reverted for good. The default does nothing."""
        return None

    def on_failure(self, history: History, **kwargs: Any) -> Decision:
        """Decide what to do about the failures in ``history[-1]``."""
        raise NotImplementedError

    def delay(self, history: History) -> float:
        """Seconds to wait before the next attempt (default: none)."""
        return 0.0


class AlwaysRevert(Retry):
    """Never retry; revert the scope and let the enclosing scope decide."""

    def on_failure(self, history: History, **kwargs: Any) -> Decision:
        return Decision.REVERT


class AlwaysRevertAll(Retry):
    """Never retry; revert the whole flow."""

    def on_failure(self, history: History, **kwargs: Any) -> Decision:
        return Decision.REVERT_ALL


class Times(Retry):
    """Run the scope at most ``attempts`` times in all, then revert.

    Args:
        attempts: total attempts (the first run included); 0 behaves like 1, as in TaskFlow.
        delay: seconds before the second attempt.
        backoff: factor applied to the delay for each further attempt.
        revert_all: when attempts run out, revert the whole flow instead of this scope.
    """

    def __init__(self, attempts: int = 1, name: str | None = None, *, delay: float = 0.0,
                 backoff: float = 1.0, revert_all: bool = False, **options: Any) -> None:
        if attempts < 0:
            raise ValueError(f"attempts must be >= 0, not {attempts!r}")
        super().__init__(name, **options)
        self.attempts = attempts
        self.delay_s = delay
        self.backoff = backoff
        self.revert_all = revert_all

    def on_failure(self, history: History, **kwargs: Any) -> Decision:
        if len(history) < self.attempts:
            return Decision.RETRY
        return Decision.REVERT_ALL if self.revert_all else Decision.REVERT

    def delay(self, history: History) -> float:
        return float(self.delay_s * self.backoff ** max(0, len(history) - 1))


def _next_value(retry: Retry, values: Sequence[Any], history: History) -> Any:
    """The value for the next attempt; TaskFlow's error when none is left."""
    if len(history) >= len(values):
        raise errors.NotFound("No elements left in collection of iterable retry controller "
                              f"{retry.name}")
    return values[len(history)]


class ForEach(Retry):
    """Try the scope with each value in turn (provided under ``provides``) until one succeeds.

    An empty collection is allowed; running it fails with ``NotFound`` ("No elements left in
    collection of iterable retry controller ...").

    Args:
        values: the values to try, in order (JSON values).
        revert_all: when values run out, revert the whole flow instead of this scope.
    """

    def __init__(self, values: Sequence[Any], name: str | None = None, *,
                 revert_all: bool = False, **options: Any) -> None:
        super().__init__(name, **options)
        self.values = list(values)
        self.revert_all = revert_all

    def execute(self, history: History, **kwargs: Any) -> Any:
        return _next_value(self, self.values, history)

    def on_failure(self, history: History, **kwargs: Any) -> Decision:
        if len(history) < len(self.values):
            return Decision.RETRY
        return Decision.REVERT_ALL if self.revert_all else Decision.REVERT


class ParameterizedForEach(Retry):
    """Like ``ForEach``, but the values come from the stored name ``values``
    (use ``rebind={"values": "my_name"}`` to read another name)."""

    def __init__(self, name: str | None = None, *, revert_all: bool = False,
                 **options: Any) -> None:
        super().__init__(name, **options)
        self.revert_all = revert_all

    def execute(self, history: History, values: Sequence[Any]) -> Any:  # type: ignore[override]
        return _next_value(self, values, history)

    def on_failure(self, history: History,  # type: ignore[override]
                   values: Sequence[Any]) -> Decision:
        if len(history) < len(values):
            return Decision.RETRY
        return Decision.REVERT_ALL if self.revert_all else Decision.REVERT
