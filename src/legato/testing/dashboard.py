"""Running the dashboard in a thread for tests: ``with running(app) as url: ...``."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["running"]


@contextlib.contextmanager
def running(app: Any, *, host: str = "127.0.0.1", timeout: float = 10.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free port of ``host`` in a daemon thread; yield its
    base URL (``http://127.0.0.1:PORT``); stop it on exit."""
    import uvicorn

    config = uvicorn.Config(
        app, host=host, port=0, log_level="warning", access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True, name="legato-dashboard")
    thread.start()
    ready = threading.Event()

    def check() -> bool:
        if server.started:
            ready.set()
        return ready.is_set() or not thread.is_alive()

    from legato.testing.conductor import wait_until

    wait_until(check, timeout=timeout)
    if not server.started:
        raise RuntimeError("the dashboard did not start")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
