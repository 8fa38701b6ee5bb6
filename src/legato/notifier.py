"""A small, thread-safe publish/subscribe notifier used by engines, jobboards and conductors.

Listener errors are logged and never propagate to whoever emitted the event.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["ANY", "Listener", "Notifier"]

logger = logging.getLogger(__name__)

#: Subscribe to this event type to receive every event.
ANY = "*"

Listener = Callable[[str, dict[str, Any]], None]


class Notifier:
    """Calls registered listeners with ``(event_type, details)``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: dict[str, list[Listener]] = {}
        # Per event type, the listeners notify() calls (its own, then ANY's); rebuilt lazily
        # after every change, so that emitting takes no lock and builds nothing.
        self._calls: dict[str, tuple[Listener, ...]] = {}
        self._count = 0  # registrations, so that ``bool(notifier)`` takes no lock

    def register(self, event_type: str, callback: Listener) -> None:
        """Call ``callback(event_type, details)`` whenever ``event_type`` (or any, with ``ANY``)
        is emitted."""
        with self._lock:
            self._listeners.setdefault(event_type, []).append(callback)
            self._calls = {}
            self._count += 1

    def deregister(self, event_type: str, callback: Listener) -> bool:
        """Remove one registration; return whether it was there."""
        with self._lock:
            callbacks = self._listeners.get(event_type, [])
            if callback in callbacks:
                callbacks.remove(callback)
                self._calls = {}
                self._count -= 1
                return True
            return False

    def is_registered(self, event_type: str, callback: Listener) -> bool:
        with self._lock:
            return callback in self._listeners.get(event_type, [])

    def listeners_iter(self) -> Iterable[tuple[str, Listener]]:
        with self._lock:
            pairs = [(e, cb) for e, cbs in self._listeners.items() for cb in cbs]
        return pairs

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        """Whether anything is registered (cheap: emitters check it before building details)."""
        return self._count > 0

    def notify(self, event_type: str, details: dict[str, Any]) -> None:
        """Call every listener of ``event_type`` and of ``ANY``; log, never raise, their errors."""
        callbacks = self._calls.get(event_type)
        if callbacks is None:
            with self._lock:
                listeners = self._listeners
                callbacks = (*listeners.get(event_type, ()), *listeners.get(ANY, ()))
                self._calls[event_type] = callbacks
        for callback in callbacks:
            try:
                callback(event_type, details)
            except Exception:
                logger.exception("listener %r failed on event %r", callback, event_type)
