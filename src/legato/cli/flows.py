"""``legato flows list``: flows with their job, state, last error, attempts and duration."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

import typer

from legato.cli import _context
from legato.persistence.models import utcnow
from legato.states import FlowState

__all__ = ["parse_since", "register"]

flows_app = typer.Typer(help="List recorded flows (failed ones included).",
                        no_args_is_help=True)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_SINCE = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def parse_since(text: str) -> dt.timedelta:
    """``90s``, ``10m``, ``1h``, ``2d`` as a duration.

    Raises:
        ValueError: anything else (the message says what is expected).
    """
    match = _SINCE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"--since must be a number with s, m, h or d (e.g. 1h), not {text!r}")
    return dt.timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def _state(text: str | None) -> FlowState | None:
    if text is None:
        return None
    try:
        return FlowState(text.upper())
    except ValueError:
        raise ValueError(f"--state must be one of {', '.join(s.value for s in FlowState)}, "
                         f"not {text!r}") from None


@flows_app.command("list")
def list_flows(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option(
        "--state", help="Only flows in this state: FAILURE, REVERTED, RUNNING, SUCCESS, "
        "PENDING, ...")] = None,
    since: Annotated[str | None, typer.Option(
        "--since", metavar="AGE", help="Only flows claimed or ended within AGE (30s, 10m, 1h, "
        "2d).")] = None,
    factory: Annotated[str | None, typer.Option(
        "--factory", metavar="NAME", help="Only flows of this flow factory (module:name).")]
        = None,
    limit: Annotated[int, typer.Option(
        "--limit", metavar="N", help="Show at most N flows, newest first.")] = 100,
) -> None:
    """List flows newest first with their job, state, last error, attempts and duration (from
    persistence: works after their jobs were consumed or trashed)."""
    settings: _context.Settings = ctx.obj
    if limit < 1:
        raise ValueError("--limit must be >= 1")
    wanted = _state(state)
    after = utcnow() - parse_since(since) if since is not None else None
    backend = _context.open_persistence(settings.persistence_url)
    try:
        summaries = backend.list_flows(state=wanted, since=after, factory=factory, limit=limit)
    finally:
        backend.close()
    rows: list[dict[str, Any]] = []
    for summary in summaries:
        row = summary.to_dict()
        row["state"] = summary.state or "PENDING"
        row["took"] = f"{summary.duration:.3f}s" if summary.duration is not None else None
        row["ended"] = summary.ended_at
        rows.append(row)
    if settings.out.is_json:
        settings.out.json([{k: v for k, v in r.items() if k not in ("took", "ended")}
                           for r in rows])
        return
    settings.out.table(rows, ["flow_uuid", "name", "job_uuid", "state", "attempts", "took",
                              "ended", "error"], empty="no flows")


def register(app: typer.Typer) -> None:
    app.add_typer(flows_app, name="flows")
