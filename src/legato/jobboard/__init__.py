"""Jobboards: where producers post jobs and conductors claim them.

``connect(url)`` picks a backend by URL scheme (entry point group ``legato.jobboards``):
``memory://``, ``sqlite:///path.db``, ``postgresql://...``, ``redis://...``,
``zookeeper://host:2181/path``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from legato import _plugins
from legato.jobboard.base import (
    POSTED,
    REMOVAL,
    Capabilities,
    Entity,
    Job,
    JobBoard,
    JobCounts,
    JobRecord,
)
from legato.states import JobPriority, JobState

if TYPE_CHECKING:
    from legato.persistence.base import Persistence

__all__ = [
    "POSTED",
    "REMOVAL",
    "Capabilities",
    "Entity",
    "Job",
    "JobBoard",
    "JobCounts",
    "JobPriority",
    "JobRecord",
    "JobState",
    "connect",
]

BACKENDS = _plugins.Family("legato.jobboards")


def connect(url: str, *, persistence: Persistence | None = None, **options: Any) -> JobBoard:
    """Return the (unconnected) board for ``url``; use it as a context manager to connect.

    Raises:
        UnknownBackend: no backend serves the URL's scheme.
        MissingDriver: the backend's driver is not installed (names the extra).
    """
    cls = BACKENDS.load(_plugins.scheme_of(url))
    board: JobBoard = cls.from_url(url, persistence=persistence, **options)
    return board
