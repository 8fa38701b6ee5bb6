"""Who may act on the dashboard: the token, page sessions and CSRF tokens.

Reading is open (the dashboard binds to loopback unless told otherwise). Actions need the
dashboard started with actions allowed and a token: API clients send
``Authorization: Bearer <token>``; people log in once with the token on ``/login`` and get a
session cookie, and every form they post carries that session's CSRF token.
"""

from __future__ import annotations

import dataclasses
import hmac
import secrets
import threading
from collections.abc import Mapping

__all__ = ["SESSION_COOKIE", "Session", "Sessions", "Token", "parse_token"]

#: The cookie holding a page session's id.
SESSION_COOKIE = "legato_dashboard_session"
#: Default name of the token's holder (what job history records as the actor).
DEFAULT_NAME = "operator"
_MAX_SESSIONS = 1000


@dataclasses.dataclass(frozen=True)
class Token:
    """The secret that authorises actions, and the name actions are recorded under.

    Attributes:
        name: who holds it (``alice``), written into job history as ``alice@dashboard``.
        secret: the token itself.
    """

    name: str
    secret: str = dataclasses.field(repr=False)

    def matches(self, offered: str | None) -> bool:
        """Whether ``offered`` is the secret (compared in constant time)."""
        if not offered:
            return False
        return hmac.compare_digest(offered.encode(), self.secret.encode())

    @property
    def actor(self) -> str:
        """The owner name actions use on the board and in job history."""
        return f"{self.name}@dashboard"


def parse_token(text: str | None) -> Token | None:
    """``LEGATO_DASHBOARD_TOKEN``: ``SECRET`` or ``NAME:SECRET`` (None when unset or empty).

    Raises:
        ValueError: a name or secret that is empty or too weak to be a token.
    """
    if not text or not text.strip():
        return None
    name, sep, secret = text.strip().partition(":")
    if not sep:
        name, secret = DEFAULT_NAME, name
    if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ValueError(
            "LEGATO_DASHBOARD_TOKEN's name (before ':') must be letters, digits, '-', '_' or '.'"
        )
    if len(secret) < 12:
        raise ValueError("LEGATO_DASHBOARD_TOKEN must be at least 12 characters long")
    return Token(name, secret)


def bearer(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


@dataclasses.dataclass(frozen=True)
class Session:
    """A logged-in browser: its id (the cookie) and the CSRF token its forms carry."""

    id: str
    csrf: str


class Sessions:
    """Page sessions, kept in memory (a restart logs everyone out)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[str, Session] = {}

    def open(self) -> Session:
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32))
        with self._lock:
            if len(self._by_id) >= _MAX_SESSIONS:  # oldest first: dicts keep insertion order
                self._by_id.pop(next(iter(self._by_id)))
            self._by_id[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        with self._lock:
            return self._by_id.get(session_id)

    def close(self, session_id: str | None) -> None:
        with self._lock:
            self._by_id.pop(session_id or "", None)


def csrf_ok(session: Session | None, offered: str | None) -> bool:
    """Whether a form's CSRF token is its session's."""
    if session is None or not offered:
        return False
    return hmac.compare_digest(offered.encode(), session.csrf.encode())
