"""``Calls``: the board's kazoo client, and how the board and its helpers call ZooKeeper through
it (kazoo's public async calls and transactions), with connection trouble reported as
``BoardUnavailable``.

**Gathered transactions.** ``send(ops, gather=True)`` adds ``ops`` to one open transaction
shared with the next such calls, instead of sending a transaction of its own: the open one is
committed (one ``multi`` request, one reply) once ``gather`` calls are in it, or as soon as any
of them waits for its answer (``Gathered``), or on ``flush``. ZooKeeper applies a ``multi`` all or
nothing, so when one call's operations fail, the others' are rolled back with them: a call whose
own operations did not fail is then sent again alone, and its answer is that one's. Each call
thus gets the answer it would have had alone, for one message each way per ``gather`` calls.
Any other call through ``live`` commits the open transaction first, so calls are still answered
in the order they were made.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from kazoo import exceptions as kz
from kazoo.client import KazooState
from kazoo.handlers.threading import KazooTimeoutError

from legato import errors

__all__ = ["Calls", "Gathered"]

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
        #: How many calls ``send(..., gather=True)`` puts in one transaction (1: none gathered).
        self.gather = 1
        self._open: _Batch | None = None  # the transaction gathering calls, not sent yet
        self._open_lock = threading.Lock()

    def live(self) -> Any:
        """The client if it is connected now; ``BoardUnavailable`` at once otherwise.

        Checked before every call: kazoo queues requests made while it reconnects and sends
        them later, long after the caller has given up on them. A gathered transaction still
        open is committed first, so that every call is answered after the calls sent before it.
        """
        client = self.client
        if client is None or client.state != KazooState.CONNECTED:
            raise errors.BoardUnavailable(
                f"board {self.board!r} is not connected to ZooKeeper at {self.hosts}")
        if self._open is not None:
            self.flush()
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

    def send(self, ops: Callable[[Any], None], *, gather: bool = False) -> Any:
        """Send a transaction (``ops`` adds its operations to kazoo's ``TransactionRequest``)
        without waiting: its kazoo async result (see ``outcome``). kazoo's connection thread
        writes it, in order, at the caller's next wait. With ``gather``, the operations join
        the open gathered transaction (module docstring) and the result is a ``Gathered``."""
        if not gather or self.gather <= 1:
            txn = self.live().transaction()
            ops(txn)
            return txn.commit_async()
        with self._open_lock:
            batch = self._open
            if batch is None:
                client = self.client
                if client is None or client.state != KazooState.CONNECTED:
                    raise errors.BoardUnavailable(
                        f"board {self.board!r} is not connected to ZooKeeper at {self.hosts}")
                batch = self._open = _Batch(client.transaction())
            start = len(batch.txn.operations)
            try:
                ops(batch.txn)
            except BaseException:
                del batch.txn.operations[start:]
                raise
            part = Gathered(self, batch, ops, start, len(batch.txn.operations))
            batch.parts += 1
            if batch.parts >= self.gather:
                self._commit(batch)
        return part

    def flush(self, batch: _Batch | None = None) -> None:
        """Commit the open gathered transaction now (only if it is ``batch``, when given)."""
        with self._open_lock:
            if self._open is not None and (batch is None or self._open is batch):
                self._commit(self._open)

    def _commit(self, batch: _Batch) -> None:
        """Commit ``batch`` (with ``_open_lock`` held); it is no longer open."""
        self._open = None
        try:
            client = self.client  # kazoo would queue it until a reconnection, long after
            if client is None or client.state != KazooState.CONNECTED:  # its callers gave up
                raise errors.BoardUnavailable(
                    f"board {self.board!r} is not connected to ZooKeeper at {self.hosts}")
            batch.sent = batch.txn.commit_async()
        except Exception as exc:
            batch.error = exc

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


class _Batch:
    """A transaction gathering calls (``Calls.send(..., gather=True)``)."""

    __slots__ = ("error", "parts", "sent", "txn")

    def __init__(self, txn: Any) -> None:
        self.txn = txn
        self.parts = 0
        self.sent: Any = None  # kazoo's async result, once committed
        self.error: Exception | None = None  # why it could not be committed


class Gathered:
    """One call's share of a gathered transaction, answering as kazoo's async result of a
    transaction of its own would (``get``, ``rawlink``, ``ready``): its operations' results.
    Asking for them commits the transaction if it is still open; when another call's
    operations failed it, this call's are sent again alone (module docstring)."""

    __slots__ = ("_alone", "_batch", "_calls", "_end", "_ops", "_start")

    def __init__(self, calls: Calls, batch: _Batch, ops: Callable[[Any], None], start: int,
                 end: int) -> None:
        self._calls, self._batch, self._ops = calls, batch, ops
        self._start, self._end = start, end
        self._alone: Any = None  # this call's own transaction, when it had to be sent alone

    def _sent(self) -> Any:
        batch = self._batch
        if batch.sent is None and batch.error is None:
            self._calls.flush(batch)
        if batch.error is not None:
            raise batch.error
        return batch.sent

    @property
    def committed(self) -> bool:
        """Whether the transaction holding this call has been committed (or failed to be)."""
        return self._batch.sent is not None or self._batch.error is not None

    def ready(self) -> bool:
        batch = self._batch
        if self._alone is not None:
            return bool(self._alone.ready())
        return batch.error is not None or (batch.sent is not None and bool(batch.sent.ready()))

    def get(self, block: bool = True, timeout: float | None = None) -> list[Any]:
        if self._alone is not None:
            return list(self._alone.get(block=block, timeout=timeout))
        results = self._sent().get(block=block, timeout=timeout)
        mine = list(results[self._start:self._end])
        if block and _rolled_back(mine):  # another call's operations failed: send ours alone
            self._alone = self._calls.send(self._ops)
            return list(self._alone.get(block=block, timeout=timeout))
        return mine

    def rawlink(self, callback: Callable[[Any], None]) -> None:
        self._sent().rawlink(lambda _: callback(self))


def _rolled_back(results: list[Any]) -> bool:
    """Whether these operations of a failed transaction were undone only because another
    operation (another call's) failed."""
    # all() stops at the first result, which tells a committed transaction at once.
    return bool(results) and all(isinstance(r, _UNDONE) for r in results)


#: What the operations of a failed transaction that did not fail themselves answer.
_UNDONE = (kz.RolledBackError, kz.RuntimeInconsistency)
