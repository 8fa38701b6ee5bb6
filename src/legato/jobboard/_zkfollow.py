"""Keeping the ZooKeeper board's index current: watches, listings, and the reads that go with them.

``Follower`` feeds an ``Index`` (``legato.jobboard._zkindex``) from the watch events of
``Watches`` (``legato.jobboard._zkwatch``), lists ``jobs/`` and ``claims/`` on each new
connection, reads claim nodes whose state an event left unknown (watching them), and reads the
next candidates' job nodes ahead of the claims. ``ZooKeeperJobBoard`` owns one and does the
claiming.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
from collections.abc import Callable
from typing import Any

from kazoo import exceptions as kz

from legato import errors
from legato.jobboard._zkindex import CLAIMS, JOBS, Index, Node
from legato.jobboard._zkwatch import Watches, read_many_async

__all__ = ["Follower", "claim_expiry", "decode_claim"]


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


def _node(found: Any) -> Node | None:
    """A node's data and version, from what kazoo's ``get`` returned (None: missing)."""
    return None if found is None else (found[0], int(found[1].version))


class Follower:
    """Feeds ``index`` for a board whose job and claim nodes live under ``jobs`` and ``claims``.

    Args:
        index: the board's index.
        jobs: the path of ``jobs/``.
        claims: the path of ``claims/``.
        live: returns the kazoo client if it is connected now, else raises ``BoardUnavailable``.
        result: waits for a kazoo async result, raising ``BoardUnavailable`` on connection
            trouble (and kazoo's own errors, such as ``NoNodeError``, as they are).
        clock: the board's clock.
        read_ahead: how many of the next candidates' job nodes to keep read ahead.
    """

    def __init__(self, index: Index, *, jobs: str, claims: str, live: Callable[[], Any],
                 result: Callable[[Any], Any], clock: Callable[[], float],
                 read_ahead: int) -> None:
        self.index = index
        self._jobs, self._claims = jobs, claims
        self._live, self._result, self._clock = live, result, clock
        self._read_ahead = read_ahead
        self._client: Any = None
        self._watch: Watches | None = None
        self._sync_lock = threading.Lock()
        # Reads of the next candidates' job nodes: name -> (kazoo result, position, token).
        self._fetches: dict[str, tuple[Any, int, int]] = {}
        self._fetches_lock = threading.Lock()

    def attach(self, client: Any) -> None:
        """Follow the board through ``client`` (before its first ``sync``)."""
        self._client = client
        self._watch = Watches(client, {self._jobs: JOBS, self._claims: CLAIMS}, self._on_event)

    def detach(self) -> None:
        self._client = self._watch = None
        with self._fetches_lock:
            self._fetches.clear()
        self.index.desync()

    # -- listings --------------------------------------------------------------------------

    def sync(self) -> None:
        """Watch ``jobs/`` on this connection and list ``jobs/`` and ``claims/``; events that
        arrive meanwhile are replayed on top of the listings (``Index.finish_sync``). Then read
        (and watch) every claim node."""
        client, watch = self._live(), self._watch
        assert watch is not None
        epoch = self.index.begin_sync()
        try:
            added = watch.add_async(self._jobs)
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
        self.read_claims(self.index.unknown_claims())

    # -- claim nodes -----------------------------------------------------------------------

    def read_claims(self, names: list[str]) -> None:
        """Read claim nodes (and watch them) in one round trip and tell the index."""
        watch, token = self._watch, self.index.token()
        assert watch is not None
        self._live()
        pending = [watch.get_async(f"{self._claims}/{name}") for name in names]
        for name, item in zip(names, pending, strict=True):
            try:
                data, _ = self._result(item)
            except kz.NoNodeError:
                self.index.no_claim(name, seen=token)
            else:
                self.index.claimed(name, claim_expiry(decode_claim(data)), seen=token)

    def read_claim_async(self, *names: str) -> None:
        """Learn whether claim nodes exist, and their lease expiry, in the background; their
        watches then report their renewal or their end. (``claims/`` has no watch of its own,
        so that the board's own claims cost no events, and claim nodes are read only when they
        stand in the way of a claim, so that a board that does not claim reads none.)"""
        watch = self._watch
        if watch is None:
            return
        token = self.index.token()
        for name in self.index.reading(list(names)):
            watch.get_async(f"{self._claims}/{name}").rawlink(
                functools.partial(self._claim_read, name, token))

    def _claim_read(self, name: str, token: int, pending: Any) -> None:
        self.index.read_done(name)
        try:
            data, _ = pending.get(block=False)
        except kz.NoNodeError:
            self.index.no_claim(name, seen=token)
        except Exception:  # disconnected: the index is synced again on reconnection
            return
        else:
            self.index.claimed(name, claim_expiry(decode_claim(data)), seen=token)

    def _on_event(self, root: str, kind: int, name: str) -> None:
        # On kazoo's connection thread (see ``Watches``): quick, and never waits.
        self.index.event(root, kind, name)

    # -- job nodes -------------------------------------------------------------------------

    def read_nodes(self, name: str) -> tuple[Node | None, Node | None]:
        """The job node and the claim node of ``name`` (data and version), in one round trip;
        the claim node is left watched."""
        client, watch = self._live(), self._watch
        assert watch is not None
        pending = [client.get_async(f"{self._jobs}/{name}"),
                   watch.get_async(f"{self._claims}/{name}")]
        job, claim = (self._found(item) for item in pending)
        return _node(job), _node(claim)

    def read_page(self, names: list[str]) -> list[tuple[Any, Any]]:
        """The job node and the claim node, as kazoo returns them (None if missing), of each
        of ``names``, in one round trip; what is seen of the claims goes to the index, and the
        claim nodes are left watched (so a waiting board hears of a claim's end at once)."""
        client, watch, token = self._live(), self._watch, self.index.token()
        assert watch is not None
        pending = [(client.get_async(f"{self._jobs}/{name}"),
                    watch.get_async(f"{self._claims}/{name}")) for name in names]
        found: list[tuple[Any, Any]] = []
        for name, (job, claim) in zip(names, pending, strict=True):
            job_node, claim_node = self._found(job), self._found(claim)
            if claim_node is None:
                self.index.no_claim(name, seen=token)
            else:
                self.index.claimed(name, claim_expiry(decode_claim(claim_node[0])), seen=token)
            found.append((job_node, claim_node))
        return found

    def _found(self, pending: Any) -> Any:
        try:
            return self._result(pending)
        except kz.NoNodeError:
            return None

    def read_ahead(self) -> None:
        """Read the job nodes of the next few candidates in the background, several in one
        request, so that claiming them is one transaction (``fetched`` picks up the reply);
        and the claim nodes in unknown state before them, so that they are tried once free."""
        client = self._client
        if client is None:
            return
        names, claims = self.index.to_fetch(self._clock(), self._read_ahead,
                                            batch=self._read_ahead // 2)
        if claims:
            self.read_claim_async(*claims)
        if not names:
            return
        token = self.index.token()
        pending = read_many_async(client, [f"{self._jobs}/{name}" for name in names])
        with self._fetches_lock:
            for position, name in enumerate(names):
                self._fetches[name] = (pending, position, token)
            done = [name for name, (item, _, _) in self._fetches.items() if item.ready()]
        for name in done:
            self.fetched(name, wait=False)

    def fetched(self, name: str, *, wait: bool = True) -> None:
        """Hand the read-ahead of ``name``'s job node, if any, to the index, waiting for its
        reply if ``wait`` (it was sent before, so it comes sooner than a new read)."""
        with self._fetches_lock:
            found = self._fetches.pop(name, None)
        if found is None:
            return
        item, position, token = found
        node: Node | None = None
        with contextlib.suppress(Exception):  # gone or disconnected: the claim reads it
            data, stat = (self._result(item) if wait else item.get(block=False))[position]
            node = (data, int(stat.version))
        self.index.job_data(name, node, seen=token)
