"""The ZooKeeper board and kazoo: ``kazoo_compat`` (the one module allowed kazoo's private
names, as tests/unit/test_layering.py checks) accepts at connect only a kazoo it works with
(scripts/kazoo-matrix.sh runs the board's contract tests with other kazoo releases)."""

from __future__ import annotations

import os
import socket
from typing import Any

import kazoo
import pytest
from kazoo.protocol.connection import ConnectionHandler

from legato import errors
from legato.jobboard.zookeeper import ZooKeeperJobBoard, ZooKeeperSettings, kazoo_compat
from legato.jobboard.zookeeper.handler import PollingHandler, ReadAhead


def test_the_kazoo_in_use_is_the_one_asked_for() -> None:
    wanted = os.environ.get("LEGATO_TEST_KAZOO_VERSION")
    if wanted is None:  # the project's own venv: a release inside the zookeeper extra's range
        release = tuple(int(part) for part in kazoo.__version__.split(".")[:2])
        assert (2, 10) <= release < (3, 0), kazoo.__version__
    else:  # scripts/kazoo-matrix.sh: the release it installed
        assert kazoo.__version__ == wanted


def test_this_kazoo_is_accepted() -> None:
    kazoo_compat.check()


def test_a_kazoo_whose_internals_changed_is_refused_in_one_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """kazoo's open change passes the zxid to ``_read_watch_event``: a board on such a kazoo
    refuses to connect, saying which kazoo, instead of failing on kazoo's thread later."""
    def changed(self: Any, buffer: bytes, offset: int, zxid: int) -> None:
        raise AssertionError("never called")

    monkeypatch.setattr(ConnectionHandler, "_read_watch_event", changed)
    board = ZooKeeperJobBoard(ZooKeeperSettings(hosts="127.0.0.1:1"))
    with pytest.raises(errors.MissingDriver) as caught:
        board.connect()
    message = str(caught.value)
    assert "\n" not in message and f"kazoo {kazoo.__version__}" in message
    assert "_read_watch_event" in message and caught.value.extra == "zookeeper"


def test_the_read_ahead_socket_serves_messages_from_one_read() -> None:
    """Three messages sent at once come from one system read: the socket says they are pending
    and the handler reports it readable without waiting."""
    left, right = socket.socketpair()
    try:
        handler = PollingHandler()
        sock = ReadAhead(left)
        right.sendall(b"\x00\x00\x00\x03abc" + b"\x00\x00\x00\x01d" + b"\x00\x00\x00\x02ef")
        assert handler.select([sock], [], [], 5.0)[0] == [sock]
        assert sock.recv(4) == b"\x00\x00\x00\x03" and sock.pending() == 14
        assert handler.select([sock], [], [], 0.0)[0] == [sock]
        assert sock.recv(3) == b"abc"
        assert sock.recv(100) == b"\x00\x00\x00\x01d\x00\x00\x00\x02ef"  # what is left
        assert sock.pending() == 0
        assert handler.select([sock], [], [], 0.0) == ([], [], [])  # nothing more arrived
        assert handler.select([], [sock], [], 0.0)[1] == [sock]
        assert sock.send(b"x") == 1 and right.recv(1) == b"x"
    finally:
        left.close()
        right.close()


def test_select_waits_on_write_lists_with_other_sockets() -> None:
    """A write list of read-ahead sockets alone is writable at once; with a plain socket in it
    the handler polls them all, as ``select.select`` would."""
    left, right = socket.socketpair()
    try:
        handler = PollingHandler()
        sock = ReadAhead(left)
        assert handler.select([], [sock], [], 0.0) == ([], [sock], [])
        assert handler.select([], [sock, right], [], 5.0)[1] == [sock, right]
        assert handler.select([sock], [right], [], 5.0) == ([], [right], [])
    finally:
        left.close()
        right.close()
