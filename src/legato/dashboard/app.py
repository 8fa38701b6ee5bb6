"""The dashboard's web application: ``create_app`` builds it over a board and persistence.

Pages (HTML, server-rendered): ``/``, ``/jobs``, ``/jobs/<uuid>``, ``/flows``, ``/trash``,
``/conductors`` (and ``/login``, ``/logout``). JSON: ``/api/stats``, ``/api/jobs``,
``/api/jobs/<uuid>``, ``/api/flows``, ``/api/conductors``; actions ``POST /api/jobs`` (post),
``POST /api/jobs/<uuid>/{trash,requeue,cancel}`` and ``POST /api/trash/requeue``. See
docs/dashboard.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from legato.dashboard import _routes, _security
from legato.dashboard._http import Forbidden
from legato.dashboard._state import HERE, Dashboard

if TYPE_CHECKING:
    from legato.jobboard.base import JobBoard
    from legato.persistence.base import Persistence

__all__ = ["Dashboard", "create_app"]


def create_app(
    board: JobBoard,
    persistence: Persistence,
    *,
    allow_actions: bool = False,
    token: _security.Token | None = None,
    refresh: float = 1.0,
    label: str = "",
) -> Starlette:
    """The dashboard over ``board`` and ``persistence`` (both connected; the caller closes
    them).

    Args:
        allow_actions: allow trash, cancel, requeue and post (they also need ``token``).
        token: the token actions need (``parse_token(os.environ["LEGATO_DASHBOARD_TOKEN"])``).
        refresh: seconds between updates of a page's live parts.
        label: what the header names (board and persistence URLs; passwords are masked).
    """
    if allow_actions and token is None:
        raise ValueError("actions need a token: set LEGATO_DASHBOARD_TOKEN")
    if refresh <= 0:
        raise ValueError("refresh must be > 0")
    dash = Dashboard(
        board, persistence, allow_actions=allow_actions, token=token, refresh=refresh, label=label
    )
    routes = [
        *_routes.routes(dash),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        return dash.error_page(request, 404, f"no page {request.url.path[:100]}")

    async def forbidden(request: Request, exc: Exception) -> Response:
        return dash.error_page(request, 403, str(exc))

    app = Starlette(routes=routes, exception_handlers={404: not_found, Forbidden: forbidden})
    app.state.dashboard = dash
    return app
