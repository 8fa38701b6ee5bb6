"""The dashboard's routes: pages, their live parts (``?part=live``), the JSON API, actions."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from legato.dashboard import _actions, _data, _security
from legato.dashboard._http import (
    Forbidden,
    SafeJSON,
    local_path,
    read_form,
    read_json,
    redirect,
    same_origin,
)
from legato.jobboard.base import parse_position

if TYPE_CHECKING:
    import datetime as dt

    from legato.dashboard._state import Dashboard


__all__ = ["routes"]

_ACTIONS = ("trash", "requeue", "cancel")
_SINCE = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _int(params: Mapping[str, str], key: str, default: int, *, low: int, high: int) -> int:
    text = params.get(key)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{key} must be a whole number") from None
    if not low <= value <= high:
        raise ValueError(f"{key} must be between {low} and {high}")
    return value


def _since(text: str | None) -> dt.timedelta | None:
    import datetime as dt

    if not text:
        return None
    match = _SINCE.fullmatch(text.strip())
    if match is None:
        raise ValueError("since must be a number with s, m, h or d (e.g. 1h)")
    return dt.timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def _text(value: Any) -> str | None:
    """A form field as one string (the last of repeated ones)."""
    if isinstance(value, list):
        value = value[-1] if value else None
    return value if isinstance(value, str) else None


def _page_params(params: Mapping[str, str]) -> tuple[_data.JobFilter, str | None, int, int]:
    """The jobs list's filter, ``after`` (a job position), ``start`` and ``limit``;
    ``ValueError`` with one line naming what is wrong."""
    wanted = _data.JobFilter.parse(dict(params))
    after = (params.get("after") or "").strip() or None
    if after is not None:
        parse_position(after)
        if wanted.state == "trashed":
            raise ValueError("the trash pages by start, not after")
    start = _int(params, "start", 0, low=0, high=10**9)
    limit = _int(params, "limit", 50, low=1, high=500)
    return wanted, after, start, limit


class _Handlers:
    def __init__(self, dash: Dashboard) -> None:
        self.dash = dash
        self.board = dash.board
        self.backend = dash.backend

    async def _show(
        self,
        request: Request,
        template: str,
        read: Callable[..., Any],
        *args: Any,
        live: str | None = None,
        **context: Any,
    ) -> Response:
        """Read in a worker thread and render ``template`` (``live`` for ``?part=live``)."""
        data = await self.dash.call(request, read, *args)
        if isinstance(data, Response):
            return data
        if live is not None and request.query_params.get("part") == "live":
            template = live
        return self.dash.page(request, template, data=data, **context)

    # -- pages -------------------------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        return await self._show(
            request,
            "overview.html",
            _data.overview,
            self.board,
            self.backend,
            live="_overview_live.html",
        )

    async def jobs(self, request: Request) -> Response:
        params = request.query_params
        try:
            wanted, after, start, limit = _page_params(params)
        except ValueError as exc:
            return self.dash.error_page(request, 400, str(exc))
        return await self._show(
            request,
            "jobs.html",
            self._jobs,
            wanted,
            after,
            start,
            limit,
            live="_jobs_live.html",
            wanted=wanted,
            states=_data.STATES,
            priorities=_priorities(),
            factories=_actions.factories(),
            limit=limit,
        )

    def _jobs(
        self, wanted: _data.JobFilter, after: str | None, start: int, limit: int
    ) -> dict[str, Any]:
        return _data.jobs_page(
            self.board, self.backend, wanted, after=after, start=start, limit=limit
        )

    async def job(self, request: Request) -> Response:
        uuid = request.path_params["uuid"]
        return await self._show(
            request,
            "job.html",
            _data.job_page,
            self.board,
            self.backend,
            uuid,
            live="_job_live.html",
        )

    async def flows(self, request: Request) -> Response:
        params = request.query_params
        try:
            since = _since(params.get("since"))
            limit = _int(params, "limit", 100, low=1, high=1000)
        except ValueError as exc:
            return self.dash.error_page(request, 400, str(exc))
        state, factory = params.get("state") or None, params.get("factory") or None
        data = await self.dash.call(request, self._flows, state, since, factory, limit)
        if isinstance(data, Response):
            return data
        if "/api/" in request.url.path:
            return SafeJSON(data)
        return self.dash.page(
            request,
            "flows.html",
            data=data,
            state=state or "",
            since=params.get("since") or "",
            factory=factory or "",
        )

    def _flows(
        self, state: str | None, since: dt.timedelta | None, factory: str | None, limit: int
    ) -> list[dict[str, Any]]:
        return _data.flows(self.backend, state=state, since=since, factory=factory, limit=limit)

    async def trash(self, request: Request) -> Response:
        return await self._show(request, "trash.html", _data.trash_page, self.board)

    async def conductors(self, request: Request) -> Response:
        return await self._show(
            request, "conductors.html", _data.conductors, self.board, self.backend
        )

    async def login(self, request: Request) -> Response:
        form = await read_form(request) if request.method == "POST" else None
        target = local_path(
            _text((form or {}).get("next")) or request.query_params.get("next"), "/"
        )
        if form is None:
            return self.dash.page(request, "login.html", next=target, failed=None)
        token = self.dash.token
        if not self.dash.actions_on or token is None:
            raise Forbidden("actions are disabled: start the dashboard with --allow-actions")
        if not same_origin(request):
            raise Forbidden("cross-site request refused")
        if not token.matches(_text(form.get("token"))):
            return self.dash.page(request, "login.html", 403, next=target, failed="wrong token")
        session = self.dash.sessions.open()
        response = redirect(target, "logged in")
        response.set_cookie(
            _security.SESSION_COOKIE, session.id, httponly=True, samesite="strict", path="/"
        )
        return response

    async def logout(self, request: Request) -> Response:
        form = await read_form(request) or {}
        session = self.dash.session_of(request)
        if not same_origin(request) or not _security.csrf_ok(session, _text(form.get("csrf"))):
            raise Forbidden("missing or wrong CSRF token")
        self.dash.sessions.close(session.id if session else None)
        response = redirect("/", "logged out")
        response.delete_cookie(_security.SESSION_COOKIE, path="/")
        return response

    # -- JSON --------------------------------------------------------------------------

    async def api_stats(self, request: Request) -> Response:
        return await self._json(request, _data.overview, self.board, self.backend)

    async def api_jobs(self, request: Request) -> Response:
        if request.method == "POST":
            return await self.post_job(request)
        params = request.query_params
        try:
            wanted, after, start, limit = _page_params(params)
        except ValueError as exc:
            return self.dash.error_page(request, 400, str(exc))
        return await self._json(request, self._jobs, wanted, after, start, limit)

    async def api_job(self, request: Request) -> Response:
        return await self._json(
            request, _data.job_page, self.board, self.backend, request.path_params["uuid"]
        )

    async def api_conductors(self, request: Request) -> Response:
        return await self._json(request, _data.conductors, self.board, self.backend)

    async def _json(self, request: Request, read: Callable[..., Any], *args: Any) -> Response:
        data = await self.dash.call(request, read, *args)
        if isinstance(data, Response):
            return data
        return SafeJSON(data)

    # -- actions -----------------------------------------------------------------------

    async def action(self, request: Request) -> Response:
        uuid, action = request.path_params["uuid"], request.path_params["action"]
        form = await read_form(request)
        who = self.dash.actor(request, form)
        if action not in _ACTIONS or not _data.is_uuid(uuid):
            return self.dash.error_page(
                request, 404, f"no action {action[:20]!r} on job {uuid[:60]!r}"
            )
        try:
            body = form if form is not None else await read_json(request)
        except ValueError as exc:
            return self.dash.error_page(request, 400, str(exc))
        reason = _text(body.get("reason")) or None
        result = await self.dash.call(request, self._act, action, uuid, who, reason)
        if isinstance(result, Response):
            return result
        if form is None:
            return SafeJSON(result)
        done = {"trash": "trashed", "requeue": "requeued", "cancel": "cancel requested"}
        default = f"/jobs/{result['uuid']}"
        return redirect(
            local_path(_text(form.get("next")), default) if action != "requeue" else default,
            done[action],
        )

    def _act(self, action: str, uuid: str, who: str, reason: str | None) -> dict[str, Any]:
        if action == "requeue":
            return _actions.requeue(self.board, _actions.find_trashed(self.board, uuid))
        job = self.board.get(uuid)
        if action == "trash":
            return _actions.trash(self.board, self.backend, job, who, reason)
        return _actions.cancel(self.board, self.backend, job, who, reason)

    async def requeue_many(self, request: Request) -> Response:
        form = await read_form(request)
        self.dash.actor(request, form)
        try:
            body = form if form is not None else await read_json(request)
        except ValueError as exc:
            return self.dash.error_page(request, 400, str(exc))
        uuids = body.get("uuid")
        if isinstance(uuids, str):
            uuids = [uuids]
        if uuids is not None and not (
            isinstance(uuids, list) and all(isinstance(u, str) for u in uuids)
        ):
            return self.dash.error_page(request, 400, "uuid must be a list of job ids")
        reason = _text(body.get("reason"))
        if uuids is None and reason is None and not body.get("all"):
            return self.dash.error_page(request, 400, "give uuid (one or more), reason, or all")
        result = await self.dash.call(request, self._requeue_many, uuids, reason)
        if isinstance(result, Response):
            return result
        if form is None:
            return SafeJSON(result)
        return redirect("/trash", f"requeued {len(result)} job(s)")

    def _requeue_many(self, uuids: list[str] | None, reason: str | None) -> list[Any]:
        return _actions.requeue_many(self.board, uuids=uuids, reason=reason)

    async def post_job(self, request: Request) -> Response:
        form = await read_form(request)
        self.dash.actor(request, form)
        try:
            body = form if form is not None else await read_json(request)
            store = _object(body.get("store"), "store")
            kwargs = _object(body.get("kwargs"), "kwargs")
        except ValueError as exc:
            return self.dash.error_page(request, 400, str(exc))
        factory = _text(body.get("factory"))
        if not factory:
            return self.dash.error_page(request, 400, "give the flow factory to post")
        result = await self.dash.call(
            request,
            self._post,
            factory,
            store,
            _text(body.get("name")),
            _text(body.get("priority")) or "NORMAL",
            kwargs,
        )
        if isinstance(result, Response):
            return result
        if form is None:
            return SafeJSON(result, status_code=201)
        return redirect(f"/jobs/{result['uuid']}", "posted")

    def _post(
        self,
        factory: str,
        store: dict[str, Any],
        name: str | None,
        priority: str,
        kwargs: dict[str, Any],
    ) -> dict[str, Any]:
        return _actions.post(
            self.board,
            self.backend,
            factory=factory,
            store=store,
            name=name,
            priority=priority,
            kwargs=kwargs,
        )


def _object(value: Any, what: str) -> dict[str, Any]:
    """A JSON object given as an object (JSON API) or as JSON text (a form field)."""
    if isinstance(value, list):
        value = value[-1] if value else None
    if value is None or (isinstance(value, str) and not value.strip()):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            raise ValueError(f"{what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a JSON object")
    return value


def _priorities() -> list[str]:
    from legato.states import JobPriority

    return list(JobPriority.__members__)


def routes(dash: Dashboard) -> list[Route]:
    """Every route of the dashboard (static files aside)."""
    h = _Handlers(dash)
    return [
        Route("/", h.overview),
        Route("/jobs", h.jobs),
        Route("/jobs/{uuid}", h.job),
        Route("/flows", h.flows),
        Route("/trash", h.trash),
        Route("/conductors", h.conductors),
        Route("/login", h.login, methods=["GET", "POST"]),
        Route("/logout", h.logout, methods=["POST"]),
        Route("/api/stats", h.api_stats),
        Route("/api/jobs", h.api_jobs, methods=["GET", "POST"]),
        Route("/api/jobs/{uuid}", h.api_job),
        Route("/api/jobs/{uuid}/{action}", h.action, methods=["POST"]),
        Route("/api/trash/requeue", h.requeue_many, methods=["POST"]),
        Route("/api/flows", h.flows),
        Route("/api/conductors", h.api_conductors),
    ]
