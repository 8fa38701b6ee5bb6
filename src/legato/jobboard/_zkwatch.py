"""What the ZooKeeper board needs from kazoo beyond its API: persistent recursive watches, data
watches whose events arrive in order with replies, reads of several nodes in one request, and a
cheaper wait for the socket.

kazoo 2.11 has no API for persistent watches, so ``Watches`` sends ZooKeeper's ``addWatch``
request (3.6 and later) itself through the client's request queue, and takes the events about
the children of the nodes it follows from the client's connection as they are read from the
socket. Events are therefore handled on kazoo's connection thread in the order the server sent
them, before the reply to any request sent after the change they describe: once a request's
reply is back, the events for every change made before it (by any client, on this server) have
been handled. Reads made with ``Watches.get_async`` leave a one-shot data watch on the node whose
event comes the same way (kazoo's own watchers would run later, on another thread).

Watches belong to one connection: after a reconnection they must be set again, and events may
have been missed in between (the board then lists the nodes afresh).
"""

from __future__ import annotations

import collections
import logging
import math
import select
import threading
from collections.abc import Callable, Mapping
from typing import Any

from kazoo.exceptions import EXCEPTIONS
from kazoo.handlers.threading import SequentialThreadingHandler
from kazoo.protocol.serialization import (
    GetData,
    Watch,
    int_struct,
    multiheader_struct,
    read_buffer,
    stat_struct,
    write_string,
)
from kazoo.protocol.states import ZnodeStat

__all__ = ["Handler", "Watches", "commit_sent", "read_many_async"]

logger = logging.getLogger(__name__)

#: ``addWatch`` mode: every node under the path, each create/change/delete, until removed.
_PERSISTENT_RECURSIVE = 1
_POLL_IN = getattr(select, "POLLIN", 1) | getattr(select, "POLLPRI", 2)
_POLL_OUT = getattr(select, "POLLOUT", 4)
# As ``select`` does, report errors and hang-ups as readable (and writable): the next read or
# write then raises.
_POLL_BAD = (getattr(select, "POLLERR", 8) | getattr(select, "POLLHUP", 16)
             | getattr(select, "POLLNVAL", 32))


class _AddWatch(collections.namedtuple("_AddWatch", "path mode")):
    """ZooKeeper's ``addWatch`` request (opcode 106), shaped like kazoo's own requests."""

    type = 106

    def serialize(self) -> bytearray:
        return bytearray(write_string(self.path) + int_struct.pack(self.mode))

    @classmethod
    def deserialize(cls, buffer: bytes, offset: int) -> bool:
        return True  # the reply has no body


class _WatchedGet(GetData):  # type: ignore[misc]
    """A read that leaves a data watch on the node without a kazoo watcher: its event reaches
    ``Watches`` on the connection thread only."""

    def serialize(self) -> bytearray:
        return bytearray(write_string(self.path) + b"\x01")


class _MultiRead(collections.namedtuple("_MultiRead", "paths")):
    """ZooKeeper's ``multiRead`` request (opcode 22, 3.6 and later): several reads, one reply.
    Its result lists ``(data, stat)`` for each node read, or the exception for a failed read."""

    type = 22

    def serialize(self) -> bytearray:
        request = bytearray()
        for path in self.paths:
            request += multiheader_struct.pack(GetData.type, False, -1)
            request += write_string(path) + b"\x00"  # no watch
        request += multiheader_struct.pack(-1, True, -1)
        return request

    @classmethod
    def deserialize(cls, buffer: bytes, offset: int) -> list[Any]:
        found: list[Any] = []
        while True:
            kind, done, _ = multiheader_struct.unpack_from(buffer, offset)
            offset += multiheader_struct.size
            if done:
                return found
            if kind == GetData.type:
                data, offset = read_buffer(buffer, offset)
                found.append((data, ZnodeStat._make(stat_struct.unpack_from(buffer, offset))))
                offset += stat_struct.size
            else:
                code = int_struct.unpack_from(buffer, offset)[0]
                offset += int_struct.size
                found.append(EXCEPTIONS[code]())


def read_many_async(client: Any, paths: list[str]) -> Any:
    """Read several nodes in one request; a kazoo async result (see ``_MultiRead``)."""
    result = client.handler.async_result()
    client._call(_MultiRead([client.chroot + path for path in paths]), result)
    return result


