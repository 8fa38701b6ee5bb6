"""The kazoo plumbing of the ZooKeeper board (no server needed): the poll-based socket wait and
the encoding of the requests kazoo has no API for."""

from __future__ import annotations

import socket
import struct

from kazoo.exceptions import NoNodeError

from legato.jobboard._zkwatch import Handler, _AddWatch, _MultiRead, _WatchedGet


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
