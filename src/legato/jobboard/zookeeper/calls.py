"""``Calls``: the board's kazoo client, and how the board and its helpers call ZooKeeper through
it (kazoo's public async calls and transactions), with connection trouble reported as
``BoardUnavailable``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from kazoo import exceptions as kz
from kazoo.client import KazooState
from kazoo.handlers.threading import KazooTimeoutError

from legato import errors

__all__ = ["Calls"]

#: What a call may fail with when the server cannot be reached (or answered too late).
_UNAVAILABLE = (kz.ConnectionLoss, kz.SessionExpiredError, kz.ConnectionClosedError,
                kz.OperationTimeoutError, KazooTimeoutError)


class Calls:
    """The connected kazoo ``client`` (None while closed) and the ZooKeeper ``session_id`` the
    board's claims belong to, for the board named ``board`` on ``hosts``; each wait lasts at
    most ``timeout`` seconds."""

    def __init__(self, board: str, hosts: str, timeout: float) -> None:
        self.board, self.hosts, self.timeout = board, hosts, timeout
        self.client: Any = None
        self.session_id: int | None = None

    def live(self) -> Any:
        """The client if it is connected now; ``BoardUnavailable`` at once otherwise.

        Checked before every call: kazoo queues requests made while it reconnects and sends
        them later, long after the caller has given up on them.
        """
        client = self.client
        if client is None or client.state != KazooState.CONNECTED:
            raise errors.BoardUnavailable(
                f"board {self.board!r} is not connected to ZooKeeper at {self.hosts}")
        return client

    def result(self, pending: Any, *, on_unknown: Callable[[], None] | None = None) -> Any:
        """Wait for a kazoo async result, translating connection trouble (``on_unknown`` is
        called then); kazoo's other errors (``NoNodeError``...) are raised as they are."""
        try:
            return pending.get(timeout=self.timeout)
        except _UNAVAILABLE as exc:
            if on_unknown is not None:
                on_unknown()
            raise errors.BoardUnavailable(
                f"ZooKeeper call failed on board {self.board!r}: {exc!r}") from exc

    def read(self, *paths: str) -> list[tuple[bytes, Any] | None]:
        """Read nodes in one round trip (pipelined); None for each missing one."""
        client = self.live()
        pending = [client.get_async(path) for path in paths]
        found: list[tuple[bytes, Any] | None] = []
        for item in pending:
            try:
                found.append(self.result(item))
            except kz.NoNodeError:
                found.append(None)
        return found

    def send(self, ops: Callable[[Any], None]) -> Any:
        """Send a transaction (``ops`` adds its operations to kazoo's ``TransactionRequest``)
        without waiting: its kazoo async result (see ``outcome``). kazoo's connection thread
        writes it, in order, at the caller's next wait."""
        txn = self.live().transaction()
        ops(txn)
        return txn.commit_async()

    def outcome(self, pending: Any, *,
                on_unknown: Callable[[Any], None] | None = None) -> list[Any]:
        """Wait for a transaction sent with ``send``: its results (``records.failure_of``
        finds the error in them); ``on_unknown(pending)`` if its reply is lost."""
        unknown = None if on_unknown is None else functools.partial(on_unknown, pending)
        results: list[Any] = self.result(pending, on_unknown=unknown)
        return results

    def commit(self, ops: Callable[[Any], None], *,
               on_unknown: Callable[[Any], None] | None = None) -> list[Any]:
        """``send``, then ``outcome``."""
        return self.outcome(self.send(ops), on_unknown=on_unknown)
