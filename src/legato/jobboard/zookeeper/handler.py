"""``PollingHandler``: kazoo's threading handler, with watch callbacks that run at once and a
cheaper ``select``.

kazoo lets a client choose its handler (``KazooClient(handler=...)``, the ``IHandler`` interface
of ``kazoo.interfaces``). This one differs from kazoo's ``SequentialThreadingHandler`` in two
ways:

* ``dispatch_callback`` runs the functions given to ``run_inline`` at once, on the dispatching
  thread, instead of queueing them for the callback thread. kazoo's connection thread dispatches
  each watch event as it reads it, so such a watcher sees the events in the server's order,
  before the replies that follow them are handed out: once a request's reply is back, the
  events of every change made before it have been handled. (They must be quick and never
  block; what they raise is logged.)
* ``create_connection`` gives kazoo a plain TCP socket that reads ahead (``ReadAhead``): one
  ``recv`` takes whatever has arrived (the server's messages come in bursts: a reply and the
  events before it) and later reads are served from it. So does the socket kazoo's connection
  thread is woken through (``create_socket_pair``: a byte per request to send). Its
  ``pending()`` says how many bytes wait, as an ``ssl.SSLSocket``'s does, and kazoo reads those
  without waiting for the socket first; ``select`` reports such a socket readable at once, and
  always writable (its ``send`` waits for room when there is none). (TLS sockets are kazoo's
  own.)
* ``select`` otherwise waits with ``poll`` sets it keeps, per thread, one for each set of
  sockets it is asked about (kazoo's connection thread asks about the same two or three again
  and again), where kazoo's builds, fills and closes an epoll set on every call. It answers as
  ``select.select`` does; where ``poll`` is missing it is kazoo's own.

Each system call kazoo's connection thread makes lets the threads waiting for the GIL run, and
it waits for the GIL again after it, so on a busy process fewer of them is most of the speed.
"""

from __future__ import annotations

import logging
import math
import select
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any

from kazoo.handlers.threading import SequentialThreadingHandler

__all__ = ["PollingHandler", "ReadAhead"]

logger = logging.getLogger(__name__)

_READ = getattr(select, "POLLIN", 1) | getattr(select, "POLLPRI", 2)
_WRITE = getattr(select, "POLLOUT", 4)
# As ``select`` does, errors and hang-ups count as readable and writable: the next call raises.
_BAD = getattr(select, "POLLERR", 8) | getattr(select, "POLLHUP", 16) | getattr(
    select, "POLLNVAL", 32)
#: Poll sets kept per thread (those of earlier connections are dropped past it).
_KEEP = 8


class PollingHandler(SequentialThreadingHandler):  # type: ignore[misc]
    """kazoo's ``SequentialThreadingHandler`` with a cheaper ``select`` (module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()
        self._inline: set[Callable[..., Any]] = set()

    def run_inline(self, func: Callable[..., Any]) -> None:
        """Run ``func``'s callbacks on the thread that dispatches them (module docstring)."""
        self._inline.add(func)

    def dispatch_callback(self, callback: Any) -> None:
        if callback.func in self._inline:
            try:
                callback.func(*callback.args)
            except Exception:  # never break kazoo's connection thread
                logger.exception("a ZooKeeper watch callback failed")
        else:
            super().dispatch_callback(callback)

    def create_socket_pair(self) -> tuple[Any, Any]:
        read, write = super().create_socket_pair()
        return (ReadAhead(read) if _readahead(read) else read), write

    def create_connection(self, *args: Any, **kwargs: Any) -> Any:
        sock = super().create_connection(*args, **kwargs)
        return ReadAhead(sock) if _readahead(sock) else sock

    def select(self, rlist: list[Any], wlist: list[Any], xlist: list[Any],
               timeout: float | None = None) -> tuple[list[Any], list[Any], list[Any]]:
        # Called for every message kazoo's connection thread sends or reads: a plain loop, no
        # comprehension's frame.
        buffered: list[Any] | None = None
        for obj in rlist:
            if type(obj) is ReadAhead and obj.offset < len(obj.buffer):  # obj.pending(), inlined
                buffered = [obj] if buffered is None else [*buffered, obj]
        if buffered is not None:
            return buffered, [], []
        if not rlist and wlist:
            for obj in wlist:
                if type(obj) is not ReadAhead:
                    break
            else:
                return [], wlist, []  # its send waits for room itself
        if not hasattr(select, "poll"):
            return super().select(rlist, wlist, xlist, timeout)  # type: ignore[no-any-return]
        reads = [obj.sock.fileno() if type(obj) is ReadAhead else _fd(obj) for obj in rlist]
        writes = [obj.sock.fileno() if type(obj) is ReadAhead else _fd(obj) for obj in wlist]
        key = (*reads, -1, *writes)
        sets: dict[tuple[int, ...], Any] | None = getattr(self._local, "sets", None)
        if sets is None:
            sets = self._local.sets = {}
        poller = sets.get(key)
        if poller is None:
            if len(sets) >= _KEEP:
                sets.clear()
            poller = sets[key] = _poller(reads, writes)
        ready = dict(poller.poll(None if timeout is None else math.ceil(timeout * 1000)))
        if not ready:
            return [], [], []
        return ([obj for obj, fd in zip(rlist, reads, strict=True)
                 if ready.get(fd, 0) & (_READ | _BAD)],
                [obj for obj, fd in zip(wlist, writes, strict=True)
                 if ready.get(fd, 0) & (_WRITE | _BAD)], [])


