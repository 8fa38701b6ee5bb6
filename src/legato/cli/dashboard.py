"""``legato dashboard``: the web dashboard over the board and persistence (an extra:
``legato[dashboard]``)."""

from __future__ import annotations

import importlib
import ipaddress
import logging
import os
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from legato import errors
from legato._redact import redact
from legato.cli import _context

if TYPE_CHECKING:
    from legato.jobboard.base import JobBoard
    from legato.persistence.base import Persistence

__all__ = ["TOKEN_ENV", "register", "serve"]

logger = logging.getLogger(__name__)

#: The environment variable holding the token actions need (``SECRET`` or ``NAME:SECRET``).
TOKEN_ENV = "LEGATO_DASHBOARD_TOKEN"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build(
    board: JobBoard,
    backend: Persistence,
    settings: _context.Settings,
    *,
    allow_actions: bool,
    refresh: float = 1.0,
) -> Any:
    """The dashboard application for ``board`` and ``backend`` (token from the environment).

    Raises:
        ValueError: ``allow_actions`` without a token, or a malformed token.
        MissingDriver: the ``dashboard`` extra is not installed.
    """
    from legato import dashboard

    try:
        from legato.dashboard.app import create_app
    except ImportError as exc:
        raise errors.MissingDriver(
            f"the dashboard needs its extra: pip install 'legato[dashboard]' ({exc})",
            extra="dashboard",
        ) from exc

    token = dashboard.parse_token(os.environ.get(TOKEN_ENV))
    if allow_actions and token is None:
        raise ValueError(f"--allow-actions needs a token: set {TOKEN_ENV}")
    label = f"board {settings.board_url} · persistence {settings.persistence_url}"
    return create_app(
        board, backend, allow_actions=allow_actions, token=token, refresh=refresh, label=label
    )


def serve(app: Any, host: str, port: int) -> Any:
    """A uvicorn server for ``app`` (not started: ``.run()`` it, or run it in a thread)."""
    from legato.dashboard.serving import server

    return server(app, host, port)


def dashboard(
    ctx: typer.Context,
    host: Annotated[
        str,
        typer.Option("--host", help="Address to listen on (loopback unless you mean otherwise)."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8765,
    allow_actions: Annotated[
        bool,
        typer.Option(
            "--allow-actions", help=f"Allow trash, cancel, requeue and post (needs {TOKEN_ENV})."
        ),
    ] = False,
    imports: Annotated[
        list[str] | None,
        typer.Option(
            "--import",
            metavar="MODULE",
            help="Import MODULE so its registered flow factories can be posted; repeatable.",
        ),
    ] = None,
    refresh: Annotated[
        float,
        typer.Option(
            "--refresh", metavar="SECONDS", help="Seconds between live updates of a page."
        ),
    ] = 1.0,
) -> None:
    """Serve the web dashboard: overview, jobs, job pages with live atoms, flows, trash and
    conductors, and a JSON API. Read-only unless --allow-actions (actions need the token in
    LEGATO_DASHBOARD_TOKEN)."""
    settings: _context.Settings = ctx.obj
    if not 0 < port < 65536:
        raise ValueError("--port must be between 1 and 65535")
    if refresh <= 0:
        raise ValueError("--refresh must be > 0")
    if "" not in sys.path:
        sys.path.insert(0, "")
    for module in imports or ():
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ValueError(f"--import {module}: cannot import it: {exc}") from None
    with _context.open_board(settings) as (board, backend):
        app = build(board, backend, settings, allow_actions=allow_actions, refresh=refresh)
        server = serve(app, host, port)
        if not _is_loopback(host):
            sys.stderr.write(
                f"warning: the dashboard listens on {host}: anyone who can reach "
                "it can read every job\n"
            )
        shown = f"[{host}]" if ":" in host else host
        print(
            f"legato dashboard on http://{shown}:{port}/ "
            f"({'actions allowed' if allow_actions else 'read-only'}); "
            f"{redact(settings.board_url)}",
            flush=True,
        )
        server.run()


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard)
