"""A TCP proxy on loopback that tests use to cut and restore a backend's connection.

Not a mock: real client, real server, real bytes in between. ``cut()`` closes every open
connection and refuses new ones (the listening socket stays, so clients see resets, not a
missing port); ``restore()`` lets traffic through again.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

__all__ = ["TCPProxy"]


class TCPProxy:
    """Forward ``127.0.0.1:<port>`` to ``target_host:target_port``.

    Use as a context manager; ``port`` is chosen by the OS.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._cut = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True,
                                        name="legato-tcp-proxy")

    @classmethod
    def for_url(cls, url: str) -> TCPProxy:
        """A proxy to the server ``url`` names (its host, or loopback, and its port)."""
        parts = urlsplit(url)
        return cls(parts.hostname or "127.0.0.1", parts.port or 0)

    def __enter__(self) -> TCPProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def url_for(self, url: str) -> str:
        """Rewrite ``url``'s ``host:port`` to go through this proxy."""
        host, port = self.target
        return url.replace(f"{host}:{port}", f"127.0.0.1:{self.port}", 1)

    def cut(self) -> None:
        """Drop every connection and refuse new ones until ``restore()``."""
        self._cut.set()
        self._drop_all()

    def restore(self) -> None:
        self._cut.clear()

    def close(self) -> None:
        self._closed.set()
        self._drop_all()
        self._thread.join(timeout=5)
        self._listener.close()

    def _drop_all(self) -> None:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for a, b in pairs:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._cut.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        with selectors.DefaultSelector() as sel:
            try:
                for s in (a, b):
                    s.setblocking(False)
                sel.register(a, selectors.EVENT_READ, b)
                sel.register(b, selectors.EVENT_READ, a)
            except (OSError, ValueError):  # cut() closed the pair before this thread began
                return
            for data in _forward(sel, self._closed):
                if not data:
                    break
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.close()


def _forward(sel: selectors.BaseSelector, closed: threading.Event) -> Iterator[bool]:
    while not closed.is_set():
        try:
            events = sel.select(timeout=0.2)
        except (OSError, ValueError):
            yield False
            return
        for key, _ in events:
            src: socket.socket = key.fileobj  # type: ignore[assignment]
            dst: socket.socket = key.data
            try:
                chunk = src.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                yield False
                return
            if not chunk:
                yield False
                return
            try:
                dst.setblocking(True)
                dst.sendall(chunk)
                dst.setblocking(False)
            except OSError:
                yield False
                return
        yield True
