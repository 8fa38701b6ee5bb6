"""``legato stats``: the board's counts, live conductors, and jobs finished and failed lately."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import typer

from legato.cli import _context
from legato.persistence.models import utcnow

if TYPE_CHECKING:
    from legato.jobboard.base import JobBoard
    from legato.persistence.base import Persistence

__all__ = ["gather", "register", "summary_line"]

#: The windows finished/failed jobs are counted over, by label.
WINDOWS = (("1m", 60), ("10m", 600), ("1h", 3600))


def gather(board: JobBoard, backend: Persistence) -> dict[str, Any]:
    """The board's counts, how long the oldest waiting job has waited (seconds, whatever its
    priority; None when none waits), live conductors, and finished/failed jobs per window."""
    data: dict[str, Any] = {"board": board.name, **board.counts()}
    oldest = board.oldest_waiting()
    data["oldest_waiting_age"] = (round(max(0.0, board.clock() - oldest.record.created_on), 1)
                                  if oldest is not None else None)
    data["conductors"] = sum(1 for _ in board.iter_entities("conductor"))
    now = utcnow()
    for label, seconds in WINDOWS:
        counts = backend.claim_counts(now - dt.timedelta(seconds=seconds))
        data[f"finished_{label}"] = counts["finished"]
        data[f"failed_{label}"] = counts["failed"]
    return data


def summary_line(counts: dict[str, int]) -> str:
    """``waiting 3, delayed 0, claimed 1, trashed 2``."""
    return ", ".join(f"{key} {counts[key]}" for key in ("waiting", "delayed", "claimed",
                                                        "trashed"))


def stats(ctx: typer.Context) -> None:
    """Jobs waiting, delayed, claimed and trashed on the board, how long the oldest waiting
    job has waited (seconds), live conductors, and jobs finished and failed in the last
    minute, 10 minutes and hour (from the job history)."""
    settings: _context.Settings = ctx.obj
    with _context.open_board(settings) as (board, backend):
        data = gather(board, backend)
    if settings.out.is_json:
        settings.out.json(data)
        return
    settings.out.fields({k: v for k, v in data.items() if k != "board"},
                        title=f"board {data['board']}")


def register(app: typer.Typer) -> None:
    app.command("stats")(stats)
