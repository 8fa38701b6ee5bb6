"""``legato dashboard``: a web dashboard over a board and persistence (``legato[dashboard]``).

``create_app(board, persistence, ...)`` builds the Starlette application; ``serve`` runs it
with uvicorn. Routes and options: docs/dashboard.md.
"""

from __future__ import annotations

from legato.dashboard._security import Token, parse_token

__all__ = ["Token", "create_app", "parse_token"]


def __getattr__(name: str) -> object:
    # The web stack is an extra: importing it says which one when it is missing.
    if name == "create_app":
        try:
            from legato.dashboard.app import create_app
        except ImportError as exc:
            from legato import errors

            raise errors.MissingDriver(
                f"the dashboard needs its extra: pip install 'legato[dashboard]' ({exc})",
                extra="dashboard",
            ) from exc
        return create_app
    raise AttributeError(name)
