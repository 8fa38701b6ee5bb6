"""Stock listeners: logging, printing, timing and capture.

Use one as a context manager around a run::

    with TimingListener(engine):
        engine.run()

Payloads are those documented in ``legato.engine.engine``: flow events are a ``FlowState`` value
with ``flow_name``, ``flow_uuid``, ``old_state``, ``engine``; atom events are an ``AtomState``
value (or ``"PROGRESS"``) with ``atom_name``, ``atom_uuid``, ``flow_uuid``, ``old_state``,
``engine`` and ``result``/``failure``/``progress`` where they apply.
"""

from __future__ import annotations

import logging
import sys
import threading
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO

from legato import notifier

if TYPE_CHECKING:
    from legato.engine.engine import Engine

__all__ = ["CaptureListener", "Listener", "LoggingListener", "PrintingListener",
           "TimingListener"]

logger = logging.getLogger(__name__)


class Listener:
    """Base: registers ``on_flow`` and ``on_atom`` on an engine's notifiers for any event."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def register(self) -> None:
        self.engine.notifier.register(notifier.ANY, self.on_flow)
        self.engine.atom_notifier.register(notifier.ANY, self.on_atom)

    def deregister(self) -> None:
        self.engine.notifier.deregister(notifier.ANY, self.on_flow)
        self.engine.atom_notifier.deregister(notifier.ANY, self.on_atom)

    def __enter__(self) -> Listener:
        self.register()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.deregister()

    def on_flow(self, event: str, details: dict[str, Any]) -> None:
        """Called with each flow event."""

    def on_atom(self, event: str, details: dict[str, Any]) -> None:
        """Called with each atom event."""


def _describe(event: str, details: dict[str, Any]) -> str:
    if "atom_name" in details:
        text = f"atom {details['atom_name']!r} -> {event}"
        if "progress" in details:
            text += f" {details['progress']:.0%}"
        if details.get("failure") is not None:
            text += f" ({details['failure']})"
        return text
    return f"flow {details.get('flow_name')!r} -> {event}"


class LoggingListener(Listener):
    """Logs every event (failures at WARNING) to ``logger`` (default ``legato.engine``)."""

    def __init__(self, engine: Engine, *, log: logging.Logger | None = None,
                 level: int = logging.DEBUG) -> None:
        super().__init__(engine)
        self.log = log or logging.getLogger("legato.engine")
        self.level = level

    def on_flow(self, event: str, details: dict[str, Any]) -> None:
        self.log.log(self.level, "%s", _describe(event, details))

    def on_atom(self, event: str, details: dict[str, Any]) -> None:
        level = logging.WARNING if details.get("failure") is not None else self.level
        self.log.log(level, "%s", _describe(event, details))


class PrintingListener(Listener):
    """Prints every event, one line each, to ``stream`` (default stderr)."""

    def __init__(self, engine: Engine, *, stream: TextIO | None = None) -> None:
        super().__init__(engine)
        self.stream = stream

    def _print(self, event: str, details: dict[str, Any]) -> None:
        print(_describe(event, details), file=self.stream or sys.stderr)

    on_flow = _print
    on_atom = _print


class TimingListener(Listener):
    """Stores how long each atom ran: ``meta["duration"]`` (execute) and
    ``meta["revert_duration"]`` (revert), in float seconds, saved to persistence.

    While registered it turns on the engine's ``record_durations`` (register it before the run
    starts): the engine stamps each duration into the write that records the atom's end state,
    so timing costs no write of its own.
    """

    def register(self) -> None:
        super().register()
        self.engine.record_durations = True

    def deregister(self) -> None:
        super().deregister()
        self.engine.record_durations = False


class CaptureListener(Listener):
    """Records events, for tests.

    Attributes:
        flow_states: flow states in the order emitted.
        atom_states: ``(atom name, state)`` pairs in the order emitted.
        progress: ``(atom name, progress)`` pairs.
        events: every ``(event, details)`` received (details without ``engine``).
    """

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self._lock = threading.Lock()
        self.flow_states: list[str] = []
        self.atom_states: list[tuple[str, str]] = []
        self.progress: list[tuple[str, float]] = []
        self.events: list[tuple[str, dict[str, Any]]] = []

    def _keep(self, event: str, details: dict[str, Any]) -> None:
        self.events.append((event, {k: v for k, v in details.items() if k != "engine"}))

    def on_flow(self, event: str, details: dict[str, Any]) -> None:
        with self._lock:
            self.flow_states.append(event)
            self._keep(event, details)

    def on_atom(self, event: str, details: dict[str, Any]) -> None:
        with self._lock:
            if "progress" in details:
                self.progress.append((details["atom_name"], details["progress"]))
            else:
                self.atom_states.append((details["atom_name"], event))
            self._keep(event, details)
