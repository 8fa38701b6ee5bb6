"""Persistence: where engines record every step of a flow.

``connect(url)`` picks a backend by URL scheme (entry point group ``legato.persistence``):
``memory://``, ``sqlite:///path.db``, ``postgresql://...``, ``mysql://...``.
"""

from __future__ import annotations

from typing import Any

from legato import _plugins
from legato.persistence.base import Persistence
from legato.persistence.models import (
    AtomDetail,
    Claim,
    FlowDetail,
    FlowSummary,
    LogBook,
    RetryDetail,
    TaskDetail,
)

__all__ = [
    "AtomDetail",
    "Claim",
    "FlowDetail",
    "FlowSummary",
    "LogBook",
    "Persistence",
    "RetryDetail",
    "TaskDetail",
    "connect",
]

BACKENDS = _plugins.Family("legato.persistence")


def connect(url: str, **options: Any) -> Persistence:
    """Return the persistence backend for ``url`` (not yet upgraded: call ``upgrade()``).

    Raises:
        UnknownBackend: no backend serves the URL's scheme.
        MissingDriver: the backend's driver is not installed (names the extra).
    """
    cls = BACKENDS.load(_plugins.scheme_of(url))
    backend: Persistence = cls(url, **options)
    return backend
