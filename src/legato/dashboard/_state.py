"""What every request of one dashboard shares (``Dashboard``): the board, persistence,
templates, sessions and the helpers routes use. ``legato.dashboard.app`` builds the application
around it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import jinja2
import markupsafe
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from legato import errors
from legato._redact import redact
from legato.dashboard import _data, _security
from legato.dashboard._http import CSP, Forbidden, SafeJSON, same_origin

if TYPE_CHECKING:
    from legato.jobboard.base import JobBoard
    from legato.persistence.base import Persistence

__all__ = ["Dashboard"]

logger = logging.getLogger(__name__)

HERE = Path(__file__).parent
T = TypeVar("T")


def _redacted(value: Any) -> Any:
    """Every value a template prints: URL passwords masked (job data, reasons and errors
    included: a failure message may quote a connection URL). Markup (a macro's output) was
    masked piece by piece as the macro printed it, and stays markup."""
    if isinstance(value, markupsafe.Markup):
        return value
    return redact(value) if isinstance(value, str) else value


@dataclasses.dataclass
class Dashboard:
    """What every request of one dashboard shares.

    Attributes:
        board, backend: the board and persistence the dashboard reads and acts on.
        allow_actions: whether actions are allowed at all.
        token: the token actions need (None: no actions possible).
        refresh: seconds between updates of the live parts of a page.
        label: what the header says the dashboard shows (URLs with passwords masked).
    """

    board: JobBoard
    backend: Persistence
    allow_actions: bool = False
    token: _security.Token | None = None
    refresh: float = 1.0
    label: str = ""
    sessions: _security.Sessions = dataclasses.field(default_factory=_security.Sessions)
    templates: jinja2.Environment = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.label = redact(self.label)
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            finalize=_redacted,
        )
        self.templates.filters["pretty"] = _data.pretty
        self.templates.filters["redact"] = lambda text: redact(str(text))
        self.templates.globals["FOLD_CHARS"] = _data.FOLD_CHARS

    @property
    def actions_on(self) -> bool:
        return self.allow_actions and self.token is not None

    # -- rendering ---------------------------------------------------------------------

    def page(
        self, request: Request, template: str, status_code: int = 200, **context: Any
    ) -> HTMLResponse:
        session = self.session_of(request)
        html = self.templates.get_template(template).render(
            request_path=request.url.path,
            label=self.label,
            refresh_ms=int(self.refresh * 1000),
            actions_on=self.actions_on,
            session=session,
            notice=request.query_params.get("notice"),
            **context,
        )
        return HTMLResponse(
            html,
            status_code=status_code,
            headers={
                "Content-Security-Policy": CSP,
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "same-origin",
                "Cache-Control": "no-store",
            },
        )

    def error_page(self, request: Request, status: int, message: str) -> Response:
        if request.url.path.startswith("/api/"):
            return SafeJSON({"error": message}, status_code=status)
        if request.query_params.get("part"):  # a live part: the page shows the banner
            return Response(
                redact(message),
                status_code=status,
                media_type="text/plain",
                headers={"Cache-Control": "no-store"},
            )
        return self.page(request, "error.html", status, status=status, message=redact(message))

    # -- reading, with errors mapped to statuses ---------------------------------------

    async def call(
        self, request: Request, fn: Callable[..., T], *args: Any, **kwargs: Any
    ) -> T | Response:
        """``fn(*args, **kwargs)`` in a worker thread; a Legato error becomes its page."""
        try:
            return await run_in_threadpool(fn, *args, **kwargs)
        except errors.NotFound as exc:
            return self.error_page(request, 404, str(exc))
        except errors.UnclaimableJob as exc:
            return self.error_page(request, 409, str(exc))
        except (errors.MissingDependencies, errors.JobTooLarge, ValueError) as exc:
            return self.error_page(request, 400, str(exc))
        except errors.LegatoError as exc:  # the board or persistence is down
            logger.warning("dashboard: %s: %s", type(exc).__name__, redact(str(exc)))
            return self.error_page(
                request,
                503,
                f"unavailable: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}",
            )

    # -- who acts ----------------------------------------------------------------------

    def session_of(self, request: Request) -> _security.Session | None:
        return self.sessions.get(request.cookies.get(_security.SESSION_COOKIE))

    def actor(self, request: Request, form: dict[str, str] | None) -> str:
        """Who makes this action: the token's holder, checked by bearer token (API) or by
        session cookie plus CSRF token (forms).

        Raises:
            Forbidden: actions are off, or the request proves neither.
        """
        if not self.actions_on or self.token is None:
            raise Forbidden(
                "actions are disabled: start the dashboard with --allow-actions "
                "and LEGATO_DASHBOARD_TOKEN set"
            )
        offered = _security.bearer(request.headers)
        if offered is not None:
            if self.token.matches(offered):
                return self.token.actor
            raise Forbidden("wrong token")
        if form is None:
            raise Forbidden("an action needs 'Authorization: Bearer <token>'")
        if not same_origin(request):
            raise Forbidden("cross-site request refused")
        if not _security.csrf_ok(self.session_of(request), form.get("csrf")):
            raise Forbidden("missing or wrong CSRF token: log in and use the dashboard's forms")
        return self.token.actor
