"""Serving the dashboard in a thread of the current process (``legato demo --dashboard``,
and the tests): ``with running(app) as url: ...``."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["running", "server"]

#: How often the starting thread looks whether the server listens yet.
_STARTUP_POLL = 0.05


def server(app: Any, host: str, port: int) -> Any:
    """A uvicorn server for ``app`` on ``host``:``port`` (not started: ``.run()`` it, or run
    it in a thread).

    Raises:
        MissingDriver: the ``dashboard`` extra (uvicorn) is not installed.
    """
    try:
        import uvicorn
    except ImportError as exc:
        from legato import errors

        raise errors.MissingDriver(
            "the dashboard needs its extra: pip install 'legato[dashboard]'", extra="dashboard"
        ) from exc
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        server_header=False,
    )
    return uvicorn.Server(config)


@contextlib.contextmanager
def running(
    app: Any, *, host: str = "127.0.0.1", port: int = 0, timeout: float = 10.0
) -> Iterator[str]:
    """Serve ``app`` with uvicorn on ``host``:``port`` (0: a free port) in a daemon thread;
    yield its base URL (``http://127.0.0.1:PORT``); stop it on exit.

    Raises:
        OSError: the server did not start within ``timeout`` (the port is taken, say).
    """
    served = server(app, host, port)
    thread = threading.Thread(target=served.run, daemon=True, name="legato-dashboard")
    thread.start()
    stopped = threading.Event()
    waited = 0.0
    # uvicorn offers no start-up callback: look at its flag until it listens or gives up.
    while not served.started and thread.is_alive() and waited < timeout:
        stopped.wait(_STARTUP_POLL)
        waited += _STARTUP_POLL
    if not served.started:
        served.should_exit = True
        raise OSError(f"the dashboard could not listen on {host}:{port}")
    bound = served.servers[0].sockets[0].getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    try:
        yield f"http://{shown}:{bound}"
    finally:
        served.should_exit = True
        thread.join(timeout)
