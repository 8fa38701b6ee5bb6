"""Retry controllers: atoms that decide what happens when something in their scope fails.

A retry is attached to a flow (``LinearFlow("f", retry=Times(3))``); the flow's atoms are its
scope. The retry runs first in its scope: ``execute(history)`` returns a value that tasks of the
scope may require (for example the item ``ForEach`` is trying). When an atom in the scope fails,
the engine calls ``on_failure(history)`` and follows the ``Decision``:

- ``RETRY``: revert the scope's atoms (newest first), then run the scope again;
- ``REVERT``: revert the scope and let the enclosing scope's retry decide (at the top: revert all);
- ``REVERT_ALL``: revert the whole flow, whatever the enclosing retries would say.

``history`` holds one ``(result, {atom name: Failure})`` pair per attempt, oldest first; the
engine persists it in the retry's ``RetryDetail``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

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
    """Attempts of one retry scope: ``(result, {atom name: Failure})`` pairs, oldest first."""

    def __init__(self, entries: Sequence[tuple[Any, dict[str, Failure]]] = ()) -> None:
        self._entries = list(entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[tuple[Any, dict[str, Failure]]]:
        return iter(self._entries)

    def __getitem__(self, index: int) -> tuple[Any, dict[str, Failure]]:
        return self._entries[index]

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
    are required like a task's (inferred from ``execute``'s signature).
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
        attempts: total attempts (the first run included).
        delay: seconds before the second attempt.
        backoff: factor applied to the delay for each further attempt.
        revert_all: when attempts run out, revert the whole flow instead of this scope.
    """

    def __init__(self, attempts: int = 1, name: str | None = None, *, delay: float = 0.0,
                 backoff: float = 1.0, revert_all: bool = False, **options: Any) -> None:
        if attempts < 1:
            raise ValueError("attempts must be >= 1")
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


class ForEach(Retry):
    """Try the scope with each value in turn (provided under ``provides``) until one succeeds.

    Args:
        values: the values to try, in order (JSON values).
        revert_all: when values run out, revert the whole flow instead of this scope.
    """

    def __init__(self, values: Sequence[Any], name: str | None = None, *,
                 revert_all: bool = False, **options: Any) -> None:
        if not values:
            raise ValueError("ForEach needs at least one value")
        super().__init__(name, **options)
        self.values = list(values)
        self.revert_all = revert_all

    def execute(self, history: History, **kwargs: Any) -> Any:
        return self.values[len(history)]

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
        if not values:
            raise ValueError(f"retry {self.name!r}: no values to try")
        return values[len(history)]

    def on_failure(self, history: History,  # type: ignore[override]
                   values: Sequence[Any]) -> Decision:
        if len(history) < len(values):
            return Decision.RETRY
        return Decision.REVERT_ALL if self.revert_all else Decision.REVERT
