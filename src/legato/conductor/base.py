"""The conductor contract: claim jobs from a board, run their flows, finish the jobs."""

from __future__ import annotations

import abc
import os
import socket
import time
import uuid
from typing import TYPE_CHECKING, Any

from legato.jobboard.base import Entity, JobBoard
from legato.notifier import Notifier

if TYPE_CHECKING:
    from legato.persistence.base import Persistence

__all__ = ["Conductor"]


class Conductor(abc.ABC):
    """Base for all conductor implementations.

    Conductors act as entities which extract jobs from a jobboard, assign their work to some
    engine (using some desired configuration) and then wait for that work to complete. If the
    work fails then they abandon the claimed work (or, if the process they run in dies, the
    claim's lease ends by itself) and another conductor later finishes the failed conductor's
    work, resuming from the last step recorded in persistence.

    Args:
        name: the conductor's name. Its entity (and claim owner) name adds the host, the pid
            and a token unique to this object: ``name@host:pid/token``, so two conductors with one
            name never hold each other's claims.
        jobboard: the board to claim jobs from.
        persistence: where jobs' logbooks live and engines record progress (the board's
            persistence when None).
        engine: the engine kind (``"serial"`` when None).
        engine_options: extra keyword options for every engine built.
    """

    #: Entity kind used when creating new entity objects.
    ENTITY_KIND = "conductor"

    def __init__(self, name: str, jobboard: JobBoard, persistence: Persistence | None = None,
                 engine: str | None = None, engine_options: dict[str, Any] | None = None) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError("a conductor needs a non-empty name")
        self._name = name
        self._jobboard = jobboard
        self._persistence = persistence
        self._engine = engine
        self._engine_options = dict(engine_options or {})
        self._notifier = Notifier()
        host = socket.gethostname()
        pid = os.getpid()
        self._conductor = Entity(
            kind=self.ENTITY_KIND,
            name=f"{name}@{host}:{pid}/{uuid.uuid4().hex[:8]}",
            metadata={"name": name, "host": host, "pid": pid, "started_at": time.time(),
                      "class": type(self).__name__},
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._conductor.name!r}>"

    @property
    def name(self) -> str:
        """The name given at construction."""
        return self._name

    @property
    def conductor(self) -> Entity:
        """Entity object that represents this conductor (its ``name`` is the claim owner)."""
        return self._conductor

    @property
    def notifier(self) -> Notifier:
        """The conductor actions (or other state changes) notifier.

        See the implementation's ``EVENTS_EMITTED`` for the events and their payloads.
        """
        return self._notifier

    @property
    def jobboard(self) -> JobBoard:
        return self._jobboard

    @property
    def persistence(self) -> Persistence | None:
        """Where engines record progress: the conductor's persistence, else the board's."""
        return self._persistence if self._persistence is not None else self._jobboard.persistence

    def connect(self) -> None:
        """Ensures the jobboard is connected (noop if it is already)."""
        self._jobboard.connect()

    def close(self) -> None:
        """Closes the contained jobboard, disallowing further use."""
        self._jobboard.close()

    @abc.abstractmethod
    def run(self, max_dispatches: int | None = None) -> None:
        """Continuously claims, runs, and consumes jobs (and repeat).

        Args:
            max_dispatches: with a positive value, return once exactly that many jobs have been
                dispatched and finished; None or a value <= 0 means no limit (run until stopped).
        """
