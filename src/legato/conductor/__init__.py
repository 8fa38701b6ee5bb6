"""Conductors: claim jobs from a jobboard, run their flows in engines, finish the jobs.

``fetch(kind, name, jobboard, **kwargs)`` builds a conductor by kind (entry point group
``legato.conductors``): ``blocking`` or ``nonblocking``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from legato import _plugins, errors
from legato.conductor._metrics import ConductorMetrics
from legato.conductor.base import Conductor
from legato.conductor.blocking import BlockingConductor
from legato.conductor.executor import ExecutorConductor
from legato.conductor.nonblocking import NonBlockingConductor

if TYPE_CHECKING:
    from legato.jobboard.base import JobBoard

__all__ = [
    "BlockingConductor",
    "Conductor",
    "ConductorMetrics",
    "ExecutorConductor",
    "NonBlockingConductor",
    "fetch",
]

#: The default entry point group of conductor kinds.
NAMESPACE = "legato.conductors"


def fetch(kind: str, name: str, jobboard: JobBoard, namespace: str = NAMESPACE,
          **kwargs: Any) -> Conductor:
    """Fetch a conductor backend with the given options.

    Looks for the entry point ``kind`` in the entry point group ``namespace`` (the built-in
    kinds ``blocking`` and ``nonblocking`` always exist in the default group) and instantiates
    it with ``name``, ``jobboard`` and any conductor-specific ``kwargs``.

    Raises:
        NotFound: no conductor of that kind.
    """
    family = _plugins.Family(namespace)
    try:
        cls = family.load(kind)
    except errors.UnknownBackend as exc:
        raise errors.NotFound(str(exc)) from exc
    conductor: Conductor = cls(name, jobboard, **kwargs)
    return conductor
