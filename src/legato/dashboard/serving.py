"""Serving the dashboard in a thread of the current process (``legato demo --dashboard``,
and the tests): ``with running(app) as url: ...``."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["running"]

#: How often the starting thread looks whether the server listens yet.
_STARTUP_POLL = 0.05


@contextlib.contextmanager
def running(
    app: Any, *, host: str = "127.0.0.1", port: int = 0, timeout: float = 10.0
) -> Iterator[str]:
    """Serve ``app`` with uvicorn on ``host``:``port`` (0: a free port) in a daemon thread;
    yield its base URL (``http://127.0.0.1:PORT``); stop it on exit.

    Raises:
        OSError: the server did not start within ``timeout`` (the port is taken, say).
    """
    import uvicorn

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        server_header=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True, name="legato-dashboard")
    thread.start()
    stopped = threading.Event()
    waited = 0.0
    # uvicorn offers no start-up callback: look at its flag until it listens or gives up.
    while not server.started and thread.is_alive() and waited < timeout:
        stopped.wait(_STARTUP_POLL)
        waited += _STARTUP_POLL
    if not server.started:
        server.should_exit = True
        raise OSError(f"the dashboard could not listen on {host}:{port}")
    bound = server.servers[0].sockets[0].getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    try:
        yield f"http://{shown}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout)