class ReadAhead:
    """A connected TCP socket whose ``recv`` takes all that has arrived (up to ``_CHUNK``) and
    serves later calls from it; ``pending()`` is how many bytes are left. Only the socket
    methods listed here are offered: a call kazoo does not make today fails loudly instead of
    skipping what was read ahead. ``buffer[offset:]`` is what was read and not served yet, and
    ``sock`` the socket (``PollingHandler.select`` reads them without a call)."""

    __slots__ = ("buffer", "offset", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.offset = 0

    def pending(self) -> int:
        return len(self.buffer) - self.offset

    def recv(self, size: int) -> bytes:
        left = len(self.buffer) - self.offset
        if not left:
            data = self.sock.recv(max(size, _CHUNK))
            if len(data) <= size:
                return data
            self.buffer, self.offset = data, size
            return data[:size]
        start, self.offset = self.offset, self.offset + min(size, left)
        return self.buffer[start:self.offset]

    def send(self, data: Any, *flags: int) -> int:
        """Send what fits now; when nothing does, wait up to ``_SEND_WAIT`` seconds for room
        (``select`` says such a socket is always writable)."""
        try:
            return self.sock.send(data, *flags)
        except BlockingIOError:
            poller = select.poll()
            poller.register(self.sock.fileno(), _WRITE)
            if not poller.poll(_SEND_WAIT * 1000):
                raise TimeoutError("no room to send to ZooKeeper") from None
            return self.sock.send(data, *flags)

    def sendall(self, data: Any, *flags: int) -> None:
        self.sock.sendall(data, *flags)

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def setblocking(self, flag: bool) -> None:
        self.sock.setblocking(flag)

    def settimeout(self, value: float | None) -> None:
        self.sock.settimeout(value)

    def getpeername(self) -> Any:
        return self.sock.getpeername()

    def getsockname(self) -> Any:
        return self.sock.getsockname()


#: How much one read from the socket takes at most.
_CHUNK = 65536
#: How long a send waits for room in the socket's buffer.
_SEND_WAIT = 10


def _readahead(sock: Any) -> bool:
    """Whether ``sock`` may be wrapped in a ``ReadAhead`` (plain sockets, where poll exists)."""
    return (isinstance(sock, socket.socket) and not isinstance(sock, ssl.SSLSocket)
            and hasattr(select, "poll"))


def _poller(reads: list[int], writes: list[int]) -> Any:
    masks: dict[int, int] = {}
    for fd in reads:
        masks[fd] = masks.get(fd, 0) | _READ
    for fd in writes:
        masks[fd] = masks.get(fd, 0) | _WRITE
    poller = select.poll()
    for fd, mask in masks.items():
        poller.register(fd, mask)
    return poller


def _fd(obj: Any) -> int:
    return obj if isinstance(obj, int) else int(obj.fileno())
