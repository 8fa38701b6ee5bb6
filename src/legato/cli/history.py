"""``legato jobs history JOB``: every claim of a job as a timeline, from persistence."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from legato.cli import _context, _lookup

if TYPE_CHECKING:
    from legato.persistence.models import Claim

__all__ = ["claim_row", "register"]

#: Outcome shown for a claim with no recorded end.
RUNNING = "running"


def claim_row(claim: Claim) -> dict[str, Any]:
    """The facts the timeline shows for one claim (JSON-friendly)."""
    row = claim.to_dict()
    ended = claim.ended_at
    row["took"] = (f"{(ended - claim.claimed_at).total_seconds():.3f}s"
                   if ended is not None else None)
    row["outcome"] = claim.outcome or RUNNING
    row["claimed"] = claim.claimed_at
    row["ended"] = ended
    row["ran"] = ", ".join(claim.atoms) or None
    return row


def history(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(metavar="JOB", help="Job uuid (or a unique prefix).")],
) -> None:
    """Show every claim of a job, oldest first: owner, fence, when it was claimed and ended,
    its outcome and reason, the flow's state at the end and the atoms it ran. Works after the
    job was consumed or trashed (the history is kept in persistence)."""
    settings: _context.Settings = ctx.obj
    with _context.open_board(settings) as (board, backend):
        found = _lookup.find_anywhere(board, backend, job_id)
    rows = [claim_row(c) for c in found.history]
    out = settings.out
    if out.is_json:
        out.json({"uuid": found.uuid, "name": found.name, "state": found.state,
                  "book_uuid": found.book_uuid,
                  "claims": [{k: v for k, v in row.items()
                              if k not in ("claimed", "ended", "took", "ran")}
                             for row in rows]})
        return
    out.fields({"name": found.name, "state": found.state, "logbook": found.book_uuid,
                "claims": len(rows)}, title=f"job {found.uuid}")
    out.table(rows, ["fence", "owner", "claimed", "ended", "took", "outcome", "flow_state",
                     "ran", "reason"], title="history", empty="(never claimed)")


def register(app: typer.Typer) -> None:
    from legato.cli.jobs import jobs_app

    jobs_app.command("history")(history)
    del app
