"""Small HTTP helpers of the dashboard: form and JSON bodies, redirects, origin checks."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse

from legato._redact import redact

__all__ = [
    "CSP",
    "Forbidden",
    "SafeJSON",
    "local_path",
    "read_form",
    "read_json",
    "redact_all",
    "redirect",
    "same_origin",
]


class Forbidden(Exception):
    """An action refused: no token, a wrong one, no session or CSRF token, or actions off."""


def redact_all(value: Any) -> Any:
    """``value`` (JSON data) with the password of every URL in its strings masked."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_all(k): redact_all(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_all(v) for v in value]
    return value


class SafeJSON(JSONResponse):
    """A JSON response whose strings never show a URL password."""

    def render(self, content: Any) -> bytes:
        return super().render(redact_all(content))


#: Content-Security-Policy of every page: the dashboard's own scripts and styles only.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)


def same_origin(request: Request) -> bool:
    """A browser's form post names its page's origin; it must be this dashboard's."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urllib.parse.urlsplit(origin).netloc == request.headers.get("host")


async def read_form(request: Request) -> dict[str, Any] | None:
    """A form post's fields (lists for repeated names), or None for another content type."""
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    if kind != "application/x-www-form-urlencoded":
        return None
    body = (await request.body()).decode("utf-8", "replace")
    fields: dict[str, Any] = {}
    for key, value in urllib.parse.parse_qsl(body, keep_blank_values=True):
        if key in fields:
            previous = fields[key]
            fields[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            fields[key] = value
    return fields


async def read_json(request: Request) -> dict[str, Any]:
    """A JSON object body (empty: ``{}``).

    Raises:
        ValueError: not a JSON object.
    """
    body = await request.body()
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise ValueError("the body is not valid JSON") from None
    if not isinstance(value, dict):
        raise ValueError("the body must be a JSON object")
    return value


def local_path(target: Any, default: str) -> str:
    """``target`` when it is a path on this site (never another host), else ``default``."""
    if (
        isinstance(target, str)
        and target.startswith("/")
        and not target.startswith("//")
        and "\\" not in target
    ):
        return target
    return default


def redirect(target: str, notice: str | None = None) -> RedirectResponse:
    if notice:
        sep = "&" if "?" in target else "?"
        target = f"{target}{sep}{urllib.parse.urlencode({'notice': notice})}"
    return RedirectResponse(target, status_code=303)
