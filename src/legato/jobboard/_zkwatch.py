"""Persistent recursive watches (ZooKeeper 3.6 and later) on a kazoo client.

kazoo 2.11 has no API for them, so ``TreeWatch`` sends ZooKeeper's ``addWatch`` request itself
through the client's request queue and takes the events for the watched nodes' children from the
client's connection, as they are read from the socket. Events are therefore handled on kazoo's
connection thread in the order the server sent them, and before the reply to any request sent
after the change they describe: once a request's reply is back, the events for every change made
before it (by any client, on this server) have been handled.

A persistent watch belongs to one connection: after a reconnection it must be added again, and
events may have been missed in between (the board then lists the nodes afresh).
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Mapping
from typing import Any

from kazoo.protocol.serialization import Watch, int_struct, write_string

__all__ = ["TreeWatch"]

logger = logging.getLogger(__name__)

#: ``addWatch`` mode: every node under the path, each create/change/delete, until removed.
_PERSISTENT_RECURSIVE = 1


class _AddWatch(collections.namedtuple("_AddWatch", "path mode")):
    """ZooKeeper's ``addWatch`` request (opcode 106), shaped like kazoo's own requests."""

    type = 106

    def serialize(self) -> bytearray:
        return bytearray(write_string(self.path) + int_struct.pack(self.mode))

    @classmethod
    def deserialize(cls, buffer: bytes, offset: int) -> bool:
        return True  # the reply has no body


class TreeWatch:
    """Hands every event about a child of ``roots`` to ``deliver(label, event_type, name)``.

    ``roots`` maps each watched node's path to a label. ``deliver`` runs on kazoo's connection
    thread: it must be quick and never block (it may send requests, not wait for them).
    Exceptions it raises are logged.
    """

    def __init__(self, client: Any, roots: Mapping[str, str],
                 deliver: Callable[[str, int, str], None]) -> None:
        self._client = client
        self._roots = dict(roots)
        self._deliver = deliver
        connection = client._connection
        self._kazoo_read = connection._read_watch_event
        connection._read_watch_event = self._read_event

    def add_async(self) -> list[Any]:
        """Send ``addWatch`` for every root on the current connection; kazoo async results."""
        pending = []
        for path in self._roots:
            result = self._client.handler.async_result()
            self._client._call(_AddWatch(f"{self._client.chroot}{path}", _PERSISTENT_RECURSIVE),
                               result)
            pending.append(result)
        return pending

    def _read_event(self, buffer: bytes, offset: int) -> None:
        try:
            watch, _ = Watch.deserialize(buffer, offset)
            parent, _, name = self._client.unchroot(watch.path).rpartition("/")
            label = self._roots.get(parent)
            if label is not None and name:
                self._deliver(label, watch.type, name)
                client = self._client
                if (watch.path not in client._data_watchers
                        and watch.path not in client._child_watchers):
                    return  # nothing of kazoo's own waits on this node
        except Exception:  # never break the connection thread
            logger.exception("could not handle a ZooKeeper watch event")
        self._kazoo_read(buffer, offset)
