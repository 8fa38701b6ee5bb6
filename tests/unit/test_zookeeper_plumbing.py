"""The kazoo plumbing of the ZooKeeper board (no server needed): the poll-based socket wait, the
eager socket reads and writes, and the requests the board builds itself."""

from __future__ import annotations

import socket
import struct

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, NoNodeError, RolledBackError
from kazoo.protocol.serialization import Transaction

from legato.jobboard.zookeeper.kazoo_compat import (
    Handler,
    Ops,
    _AddWatch,
    _Eager,
    _Multi,
    _MultiRead,
    _WatchedGet,
)


def test_handler_select_reports_what_is_ready() -> None:
    handler = Handler()
    a, b = socket.socketpair()
    try:
        assert handler.select([a], [], [], 0) == ([], [], [])
        assert handler.select([a], [b], [], 0) == ([], [b], [])
        b.send(b"x")
        assert handler.select([a, b], [], [], 1) == ([a], [], [])
        assert handler.select([a.fileno()], [], [], 1) == ([a.fileno()], [], [])
        assert a.recv(1) == b"x"
        b.close()
        assert handler.select([a], [], [], 1) == ([a], [], [])  # a hang-up reads as readable
        assert a.recv(1) == b""
    finally:
        a.close()


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!i", len(raw)) + raw


def _header(kind: int, done: bool, err: int) -> bytes:
    return struct.pack("!iBi", kind, done, err)


def test_requests_kazoo_lacks_are_encoded_as_zookeeper_expects() -> None:
    assert _AddWatch("/b/jobs", 1).serialize() == _string("/b/jobs") + struct.pack("!i", 1)
    assert _WatchedGet("/b/claims/x", None).serialize() == _string("/b/claims/x") + b"\x01"
    assert _MultiRead(["/a", "/b"]).serialize() == (
        _header(4, False, -1) + _string("/a") + b"\x00"
        + _header(4, False, -1) + _string("/b") + b"\x00" + _header(-1, True, -1))


def test_multi_read_replies_are_decoded_node_by_node() -> None:
    stat = struct.pack("!qqqqiiiqiiq", 1, 2, 3, 4, 7, 0, 0, 0, 4, 0, 2)
    reply = (b"\x00" * 3 + _header(4, False, 0) + struct.pack("!i", 4) + b"data" + stat
             + _header(-1, False, -101) + struct.pack("!i", -101) + _header(-1, True, -1))
    found = _MultiRead.deserialize(reply, 3)
    assert found[0][0] == b"data" and found[0][1].version == 7
    assert isinstance(found[1], NoNodeError) and len(found) == 2


def test_transactions_are_encoded_as_kazoo_encodes_them() -> None:
    for hosts in ("127.0.0.1:2181", "127.0.0.1:2181/chroot"):
        client = KazooClient(hosts=hosts)
        paths = ["/b/jobs/job-+0-u-0000000001", "/b//odd/", "b/relative", "/b/été"]
        ours, kazoos = Ops(client), client.transaction()
        for path in paths:
            for txn in (ours, kazoos):
                txn.create(path, b"data", ephemeral=True)
                txn.create(path)
                txn.delete(path, version=3)
                txn.set_data(path, b"data", version=4)
        assert ours.serialize() == Transaction(kazoos.operations).serialize()
        with pytest.raises(ValueError, match="relative paths"):
            ours.delete("/b/../c")


def test_transaction_replies_are_decoded_as_kazoo_decodes_them() -> None:
    stat = struct.pack("!qqqqiiiqiiq", 1, 2, 3, 4, 7, 0, 0, 0, 4, 0, 2)
    committed = (b"\x00" * 5 + _header(1, False, 0) + _string("/b/claims/é")
                 + _header(2, False, 0) + _header(5, False, 0) + stat
                 + _header(13, False, 0) + _header(-1, True, -1))
    failed = (_header(-1, False, 0) + struct.pack("!i", 0)
              + _header(-1, False, -103) + struct.pack("!i", -103)
              + _header(-1, True, -1))
    ours = _Multi.deserialize(committed, 5)
    assert ours == Transaction.deserialize(committed, 5)
    assert ours[0] == "/b/claims/é" and ours[1] is True and ours[2].version == 7
    assert len(ours) == 4
    errors = _Multi.deserialize(failed, 0)
    assert [type(e) for e in errors] == [type(e) for e in Transaction.deserialize(failed, 0)]
    assert [type(e) for e in errors] == [RolledBackError, BadVersionError]


class _Connection:
    """What ``_Eager`` uses of kazoo's connection: its socket, handler, message reader, and its
    own reader and writer (which record what is left to them)."""

    def __init__(self, sock: socket.socket, handler: Handler | None = None) -> None:
        self._socket = sock
        self.handler = handler
        self.left: list[tuple[str, int]] = []
        self.messages: list[bytes] = []

    def _read(self, length: int, timeout: float) -> bytes:
        self.left.append(("read", length))
        return b"?" * length

    def _write(self, message: bytes, timeout: float) -> None:
        self.left.append(("write", len(message)))
        self._socket.sendall(message)

    def _read_socket(self, timeout: float) -> int:
        # as kazoo's: one message, its length first
        length = struct.unpack("!i", self._read(4, timeout))[0]
        self.messages.append(self._read(length, timeout))
        return 0


def _message(body: bytes) -> bytes:
    return struct.pack("!i", len(body)) + body


def test_socket_reads_and_writes_skip_the_wait_when_the_socket_is_ready() -> None:
    a, b = socket.socketpair()
    try:
        connection = _Connection(a)
        _Eager(connection)
        a.setblocking(False)
        connection._write(b"ping", 1.0)
        assert b.recv(4) == b"ping" and connection.left == []
        b.send(b"0123456789")
        assert connection._read(4, 1.0) == b"0123"
        assert connection._read(6, 1.0) == b"456789"
        assert connection.left == []
        b.send(b"abc")
        assert connection._read(5, 1.0) == b"abc??"  # a short read: kazoo reads the rest
        assert connection._read(3, 1.0) == b"???"  # nothing there yet: kazoo waits
        assert connection.left == [("read", 2), ("read", 3)]
    finally:
        a.close()
        b.close()


def test_messages_read_ahead_are_handled_in_one_turn_and_keep_the_socket_ready() -> None:
    a, b = socket.socketpair()
    handler = Handler()
    try:
        connection = _Connection(a, handler)
        _Eager(connection)
        a.setblocking(False)
        b.send(_message(b"event") + _message(b"reply") + _message(b"later")[:6])
        assert handler.select([a], [], [], 5) == ([a], [], [])
        connection._read_socket(1.0)
        # the two whole messages in one turn; the partial one waits for the rest
        assert connection.messages == [b"event", b"reply"] and connection.left == []
        # its first bytes are taken from the socket already: it still reads as ready
        assert handler.select([a], [], [], 5) == ([a], [], [])
        b.send(_message(b"later")[6:])
        connection._read_socket(1.0)
        assert connection.messages[-1] == b"later" and connection.left == []
        assert handler.select([a], [], [], 0) == ([], [], [])
        # a new socket (a reconnection) starts with nothing read ahead
        b.send(_message(b"old"))
        connection._read(2, 1.0)
        c, d = socket.socketpair()
        try:
            c.setblocking(False)
            connection._socket = c
            assert handler.select([c], [], [], 0) == ([], [], [])
            d.send(_message(b"new"))
            connection._read_socket(1.0)
            assert connection.messages[-1] == b"new"
        finally:
            c.close()
            d.close()
    finally:
        a.close()
        b.close()
