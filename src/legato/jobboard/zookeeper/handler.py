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
* ``select`` waits with ``poll`` sets it keeps, per thread, one for each set of sockets it is
  asked about (kazoo's connection thread asks about the same two or three again and again, three
  times per message read), where kazoo's builds, fills and closes an epoll set on every call.
  It answers as ``select.select`` does; where ``poll`` is missing it is kazoo's own.
"""

from __future__ import annotations

import logging
import math
import select
import threading
from collections.abc import Callable
from typing import Any

from kazoo.handlers.threading import SequentialThreadingHandler

__all__ = ["PollingHandler"]

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

    def select(self, rlist: list[Any], wlist: list[Any], xlist: list[Any],
               timeout: float | None = None) -> tuple[list[Any], list[Any], list[Any]]:
        if not hasattr(select, "poll"):
            return super().select(rlist, wlist, xlist, timeout)  # type: ignore[no-any-return]
        reads, writes = [_fd(obj) for obj in rlist], [_fd(obj) for obj in wlist]
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
