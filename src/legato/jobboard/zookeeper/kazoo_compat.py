"""What the ZooKeeper board needs from kazoo beyond its API: persistent recursive watches, data
watches whose events arrive in order with replies, reads of several nodes in one request,
transactions built without kazoo's per-operation checks, and cheaper socket waits.

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
import contextlib
import functools
import logging
import math
import select
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from typing import Any

from kazoo.exceptions import EXCEPTIONS
from kazoo.handlers.threading import SequentialThreadingHandler
from kazoo.protocol.connection import CLOSE_RESPONSE
from kazoo.protocol.paths import _prefix_root
from kazoo.protocol.serialization import (
    Create,
    Delete,
    GetData,
    SetData,
    Transaction,
    Watch,
    int_struct,
    multiheader_struct,
    read_buffer,
    stat_struct,
    write_string,
)
from kazoo.protocol.states import ZnodeStat
from kazoo.security import OPEN_ACL_UNSAFE

__all__ = ["Handler", "Ops", "Watches", "commit_async", "read_many_async",
           "shutdown"]

logger = logging.getLogger(__name__)

#: ``addWatch`` mode: every node under the path, each create/change/delete, until removed.
_PERSISTENT_RECURSIVE = 1
_HAS_POLL = hasattr(select, "poll")
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
        return _multi_results(buffer, offset)


def _multi_results(buffer: bytes, offset: int) -> list[Any]:
    """The results in the reply to a ``multi`` or ``multiRead`` request, one per operation: a
    read's ``(data, stat)``, a create's path, a set's stat, True for a delete or a check, and the
    error for an operation that failed (in a failed transaction, every operation's)."""
    results: list[Any] = []
    while True:
        kind, done, _ = multiheader_struct.unpack_from(buffer, offset)
        offset += multiheader_struct.size
        if done:
            return results
        if kind == GetData.type:
            data, offset = read_buffer(buffer, offset)
            results.append((data, ZnodeStat._make(stat_struct.unpack_from(buffer, offset))))
            offset += stat_struct.size
        elif kind == Create.type:
            length = int_struct.unpack_from(buffer, offset)[0]
            offset += int_struct.size
            results.append(buffer[offset:offset + length].decode())
            offset += length
        elif kind == SetData.type:
            results.append(ZnodeStat._make(stat_struct.unpack_from(buffer, offset)))
            offset += stat_struct.size
        elif kind == -1:
            code = int_struct.unpack_from(buffer, offset)[0]
            offset += int_struct.size
            results.append(EXCEPTIONS[code]())
        else:  # a delete or a version check
            results.append(True)


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
        if not isinstance(getattr(connection._read, "__self__", None), _Eager):
            _Eager(connection)

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


class _Eager:
    """Reads from and writes to kazoo's socket without waiting for it first, and reads ahead.

    kazoo waits for the socket (``select``) before each read and write, and reads a message in
    two ``recv`` calls (its length, then the rest), then goes round its loop (another
    ``select``) for the next message, although the server's messages come in bursts (a reply
    and the events before it). Here one ``recv`` takes whatever has arrived, later reads are
    served from it, every complete message read ahead is handled in the same turn of kazoo's
    loop, and the handler reports the socket readable while anything read ahead is left.
    Anything else (nothing there yet, a partial message, an error, TLS) is left to kazoo's own
    code.
    """

    def __init__(self, connection: Any) -> None:
        self._connection = connection
        self._kazoo_read = connection._read
        self._kazoo_write = connection._write
        self._kazoo_read_socket = connection._read_socket
        connection._read, connection._write = self.read, self.write
        connection._read_socket = self.read_socket
        # What was read ahead, from which socket, and how much of it is used.
        self._from: socket.socket | None = None
        self._checked: Any = None  # the socket _plain was worked out for
        self._plain: socket.socket | None = None
        self._data = b""
        self._at = 0
        handler = getattr(connection, "handler", None)
        if isinstance(handler, Handler):
            handler.read_ahead = self

    def _socket(self) -> socket.socket | None:
        """The connection's socket if it is a plain one (not TLS)."""
        sock = self._connection._socket
        if sock is not self._checked:
            plain = isinstance(sock, socket.socket) and not isinstance(sock, ssl.SSLSocket)
            self._checked, self._plain = sock, (sock if plain else None)
        return self._plain

    def buffered(self, sock: Any) -> bool:
        """Whether bytes read ahead from ``sock`` wait to be read."""
        return sock is self._from and self._at < len(self._data)

    def read(self, length: int, timeout: float) -> bytes:
        sock = self._socket()
        if sock is None or length <= 0:
            return self._kazoo_read(length, timeout)  # type: ignore[no-any-return]
        if sock is not self._from:  # a new connection: drop what the old one left
            self._from, self._data, self._at = sock, b"", 0
        data, at = self._data, self._at
        if len(data) - at < length:
            data, at = data[at:], 0
            # (OSError: nothing to read yet, or an error, which kazoo reports)
            with contextlib.suppress(OSError):
                data += sock.recv(max(length - len(data), _READ_AHEAD))
            if len(data) < length:
                # (b"" from recv: the connection was closed, which kazoo reports)
                self._data, self._at = b"", 0
                rest: bytes = self._kazoo_read(length - len(data), timeout)
                return data + rest
        self._data, self._at = data, at + length
        return data[at:at + length]

    def read_socket(self, timeout: float) -> Any:
        """kazoo's ``_read_socket`` (one message), again while a whole message is read ahead."""
        response = self._kazoo_read_socket(timeout)
        while response != CLOSE_RESPONSE and self._whole_message():
            response = self._kazoo_read_socket(timeout)
        return response

    def _whole_message(self) -> bool:
        left = len(self._data) - self._at
        return (left >= int_struct.size and self._from is self._connection._socket
                and left >= int_struct.size + int_struct.unpack_from(self._data, self._at)[0])

    def write(self, message: bytes, timeout: float) -> None:
        sock = self._socket()
        sent = 0
        if sock is not None:
            with contextlib.suppress(OSError):  # not writable now (or an error kazoo reports)
                sent = sock.send(message)
        if sent < len(message):
            self._kazoo_write(message[sent:], timeout)


#: How much one read from the socket takes at most.
_READ_AHEAD = 65536


class Handler(SequentialThreadingHandler):  # type: ignore[misc]
    """kazoo's threading handler, waiting for its sockets with ``poll``: kazoo's own ``select``
    opens, fills and closes an epoll set each time, three times for every message it reads.
    Each thread keeps its poll sets, one per set of sockets, as kazoo's connection thread waits
    on the same two or three again and again.
    """

    def __init__(self) -> None:
        super().__init__()
        self._pollers = threading.local()
        #: The connection's reader, which may hold bytes already taken from its socket.
        self.read_ahead: _Eager | None = None

    def select(self, rlist: list[Any], wlist: list[Any], xlist: list[Any],
               timeout: float | None = None) -> tuple[list[Any], list[Any], list[Any]]:
        ahead = self.read_ahead
        if ahead is not None and rlist and ahead.buffered(rlist[0]):
            # Already read from that socket: ready now, and the others as they are now.
            readable, writable, _ = self._select(rlist[1:], wlist, 0)
            return [rlist[0], *readable], writable, []
        return self._select(rlist, wlist, timeout)

    def _select(self, rlist: list[Any], wlist: list[Any],
                timeout: float | None) -> tuple[list[Any], list[Any], list[Any]]:
        if not _HAS_POLL:
            return super().select(rlist, wlist, [], timeout)  # type: ignore[no-any-return]
        key = (*map(_fd, rlist), -1, *map(_fd, wlist))
        pollers: dict[tuple[int, ...], Any] | None = getattr(self._pollers, "by_fds", None)
        if pollers is None:
            pollers = self._pollers.by_fds = {}
        poller = pollers.get(key)
        if poller is None:
            if len(pollers) >= 8:  # sockets of earlier connections
                pollers.clear()
            poller = pollers[key] = _poller(key)
        ready = poller.poll(None if timeout is None else math.ceil(timeout * 1000))
        if not ready:
            return [], [], []
        flags = dict(ready)
        return ([obj for obj, fd in zip(rlist, key, strict=False)
                 if flags.get(fd, 0) & (_POLL_IN | _POLL_BAD)],
                [obj for obj, fd in zip(wlist, key[len(rlist) + 1:], strict=True)
                 if flags.get(fd, 0) & (_POLL_OUT | _POLL_BAD)], [])


def _poller(key: tuple[int, ...]) -> Any:
    """A poll set for the sockets of ``key``: descriptors to read, -1, descriptors to write."""
    masks: dict[int, int] = {}
    mask = _POLL_IN
    for fd in key:
        if fd == -1:
            mask = _POLL_OUT
        else:
            masks[fd] = masks.get(fd, 0) | mask
    poller = select.poll()
    for fd, wanted in masks.items():
        poller.register(fd, wanted)
    return poller


class Ops:
    """A transaction's operations, encoded as they are built; the methods are those of kazoo's
    ``TransactionRequest`` that the board uses, and ``commit_async`` sends them.

    kazoo's own builder checks every argument's type and normalises every path, and its
    connection thread then encodes each operation field by field, which cost more than the rest
    of a claim's Python. Here each operation is written straight into the request's bytes, on
    the caller's thread; a path already in normal form (``/a/b``) just gets the client's chroot
    in front, and any other goes through kazoo's normalisation.
    """

    __slots__ = ("_acl", "_chroot", "_root", "body")

    def __init__(self, client: Any) -> None:
        self.body = bytearray()
        self._chroot: str = client.chroot
        self._root = _root_of(self._chroot)
        self._acl = _acl_bytes(tuple(client.default_acl or OPEN_ACL_UNSAFE))

    def _path(self, path: str) -> bytes:
        if (path[:1] == "/" and path[-1:] != "/" and "//" not in path
                and "/." not in path):
            full = self._root + path
        else:
            full = _prefix_root(self._chroot, path)
        raw: bytes = full.encode()
        length: bytes = int_struct.pack(len(raw))
        return length + raw

    def create(self, path: str, value: bytes = b"", *, ephemeral: bool = False) -> None:
        body = self.body
        body += _CREATE
        body += self._path(path)
        body += int_struct.pack(len(value))
        body += value
        body += self._acl
        body += _EPHEMERAL if ephemeral else _PERSISTENT

    def delete(self, path: str, version: int = -1) -> None:
        body = self.body
        body += _DELETE
        body += self._path(path)
        body += int_struct.pack(version)

    def set_data(self, path: str, value: bytes, version: int = -1) -> None:
        body = self.body
        body += _SET_DATA
        body += self._path(path)
        body += int_struct.pack(len(value))
        body += value
        body += int_struct.pack(version)

    def serialize(self) -> bytes:
        """The ``multi`` request's body, as kazoo's ``Transaction.serialize`` writes it."""
        return bytes(self.body + _END)


_CREATE = multiheader_struct.pack(Create.type, False, -1)
_DELETE = multiheader_struct.pack(Delete.type, False, -1)
_SET_DATA = multiheader_struct.pack(SetData.type, False, -1)
_END = multiheader_struct.pack(-1, True, -1)
_PERSISTENT, _EPHEMERAL = int_struct.pack(0), int_struct.pack(1)


@functools.cache
def _acl_bytes(acl: tuple[Any, ...]) -> bytes:
    encoded = bytearray(int_struct.pack(len(acl)))
    for entry in acl:
        encoded += (int_struct.pack(entry.perms) + write_string(entry.id.scheme)
                    + write_string(entry.id.id))
    return bytes(encoded)


@functools.cache
def _root_of(chroot: str) -> str:
    """What goes in front of a normal path under ``chroot`` (kazoo keeps it normalised)."""
    root: str = _prefix_root(chroot, "")
    return "" if root == "/" else root


class _Multi(collections.namedtuple("_Multi", "body")):
    """ZooKeeper's ``multi`` request (opcode 14) with its body already encoded (``Ops``). Its
    result is what kazoo's ``Transaction`` gives: per operation, the created path, True (a
    delete or a check), the node's stat (a set) or, when the transaction failed, the error."""

    type = Transaction.type

    def serialize(self) -> bytes:
        return self.body  # type: ignore[no-any-return]

    @classmethod
    def deserialize(cls, buffer: bytes, offset: int) -> list[Any]:
        return _multi_results(buffer, offset)


def commit_async(client: Any, ops: Ops) -> Any:
    """Send a transaction; its kazoo async result lists each operation's result (as kazoo's
    ``TransactionRequest.commit_async`` does)."""
    result = client.handler.async_result()
    client._call(_Multi(ops.serialize()), result)
    return result


def _fd(obj: Any) -> int:
    return obj if isinstance(obj, int) else int(obj.fileno())


def shutdown(client: Any) -> None:
    """Stop a kazoo client (its ephemeral nodes end with its session) and free its threads."""
    with contextlib.suppress(Exception):
        client.stop()
    with contextlib.suppress(Exception):
        client.close()
