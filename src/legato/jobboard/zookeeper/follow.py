"""Keeping the ZooKeeper board's index current: watches, listings, and the reads that go with them.

``Follower`` feeds an ``Index`` (``index``) from a persistent recursive watch on ``jobs/``
(``kazoo_compat.add_watch``) and one-shot watches on the claim nodes it reads (kazoo's
``get_async(path, watch=...)``), lists ``jobs/`` and ``claims/`` on each new connection, reads
claim nodes whose state an event left unknown, and reads the next candidates' job nodes ahead of
the claims. ``ZooKeeperJobBoard`` owns one and does the claiming.

The watchers run on kazoo's connection thread as it reads each event (``PollingHandler``), so
events are handled in the server's order, before the replies that follow them: once a request's
reply is back, every change made before it (by anyone, on this server) has reached the index.
With another handler, kazoo queues them for its callback thread, and ``after_events`` queues work
behind them (``catch_up`` waits for it; the board records its own writes with it).
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
from collections.abc import Callable
from typing import Any

from kazoo import exceptions as kz
from kazoo.protocol.states import Callback, EventType

from legato import errors
from legato.jobboard.zookeeper import kazoo_compat
from legato.jobboard.zookeeper.calls import Calls
from legato.jobboard.zookeeper.handler import PollingHandler
from legato.jobboard.zookeeper.index import CHANGED, CLAIMS, CREATED, DELETED, JOBS, Index, Node

__all__ = ["Follower", "ServerClock", "claim_expiry", "decode_claim"]

_KINDS = {EventType.CREATED: CREATED, EventType.DELETED: DELETED, EventType.CHANGED: CHANGED}


def decode_claim(data: bytes) -> dict[str, Any]:
    """A claim node's data; empty when it cannot be decoded."""
    with contextlib.suppress(Exception):  # anything: not JSON, nested too deep, not UTF-8
        claim = json.loads(data)
        if isinstance(claim, dict):
            return claim
    return {}


def claim_expiry(claim: dict[str, Any]) -> float:
    """When the claim's TTL ends; an unreadable claim node counts as already ended."""
    expires = claim.get("expires_at")
    return float(expires) if isinstance(expires, int | float) else 0.0


class ServerClock:
    """What time it is on the ZooKeeper server, at least: claim TTLs are measured on this clock,
    the same for every board whatever their own clocks say.

    Every node's ``mtime`` is server time (the ensemble's leader stamps each write with its own
    clock), and the server's time is past it once the node has been read. So each node this
    board writes or reads (claim nodes, mostly) tells it the server's time was at least that
    ``mtime`` then; with the time elapsed since, on ``elapsed`` (``time.monotonic``, or the
    board's injected clock), the best of those readings is a lower bound of the server's time
    now. A reading is kept at most ``_KEEP`` seconds unless a better one comes, so that clock
    rates drifting apart cannot add up. A step of the server's own clock (or a new leader's
    clock) moves claim expiry with it.
    """

    _KEEP = 60.0

    def __init__(self, elapsed: Callable[[], float]) -> None:
        self._elapsed = elapsed
        self._offset: float | None = None  # server time - elapsed(), the best reading
        self._taken = 0.0

    def learn(self, stat: Any) -> None:
        """``stat`` is that of a node this board just wrote or read (its reply already in)."""
        now = self._elapsed()
        offset = float(stat.mtime) / 1000.0 - now
        if self._offset is None or offset > self._offset or now - self._taken > self._KEEP:
            self._offset, self._taken = offset, now

    def now(self) -> float | None:
        """The server's time now, at least; None before anything was learned."""
        offset = self._offset
        return None if offset is None else self._elapsed() + offset

    def claim_ends(self, data: bytes, stat: Any, now: float) -> float:
        """When the claim node holding ``data`` with ``stat``, just read, ends on the reader's
        clock, whose time is ``now``: its TTL after the server last wrote it (the claim or its
        last renewal). The owner's ``expires_at`` is not used: it is on the owner's clock."""
        self.learn(stat)
        ttl = decode_claim(data).get("ttl")
        if not isinstance(ttl, int | float) or isinstance(ttl, bool):
            return 0.0  # an unreadable claim node counts as already ended
        server_now = self.now()
        written = float(stat.mtime) / 1000.0
        return now + (written + float(ttl) - (written if server_now is None else server_now))


def _node(found: Any) -> Node | None:
    """A node's data and version, from what kazoo's ``get`` returned (None: missing)."""
    return None if found is None else (found[0], int(found[1].version))


