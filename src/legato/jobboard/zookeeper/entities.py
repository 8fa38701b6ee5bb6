"""The ZooKeeper board's entities (conductors and the like): ephemeral nodes under ``entities/``,
so they end with the session that registered them, and are registered again, from what this
process remembers, when the board carries on with a new session."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, unquote

from kazoo import exceptions as kz

from legato import errors
from legato.jobboard.base import Entity
from legato.jobboard.zookeeper.calls import Calls

__all__ = ["Entities"]


class Entities:
    """The entities under ``root``, and those this board registered.

    Args:
        root: the path of ``entities/``.
        calls: the board's client (``Calls``).
        clock: the board's clock.
    """

    def __init__(self, root: str, calls: Calls, *, clock: Callable[[], float]) -> None:
        self.root = root
        self._calls = calls
        self._live, self._result, self._read = calls.live, calls.result, calls.read
        self._clock = clock
        self._registered: dict[tuple[str, str], bytes] = {}
        self._lock = threading.Lock()

    def register(self, entity: Entity, ttl: float) -> None:
        data = json.dumps({"kind": entity.kind, "name": entity.name,
                           "metadata": entity.metadata,
                           "expires_at": self._clock() + ttl}).encode()
        self._put(self._path(entity.kind, entity.name), data)
        with self._lock:
            self._registered[(entity.kind, entity.name)] = data

    def unregister(self, entity: Entity) -> None:
        with self._lock:
            self._registered.pop((entity.kind, entity.name), None)
        with contextlib.suppress(kz.NoNodeError):
            self._result(self._live().delete_async(self._path(entity.kind, entity.name)))

    def restore(self) -> None:
        """Register again what this board registered (after its session ended)."""
        with self._lock:
            registered = list(self._registered.items())
        for (kind, name), data in registered:
            self._put(self._path(kind, name), data)

    def withdraw(self) -> None:
        """Delete the nodes of the entities this board registered (it closes, and the
        session they would end with goes on: a shared client's); best effort."""
        with self._lock:
            registered = list(self._registered)
            self._registered.clear()
        for kind, name in registered:
            with contextlib.suppress(kz.NoNodeError, errors.BoardUnavailable):
                self._result(self._live().delete_async(self._path(kind, name)))

    def forget(self) -> None:
        """The board closed: its entities ended with its session."""
        with self._lock:
            self._registered.clear()

    def __iter__(self) -> Iterator[Entity]:
        client = self._live()
        now = self._clock()
        for kind in sorted(self._result(client.get_children_async(self.root))):
            try:
                names = sorted(self._result(client.get_children_async(f"{self.root}/{kind}")))
            except kz.NoNodeError:
                continue
            found = self._read(*(f"{self.root}/{kind}/{n}" for n in names))
            for name, item in zip(names, found, strict=True):
                entity = None if item is None else _decode(kind, name, item[0], now)
                if entity is not None:
                    yield entity

    def _path(self, kind: str, name: str) -> str:
        return f"{self.root}/{quote(kind, safe='')}/{quote(name, safe='')}"

    def _put(self, path: str, data: bytes) -> None:
        client = self._live()
        try:
            self._result(client.create_async(path, data, ephemeral=True, makepath=True))
        except kz.NodeExistsError:
            stat = self._result(client.set_async(path, data))
            if stat.ephemeralOwner != self._calls.session_id:
                # Registered through another session (which would take the node with it when
                # it ends): make it ours.
                def ops(txn: Any) -> None:
                    txn.delete(path, version=stat.version)
                    txn.create(path, data, ephemeral=True)

                self._calls.commit(ops)


def _decode(kind: str, name: str, data: bytes, now: float) -> Entity | None:
    try:
        stored = json.loads(data)
        expires = float(stored.get("expires_at", 0.0))
        metadata = stored.get("metadata") or {}
    except (ValueError, TypeError, AttributeError):
        return None
    if expires <= now or not isinstance(metadata, dict):
        return None
    return Entity(kind=unquote(kind), name=unquote(name), metadata=metadata)
