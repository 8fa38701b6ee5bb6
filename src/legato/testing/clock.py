"""A clock tests can move by hand, for leases, back-off and delays."""

from __future__ import annotations

import threading

__all__ = ["FakeClock"]


class FakeClock:
    """Callable returning seconds since the epoch; starts at ``start`` and moves only by
    ``advance()``."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go back")
        with self._lock:
            self._now += seconds
