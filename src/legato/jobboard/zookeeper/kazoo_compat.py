"""ZooKeeper's ``addWatch`` (a persistent recursive watch, ZooKeeper 3.6+), which kazoo has no
public call for, and a client's session timeout: the one place the board touches kazoo's
private names.

``add_watch(client, path, watcher)`` sends the request (``KazooClient._call``, with a request
shaped like kazoo's own) and routes the events it produces, for every node under ``path``, to
``watcher`` the way kazoo routes one-shot watches: kazoo's connection thread reads each event,
looks up the watchers of its path (``KazooClient._data_watchers.pop(path)``) and hands each to
``handler.dispatch_callback``, so events reach ``watcher`` in the server's order, on kazoo's
callback thread, with one-shot watchers' events in between. Nothing of kazoo is replaced: the
dict of data watchers becomes one that also answers ``watcher`` for the followed paths.

``remove_watch`` stops that routing for one watcher (a board closing on a client it shares).
``session_timeout(client)`` reads the session timeout a client asks for, which kazoo keeps only
in a private attribute: a board given a client caps its leases with it.

``check(client)`` runs at connect. It accepts the kazoo versions in ``TESTED``; any other
version only if every name and signature relied on is as in those (then it logs that the version
is untested); otherwise it raises ``MissingDriver`` with one line naming the kazoo version.
(kazoo's open change adding the ``zxid`` to ``_read_watch_event`` would only add a parameter
there, and is caught here.)
"""

from __future__ import annotations

import collections
import inspect
import logging
import threading
from collections.abc import Callable
from typing import Any

import kazoo
from kazoo.client import KazooClient
from kazoo.protocol import serialization
from kazoo.protocol.connection import ConnectionHandler

from legato import errors

__all__ = ["TESTED", "add_watch", "check", "remove_watch", "session_timeout"]

logger = logging.getLogger(__name__)

#: kazoo releases the board was tested with (scripts/kazoo-matrix.sh runs the newest too).
TESTED = ("2.10.0", "2.11.0")
_PERSISTENT_RECURSIVE = 1  # addWatch mode
_ADD_WATCH = 106  # addWatch opcode
#: Serialises changes to a client's persistent watchers (boards may share a client).
_ROUTING = threading.Lock()


def _signature(fn: Any) -> list[str]:
    return list(inspect.signature(fn).parameters)


def _problems() -> tuple[str, ...]:
    found = []
    if _signature(KazooClient._call) != ["self", "request", "async_object"]:
        found.append("KazooClient._call(request, async_object)")
    if _signature(ConnectionHandler._read_watch_event) != ["self", "buffer", "offset"]:
        found.append("ConnectionHandler._read_watch_event(buffer, offset)")
    try:
        routed = "_data_watchers.pop(" in inspect.getsource(ConnectionHandler._read_watch_event)
    except (OSError, TypeError):  # no source to read (a build without .py files)
        routed = True
    if not routed:
        found.append("events routed through KazooClient._data_watchers")
    if not (hasattr(serialization, "write_string") and hasattr(serialization, "int_struct")):
        found.append("kazoo.protocol.serialization.write_string/int_struct")
    return tuple(found)


def check() -> None:
    """Refuse a kazoo this module cannot work with (see the module docstring)."""
    version = getattr(kazoo, "__version__", None) or _installed()
    problems = _problems()
    if problems:
        raise errors.MissingDriver(
            f"kazoo {version} is not supported by the ZooKeeper board (tested: "
            f"{', '.join(TESTED)}; changed: {'; '.join(problems)}): install kazoo "
            f"{TESTED[-1]}", extra="zookeeper")
    if version not in TESTED:
        logger.info("kazoo %s is untested with the ZooKeeper board (tested: %s); the "
                    "internals it relies on are unchanged", version, ", ".join(TESTED))


def _installed() -> str:
    from importlib.metadata import version

    return version("kazoo")


class _AddWatch(collections.namedtuple("_AddWatch", "path mode")):
    type = _ADD_WATCH

    def serialize(self) -> bytearray:
        return bytearray(serialization.write_string(self.path)
                         + serialization.int_struct.pack(self.mode))

    @classmethod
    def deserialize(cls, buffer: bytes, offset: int) -> bool:
        return True  # the reply has no body


class _Watchers(collections.defaultdict[str, set[Any]]):
    """kazoo's data watchers by path, answering also the persistent watchers of the paths
    under the followed roots (kazoo pops a path's watchers when an event about it comes).

    ``persistent`` holds ``(root, watcher)`` pairs: several boards sharing a client may follow
    one root. It is replaced, never changed in place, so kazoo's thread reads it unlocked."""

    persistent: tuple[tuple[str, Callable[[Any], None]], ...]

    def pop(self, path: str, *default: Any) -> Any:
        found = super().pop(path, *default)
        extra: list[Any] | None = None
        for root, watcher in self.persistent:  # once per event: a loop, no comprehension
            if path.startswith(root):
                extra = [watcher] if extra is None else [*extra, watcher]
        return found if extra is None else [*found, *extra]


def add_watch(client: Any, path: str, watcher: Callable[[Any], None]) -> Any:
    """Set a persistent recursive watch on ``path`` (on the current connection): ``watcher``
    gets kazoo's ``WatchedEvent`` for each node under it created, changed or deleted. Returns
    the request's kazoo async result."""
    full = client.chroot + path
    with _ROUTING:
        watchers = client._data_watchers
        if not isinstance(watchers, _Watchers):  # kazoo makes a new dict when a session ends
            routed = _Watchers(set, watchers)
            routed.persistent = ()
            client._data_watchers = watchers = routed
        pair = (full + "/", watcher)
        if pair not in watchers.persistent:
            watchers.persistent = (*watchers.persistent, pair)
    result = client.handler.async_result()
    client._call(_AddWatch(full, _PERSISTENT_RECURSIVE), result)
    return result


def remove_watch(client: Any, path: str, watcher: Callable[[Any], None]) -> None:
    """Stop routing events under ``path`` to ``watcher`` (its board closes; the client goes
    on). The server keeps the watch until the session ends (kazoo has no ``removeWatches``,
    and another board on the client may follow the same path): events about ``path`` that
    nobody follows any more are dropped by kazoo as for any path without watchers."""
    with _ROUTING:
        watchers = client._data_watchers
        if isinstance(watchers, _Watchers):
            pair = (client.chroot + path + "/", watcher)
            watchers.persistent = tuple(p for p in watchers.persistent if p != pair)


def session_timeout(client: Any) -> float:
    """The session timeout (seconds) ``client`` asks the server for: kazoo keeps it only in
    ``KazooClient._session_timeout`` (milliseconds), set by its constructor. A shared client's
    caps the board's leases."""
    value = getattr(client, "_session_timeout", None)
    if not isinstance(value, int) or value <= 0:
        raise errors.MissingDriver(
            f"cannot read the session timeout of the kazoo client given to the ZooKeeper board "
            f"(kazoo {getattr(kazoo, '__version__', None) or _installed()}; tested: "
            f"{', '.join(TESTED)})", extra="zookeeper")
    return value / 1000.0
