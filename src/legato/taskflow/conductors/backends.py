"""``taskflow.conductors.backends``: ``fetch(kind, name, jobboard, ...)`` is Legato's."""

from __future__ import annotations

from legato.conductor import (
    BlockingConductor,
    Conductor,
    ExecutorConductor,
    NonBlockingConductor,
    fetch,
)

__all__ = ["BlockingConductor", "Conductor", "ExecutorConductor", "NonBlockingConductor", "fetch"]