class Follower:
    """Feeds ``index`` for a board whose job and claim nodes live under ``jobs`` and ``claims``.

    Args:
        index: the board's index.
        calls: the board's client (``Calls``).
        jobs: the path of ``jobs/``.
        claims: the path of ``claims/``.
        clock: the board's clock.
        server_clock: the server's time, which claim TTLs are measured on.
        read_ahead: how many of the next candidates' job nodes to keep read ahead.
    """

    def __init__(self, index: Index, calls: Calls, *, jobs: str, claims: str,
                 clock: Callable[[], float], server_clock: ServerClock,
                 read_ahead: int) -> None:
        self.index = index
        self._calls = calls
        self._jobs, self._claims = jobs, claims
        self._jobs_under, self._claims_under = jobs + "/", claims + "/"
        self._live, self._result, self._clock = calls.live, calls.result, clock
        self.server_clock = server_clock
        self._read_ahead = read_ahead
        self._client: Any = None
        self._inline = False  # watchers run as events are read (see the module docstring)
        self._sync_lock = threading.Lock()
        # Reads of the next candidates' job nodes: name -> (kazoo result, token).
        self._fetches: dict[str, tuple[Any, int]] = {}
        self._fetches_lock = threading.Lock()

    def attach(self, client: Any) -> None:
        """Follow the board through ``client`` (before its first ``sync``)."""
        self._client = client
        self._inline = isinstance(client.handler, PollingHandler)
        if self._inline:
            client.handler.run_inline(self._on_job_event)
            client.handler.run_inline(self._on_claim_event)

    def unroute(self, client: Any) -> None:
        """Stop routing ``client``'s events under ``jobs/`` to this follower (the board
        closes, and the client, shared, goes on)."""
        kazoo_compat.remove_watch(client, self._jobs, self._on_job_event)

    def detach(self) -> None:
        self._client = None
        with self._fetches_lock:
            self._fetches.clear()
        self.index.desync()

    # -- listings --------------------------------------------------------------------------

    def sync(self) -> None:
        """Watch ``jobs/`` on this connection and list ``jobs/`` and ``claims/``; events that
        arrive meanwhile are replayed on top of the listings (``Index.finish_sync``). Then read
        (and watch) every claim node."""
        client = self._live()
        epoch = self.index.begin_sync()
        try:
            added = kazoo_compat.add_watch(client, self._jobs, self._on_job_event)
            listings = [client.get_children_async(self._jobs),
                        client.get_children_async(self._claims)]
            self._result(added)
            jobs, claims = (self._result(pending) for pending in listings)
        except BaseException as exc:
            self.index.abort_sync(epoch)
            if isinstance(exc, kz.UnimplementedError):
                raise errors.BoardUnavailable(
                    "the ZooKeeper server has no persistent watches: the board needs ZooKeeper "
                    "3.6 or later") from exc
            raise
        unknown = self.index.finish_sync(epoch, jobs, claims)
        if unknown is None:
            raise errors.BoardUnavailable("the connection to ZooKeeper changed while listing")
        self.read_claims(unknown)

    def ensure_synced(self) -> None:
        """Sync if a connection change left the index behind (after a reconnection)."""
        if not self.index.synced:
            with self._sync_lock:
                if not self.index.synced:
                    self.sync()

    def catch_up(self) -> None:
        """Bring the index up to date with every change made anywhere before this call: one
        round trip (``sync``, whose reply follows the events of earlier changes), then read the
        claims whose state is unknown."""
        self.ensure_synced()
        self._result(self._live().sync_async(self._jobs))
        self.wait_for_events()
        self.read_claims(self.index.unknown_claims())

    def after_events(self, work: Callable[[], None]) -> None:
        """Run ``work`` on kazoo's callback thread once the watch events read so far have been
        handled (at once if the board is not connected)."""
        client = self._client
        if client is None or self._inline:
            work()
        else:
            client.handler.dispatch_callback(Callback("watch", work, ()))

    def wait_for_events(self) -> None:
        """Wait until the watch events read so far have been handled."""
        done = threading.Event()
        self.after_events(done.set)
        if not done.wait(self._calls.timeout):
            raise errors.BoardUnavailable("ZooKeeper watch events are not being handled")

    # -- claim nodes -----------------------------------------------------------------------

    def read_claims(self, names: list[str]) -> None:
        """Read claim nodes (and watch them) in one round trip and tell the index."""
        client, token = self._live(), self.index.token()
        pending = [self._watched_get(client, name) for name in names]
        for name, item in zip(names, pending, strict=True):
            try:
                data, stat = self._result(item)
            except kz.NoNodeError:
                self.index.no_claim(name, seen=token)
            else:
                self.index.claimed(name, self.claim_ends(data, stat), seen=token)

    def read_claim_async(self, *names: str) -> None:
        """Learn whether claim nodes exist, and their lease expiry, in the background; their
        watches then report their renewal or their end. (``claims/`` has no watch of its own,
        so that the board's own claims cost no events, and claim nodes are read only when they
        stand in the way of a claim, so that a board that does not claim reads none.)"""
        client = self._client
        if client is None:
            return
        token = self.index.token()
        for name in self.index.reading(list(names)):
            self._watched_get(client, name).rawlink(
                functools.partial(self._claim_read, name, token))

    def _claim_read(self, name: str, token: int, pending: Any) -> None:
        self.index.read_done(name)
        try:
            data, stat = pending.get(block=False)
        except kz.NoNodeError:
            self.index.no_claim(name, seen=token)
        except Exception:  # disconnected: the index is synced again on reconnection
            return
        else:
            self.index.claimed(name, self.claim_ends(data, stat), seen=token)

    def claim_ends(self, data: bytes, stat: Any) -> float:
        """When a claim node read just now ends, on the board's clock (``ServerClock``)."""
        return self.server_clock.claim_ends(data, stat, self._clock())

    def _watched_get(self, client: Any, name: str) -> Any:
        """Read a claim node leaving a one-shot watch on it (``_on_claim_event``)."""
        return client.get_async(f"{self._claims}/{name}", watch=self._on_claim_event)

    # On kazoo's callback thread, in the server's order (one call per event under jobs/:
    # kept flat). Events without a node (the session ended) say nothing of it: the board
    # syncs again.

    def _on_job_event(self, event: Any) -> None:
        kind, path, under = _KINDS.get(event.type), event.path, self._jobs_under
        if kind is not None and path and path.startswith(under):
            self.index.event(JOBS, kind, path[len(under):])

    def _on_claim_event(self, event: Any) -> None:
        kind, path, under = _KINDS.get(event.type), event.path, self._claims_under
        if kind is not None and path and path.startswith(under):
            self.index.event(CLAIMS, kind, path[len(under):])

    # -- job nodes -------------------------------------------------------------------------

    def read_nodes(self, name: str) -> tuple[Node | None, Node | None, float]:
        """The job node and the claim node of ``name`` (data and version), in one round trip,
        and when the claim ends on the board's clock (0 without one); the claim node is left
        watched."""
        client = self._live()
        pending = [client.get_async(f"{self._jobs}/{name}"), self._watched_get(client, name)]
        job, claim = (self._found(item) for item in pending)
        ends = 0.0 if claim is None else self.claim_ends(*claim)
        return _node(job), _node(claim), ends

    def read_page(self, names: list[str]) -> list[tuple[Any, Any]]:
        """The job node and the claim node, as kazoo returns them (None if missing), of each
        of ``names``, in one round trip; what is seen of the claims goes to the index, and the
        claim nodes are left watched (so a waiting board hears of a claim's end at once)."""
        client, token = self._live(), self.index.token()
        pending = [(client.get_async(f"{self._jobs}/{name}"), self._watched_get(client, name))
                   for name in names]
        found: list[tuple[Any, Any]] = []
        for name, (job, claim) in zip(names, pending, strict=True):
            job_node, claim_node = self._found(job), self._found(claim)
            if claim_node is None:
                self.index.no_claim(name, seen=token)
            else:
                self.index.claimed(name, self.claim_ends(*claim_node), seen=token)
            found.append((job_node, claim_node))
        return found

    def _found(self, pending: Any) -> Any:
        try:
            return self._result(pending)
        except kz.NoNodeError:
            return None

    def read_ahead(self, *, every: bool = False) -> None:
        """Read the job nodes of the next few candidates in the background (pipelined), so
        that claiming them is one transaction (``fetched`` picks up the reply); by half the
        window at a time unless the first is missing, or (``every``) all that are missing.
        And the claim nodes in unknown state before them, so that they are tried once free."""
        client = self._client
        if client is None:
            return
        names, claims = self.index.to_fetch(self._clock(), self._read_ahead,
                                            batch=1 if every else self._read_ahead // 2)
        if claims:
            self.read_claim_async(*claims)
        if not names:
            return
        token = self.index.token()
        pending = [client.get_async(f"{self._jobs}/{name}") for name in names]
        with self._fetches_lock:
            for name, item in zip(names, pending, strict=True):
                self._fetches[name] = (item, token)
            done = [name for name, (item, _) in self._fetches.items() if item.ready()]
        for name in done:
            self.fetched(name, wait=False)

    def fetched(self, name: str, *, wait: bool = True) -> None:
        """Hand the read-ahead of ``name``'s job node, if any, to the index, waiting for its
        reply if ``wait`` (it was sent before, so it comes sooner than a new read)."""
        with self._fetches_lock:
            found = self._fetches.pop(name, None)
        if found is None:
            return
        item, token = found
        node: Node | None = None
        with contextlib.suppress(Exception):  # gone or disconnected: the claim reads it
            data, stat = self._result(item) if wait else item.get(block=False)
            node = (data, int(stat.version))
        self.index.job_data(name, node, seen=token)
