"""The kazoo plumbing of the ZooKeeper board (no server needed): the poll-based socket wait, the
eager socket reads and writes, and the requests the board builds itself."""

from __future__ import annotations

import socket
import struct

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from legato.jobboard._zkwatch import Handler, Ops, _AddWatch, _Eager, _MultiRead, _WatchedGet


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
    return struct.pack("!i", len(text)) + text.encode()


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


def test_transaction_operations_are_the_requests_kazoo_would_build() -> None:
    for hosts in ("127.0.0.1:2181", "127.0.0.1:2181/chroot"):
        client = KazooClient(hosts=hosts)
        paths = ["/b/jobs/job-+0-u-0000000001", "/b//odd/", "b/relative"]
        ours, kazoos = Ops(client), client.transaction()
        for path in paths:
            for txn in (ours, kazoos):
                txn.create(path, b"data", ephemeral=True)
                txn.create(path)
                txn.delete(path, version=3)
                txn.set_data(path, b"data", version=4)
        assert ours.operations == kazoos.operations
        with pytest.raises(ValueError, match="relative paths"):
            ours.delete("/b/../c")


class _Connection:
    """What ``_Eager`` uses of kazoo's connection: its socket, and its own reader and writer
    (which record what is left to them)."""

    def __init__(self, sock: socket.socket) -> None:
        self._socket = sock
        self.left: list[tuple[str, int]] = []

    def _read(self, length: int, timeout: float) -> bytes:
        self.left.append(("read", length))
        return b"?" * length

    def _write(self, message: bytes, timeout: float) -> None:
        self.left.append(("write", len(message)))
        self._socket.sendall(message)


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
