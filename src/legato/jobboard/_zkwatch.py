"""Following the children of a ZooKeeper node: one thread per node, listings folded under load.

Used by ``ZooKeeperJobBoard`` for ``jobs/`` and ``claims/``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kazoo.client import KazooState

__all__ = ["Lister"]

logger = logging.getLogger(__name__)

#: From this many children on, at most ~10 % of the time goes to listing (see ``Lister``).
_LARGE_LISTING = 1000


class Lister:
    """Lists the children of one node whenever its watch fires, on a thread of its own, and
    hands each listing to ``apply(children, issued, fired)``: ``issued`` is when it was
    requested (``time.monotonic()``), ``fired`` whether a change event preceded it.

    A listing costs O(children). After each one the thread pauses in proportion to its cost and
    to the number of children, so that with many children at most about a tenth of the time goes
    to listing, several changes folded into one listing, instead of one listing per post or
    consume; a post is then seen a little later (nobody waits for a job while thousands are
    queued). With a handful of children the pause is next to nothing.
    """

    def __init__(self, client: Any, path: str, apply: Callable[[list[str], float, bool], None],
                 *, timeout: float) -> None:
        self._client, self._apply, self._timeout = client, apply, timeout
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._fired = False
        self._lock = threading.Lock()
        #: The child version of the node as of the last listing applied.
        self.cversion = -1
        self.path = path
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"legato-zookeeper-list:{path}")

    def start(self) -> None:
        """List once now (raising on failure), then follow changes."""
        self._list()
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._dirty.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def poke(self) -> None:
        """List again soon (after a reconnection, say)."""
        self._dirty.set()

    def _watch(self, event: Any) -> None:
        # Called on kazoo's event thread: only flag it. NONE events mean the connection dropped.
        if event.type != "NONE":
            self._fired = True
        self._dirty.set()

    def list_now(self) -> None:
        """List now, on the calling thread (kazoo errors propagate)."""
        self._list()

    def _list(self) -> int:
        # One listing at a time, so that an older listing never lands after a newer one.
        with self._lock:
            issued = time.monotonic()
            fired, self._fired = self._fired, False
            try:
                children, stat = self._client.get_children_async(
                    self.path, watch=self._watch, include_data=True).get(timeout=self._timeout)
            except BaseException:
                self._fired = self._fired or fired
                raise
            self._apply(children, issued, fired)
            self.cversion = stat.cversion
            return len(children)

    def _run(self) -> None:
        while True:
            self._dirty.wait()
            self._dirty.clear()
            if self._stopping.is_set():
                return
            if self._client.state != KazooState.CONNECTED:
                continue  # poked again on reconnection
            started = time.monotonic()
            try:
                count = self._list()
            except Exception as exc:  # the connection dropped meanwhile: again when it is back
                connected = self._client.state == KazooState.CONNECTED
                logger.log(logging.WARNING if connected else logging.DEBUG,
                           "could not list %s: %r", self.path, exc)
                self._dirty.set()
                self._stopping.wait(0.1)
                continue
            # Up to ~10 % of the time listing when large, next to nothing when small.
            cost = time.monotonic() - started
            self._stopping.wait(cost * min(9.0, count / _LARGE_LISTING * 9))
