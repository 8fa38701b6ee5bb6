"""The ZooKeeper board and kazoo: only kazoo's public API outside ``kazoo_compat``, which checks
at connect that the kazoo installed is one it works with (scripts/kazoo-matrix.sh runs the
board's contract tests with other kazoo releases)."""

from __future__ import annotations

import ast
import os
import pathlib
import socket
from typing import Any

import kazoo
import pytest
from kazoo.protocol.connection import ConnectionHandler

from legato import errors
from legato.jobboard.zookeeper import ZooKeeperJobBoard, ZooKeeperSettings, kazoo_compat
from legato.jobboard.zookeeper.handler import PollingHandler, ReadAhead

_SRC = pathlib.Path(__file__).resolve().parents[2] / "src" / "legato"
#: The one module allowed to use kazoo's private names (kazoo has no public AddWatch).
_ALLOWED = {_SRC / "jobboard" / "zookeeper" / "kazoo_compat.py"}


def test_the_kazoo_in_use_is_the_one_asked_for() -> None:
    wanted = os.environ.get("LEGATO_TEST_KAZOO_VERSION")
    if wanted is None:  # the project's own venv: a release inside the zookeeper extra's range
        release = tuple(int(part) for part in kazoo.__version__.split(".")[:2])
        assert (2, 10) <= release < (3, 0), kazoo.__version__
    else:  # scripts/kazoo-matrix.sh: the release it installed
        assert kazoo.__version__ == wanted


def test_this_kazoo_is_accepted() -> None:
    kazoo_compat.check()


def _private_kazoo_uses(path: pathlib.Path) -> list[str]:
    """Underscore names reached through anything but ``self``/``cls``/``super()``, or imported
    from kazoo, in a module that imports kazoo."""
    tree = ast.parse(path.read_text())
    imports_kazoo = any(
        isinstance(node, ast.Import | ast.ImportFrom) and any(
            (getattr(node, "module", None) or alias.name).startswith("kazoo")
            for alias in node.names) for node in ast.walk(tree))
    if not imports_kazoo:
        return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kazoo"):
            found += [f"{path.name}:{node.lineno} {a.name}" for a in node.names
                      if a.name.startswith("_") or "._" in (node.module or "")]
        elif (isinstance(node, ast.Attribute) and node.attr.startswith("_")
              and not node.attr.startswith("__")
              and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
              and not (isinstance(node.value, ast.Call)
                       and getattr(node.value.func, "id", None) == "super")):
            found.append(f"{path.name}:{node.lineno} .{node.attr}")
    return found


def test_no_private_kazoo_name_outside_the_compat_module() -> None:
    found = [use for path in sorted(_SRC.rglob("*.py")) if path not in _ALLOWED
             for use in _private_kazoo_uses(path)]
    assert found == []


def test_the_check_finds_a_private_use_it_is_shown() -> None:
    """The scan above would see what kazoo_compat does."""
    assert any("._call" in use for use in _private_kazoo_uses(next(iter(_ALLOWED))))


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