class Watches:
    """Hands every event about a child of ``roots`` to ``deliver(label, event_type, name)``
    (and about a child's child, as ``child/name``).

    ``roots`` maps each followed node's path to a label; ``add_async`` sets persistent
    recursive watches on some of them, and ``get_async`` reads a child leaving a one-shot watch.
    ``deliver`` runs on kazoo's connection thread: it must be quick and never block (it may
    send requests, not wait for them). Exceptions it raises are logged.
    """

    def __init__(self, client: Any, roots: Mapping[str, str],
                 deliver: Callable[[str, int, str], None]) -> None:
        self._client = client
        self._roots = dict(roots)
        self._deliver = deliver
        connection = client._connection
        self._kazoo_read = connection._read_watch_event
        connection._read_watch_event = self._read_event

    def add_async(self, path: str) -> Any:
        """Set a persistent recursive watch on ``path`` (on the current connection)."""
        result = self._client.handler.async_result()
        self._client._call(_AddWatch(self._client.chroot + path, _PERSISTENT_RECURSIVE), result)
        return result

    def get_async(self, path: str) -> Any:
        """``KazooClient.get_async``, leaving a one-shot watch whose event is delivered here."""
        result = self._client.handler.async_result()
        self._client._call(_WatchedGet(self._client.chroot + path, None), result)
        return result

    def _read_event(self, buffer: bytes, offset: int) -> None:
        try:
            watch, _ = Watch.deserialize(buffer, offset)
            label, name = self._place(self._client.unchroot(watch.path))
            if label is not None:
                self._deliver(label, watch.type, name)
                client = self._client
                if (watch.path not in client._data_watchers
                        and watch.path not in client._child_watchers):
                    return  # nothing of kazoo's own waits on this node
        except Exception:  # never break the connection thread
            logger.exception("could not handle a ZooKeeper watch event")
        self._kazoo_read(buffer, offset)

    def _place(self, path: str) -> tuple[str | None, str]:
        """The label of the root that ``path`` is a child (or grandchild) of, and its name
        under the root; None if it is neither."""
        parent, _, name = path.rpartition("/")
        if parent in self._roots and name:
            return self._roots[parent], name
        grandparent, _, child = parent.rpartition("/")
        if grandparent in self._roots and child and name:
            return self._roots[grandparent], f"{child}/{name}"
        return None, ""


class Handler(SequentialThreadingHandler):  # type: ignore[misc]
    """kazoo's threading handler, waiting for its sockets with ``poll``: kazoo's own ``select``
    opens, fills and closes an epoll set each time, three times for every message it reads.

    ``sent`` is notified each time kazoo's connection thread goes back to waiting for the socket,
    having written what it had to (see ``commit_sent``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.sent = threading.Condition()

    def select(self, rlist: list[Any], wlist: list[Any], xlist: list[Any],
               timeout: float | None = None) -> tuple[list[Any], list[Any], list[Any]]:
        if rlist:  # the connection thread waits for replies (its writes are done)
            with self.sent:
                self.sent.notify_all()
        if not hasattr(select, "poll"):
            return super().select(rlist, wlist, xlist, timeout)  # type: ignore[no-any-return]
        poller = select.poll()
        wanted = [(obj, _fd(obj), _POLL_IN) for obj in rlist]
        wanted += [(obj, _fd(obj), _POLL_OUT) for obj in wlist]
        masks: dict[int, int] = {}
        for _, fd, mask in wanted:
            masks[fd] = masks.get(fd, 0) | mask
        for fd, mask in masks.items():
            poller.register(fd, mask)
        ready = poller.poll(None if timeout is None else math.ceil(timeout * 1000))
        if not ready:
            return [], [], []
        flags = dict(ready)
        found: tuple[list[Any], list[Any], list[Any]] = ([], [], [])
        for obj, fd, mask in wanted:
            if flags.get(fd, 0) & (mask | _POLL_BAD):
                found[0 if mask == _POLL_IN else 1].append(obj)
        return found


def commit_sent(client: Any, txn: Any, timeout: float) -> Any:
    """``txn.commit_async()``, returning once kazoo's connection thread has written the request
    (or its result is in, or ``timeout`` seconds have passed).

    kazoo only queues a request for its connection thread, which needs the GIL to write it: a
    caller that goes on with Python work right away holds the GIL, and the request would wait
    until the caller next blocks (when it reads the result, say) instead of being on its way.
    """
    handler = client.handler
    if not isinstance(handler, Handler):
        return txn.commit_async()
    with handler.sent:
        result = txn.commit_async()

        def sent() -> bool:
            queued = list(client._queue)  # one step: the connection thread pops from it
            return bool(result.ready()) or all(item[1] is not result for item in queued)

        handler.sent.wait_for(sent, timeout)
    return result


def _fd(obj: Any) -> int:
    return obj if isinstance(obj, int) else int(obj.fileno())
