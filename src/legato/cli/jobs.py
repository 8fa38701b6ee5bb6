"""``legato jobs list|show|trash|cancel|requeue`` and ``legato conductors``."""

from __future__ import annotations

import getpass
import itertools
import os
import socket
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from legato import errors, operations
from legato._redact import redact
from legato.cli import _context, _lookup
from legato.cli._output import Mode, age, shorten

if TYPE_CHECKING:
    from legato.jobboard.base import Job, JobBoard
    from legato.persistence.base import Persistence

__all__ = ["job_row", "register"]

jobs_app = typer.Typer(help="List, inspect, trash, cancel and requeue jobs.",
                       no_args_is_help=True)

def job_row(job: Job, board: JobBoard, *, now: float | None = None) -> dict[str, Any]:
    """The facts ``jobs list`` shows for one job (JSON-friendly)."""
    now = board.clock() if now is None else now
    record = job.record
    return {
        "uuid": job.uuid,
        "name": job.name,
        "priority": job.priority.name,
        "state": str(record.effective_state(now)),
        "owner": record.effective_owner(now),
        "attempts": job.attempts,
        "age": age(record.created_on, now=now),
        "created_on": job.created_on.isoformat(),
        "book_uuid": job.book_uuid,
        "reason": job.reason,
    }


@jobs_app.command("list")
def list_jobs(
    ctx: typer.Context,
    trash: Annotated[bool, typer.Option("--trash", help="List trashed jobs and why.")] = False,
    limit: Annotated[int, typer.Option(
        "--limit", metavar="N", help="Show at most N jobs (0: all).")] = 100,
) -> None:
    """List the jobs on the board in claim order (or the trashed ones, newest first)."""
    settings: _context.Settings = ctx.obj
    if limit < 0:
        raise ValueError("--limit must be >= 0")
    with _context.open_board(settings) as (board, _):
        jobs = board.iter_trash() if trash else board.iterjobs()
        rows = [job_row(job, board) for job in itertools.islice(jobs, limit or None)]
        # The footer is for people: on a terminal only (piped output stays one table).
        counts = board.counts() if settings.out.mode is Mode.RICH else None
    if trash:
        for row in rows:
            row["state"] = "TRASHED"
        columns = ["uuid", "name", "priority", "attempts", "age", "reason"]
    else:
        columns = ["uuid", "name", "priority", "state", "owner", "attempts", "age"]
    settings.out.table(rows, columns, title="trash" if trash else None)
    if counts is not None:
        from legato.cli.stats import summary_line

        settings.out.text(summary_line(counts))


@jobs_app.command("show")
def show_job(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(metavar="JOB", help="Job uuid (or a unique prefix).")],
) -> None:
    """Show one job: its details, its logbook and the state of its flows. Works for a job
    waiting, running, trashed or consumed (from its history once it left the board)."""
    settings: _context.Settings = ctx.obj
    with _context.open_board(settings) as (board, backend):
        found = _lookup.find_anywhere(board, backend, job_id)
        if found.job is not None:
            data = job_row(found.job, board)
            data["details"] = found.job.details
            data["last_modified"] = (found.job.last_modified.isoformat()
                                     if found.job.last_modified else None)
            data.update(_timers(found.job, board.clock()))
        else:
            data = _gone_row(found)
        data["state"] = found.state
        if found.trashed:  # the trash keeps the last claim's fields; no one holds the job
            data.update(owner=None, claim_expires_in=None)
        data["claims"] = len(found.history)
        last = found.history[-1] if found.history else None
        data["last_outcome"] = last.outcome if last is not None else None
        data["flows"] = _flows_of(found.book_uuid, backend)
    out = settings.out
    if out.is_json:
        out.json(data)
        return
    shown = {k: v for k, v in data.items() if k not in ("details", "flows", "age")}
    shown["details"] = shorten(data["details"], 100)
    out.fields(shown, title=f"job {found.uuid}")
    out.table(data["flows"], ["uuid", "name", "state", "atoms", "done"], title="flows")


def _gone_row(found: _lookup.Found) -> dict[str, Any]:
    """What the history tells of a job that left the board (consumed)."""
    last = found.history[-1] if found.history else None
    return {"uuid": found.uuid, "name": found.name, "priority": None, "state": found.state,
            "owner": None, "attempts": len(found.history), "age": None,
            "created_on": None, "book_uuid": found.book_uuid,
            "reason": last.reason if last is not None else None, "details": None,
            "last_modified": (last.ended_at.isoformat()
                              if last is not None and last.ended_at else None),
            "claim_expires_in": None, "claimable_in": None}


def _timers(job: Job, now: float) -> dict[str, Any]:
    """Seconds until the live claim's lease ends, and until a delayed job may be claimed."""
    record = job.record
    lease = record.lease_expires if record.effective_owner(now) is not None else None
    waiting = record.available_at if record.available_at and record.available_at > now else None
    return {"claim_expires_in": round(lease - now, 1) if lease is not None else None,
            "claimable_in": round(waiting - now, 1) if waiting is not None else None}


def _flows_of(book_uuid: str | None, backend: Persistence) -> list[dict[str, Any]]:
    if book_uuid is None:
        return []
    try:
        flows = list(backend.get_flows_for_book(book_uuid))
    except errors.NotFound:
        return []
    rows = []
    for flow_detail in flows:
        atoms = list(flow_detail)
        rows.append({
            "uuid": flow_detail.uuid, "name": flow_detail.name,
            "state": str(flow_detail.state) if flow_detail.state else "PENDING",
            "atoms": len(atoms),
            "done": sum(1 for a in atoms if str(a.state) == "SUCCESS"),
            "factory": (flow_detail.meta.get("factory") or {}).get("name"),
        })
    return rows


@jobs_app.command("trash")
def trash_job(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(metavar="JOB", help="Job uuid (or a unique prefix).")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept with the job).")] =
        "trashed by operator",
) -> None:
    """Move an unclaimed job to the trash. A claimed job is refused: stop its conductor first
    (or wait for its claim to end)."""
    settings: _context.Settings = ctx.obj
    owner = _context.cli_owner()
    with _context.open_board(settings) as (board, backend):
        job = _context.find_job(board, job_id)
        result = operations.trash(board, backend, job, owner, reason=reason)
    if settings.out.is_json:
        settings.out.json(result)
    else:
        settings.out.text(f"trashed {job.uuid}")


@jobs_app.command("cancel")
def cancel_job(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(metavar="JOB", help="Job uuid (or a unique prefix).")],
    reason: Annotated[str | None, typer.Option(
        "--reason", help="Why (kept in the trash reason, with who cancelled and when).")] = None,
) -> None:
    """Cancel a job. A waiting (or delayed) job is trashed at once; a running job's conductor
    learns of it at its next lease renewal, suspends the flow at the next atom boundary and
    trashes the job. The trash reason reads "cancelled by WHO at TIME: REASON"."""
    settings: _context.Settings = ctx.obj
    who = _operator()
    with _context.open_board(settings) as (board, backend):
        job = _context.find_job(board, job_id)
        result = operations.cancel(board, backend, job, who, reason=reason)
    trashed, holder = result["trashed"], result["owner"]
    if settings.out.is_json:
        settings.out.json(result)
    elif trashed:
        settings.out.text(f"cancelled {job.uuid}: trashed")
    else:
        settings.out.text(f"cancelled {job.uuid}: {holder or 'its conductor'} stops it at the "
                          "next step and trashes it")


def _operator() -> str:
    """Who runs this command, as ``user@host`` (what a cancel reason names)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()}"


@jobs_app.command("requeue")
def requeue_job(
    ctx: typer.Context,
    job_ids: Annotated[list[str] | None, typer.Argument(
        metavar="JOB...", help="Trashed job uuids (or unique prefixes).")] = None,
    all_jobs: Annotated[bool, typer.Option(
        "--all", help="Requeue every trashed job (those whose reason matches --reason).")] =
        False,
    reason: Annotated[str | None, typer.Option(
        "--reason", metavar="TEXT",
        help="With --all: only trashed jobs whose reason contains TEXT (any case).")] = None,
) -> None:
    """Post trashed jobs again: same name, logbook, details and priority; prints each new uuid.

    Each new job resumes from whatever its logbook records. Requeueing takes the job out of the
    trash in the same step, so requeueing it twice posts it once.
    """
    settings: _context.Settings = ctx.obj
    ids = list(job_ids or ())
    if all_jobs == bool(ids):
        raise typer.BadParameter("give trashed job ids, or --all (not both)")
    if reason is not None and not all_jobs:
        raise typer.BadParameter("--reason selects jobs for --all; use it with --all")
    rows = []
    with _context.open_board(settings) as (board, _):
        if all_jobs:
            chosen = operations.trashed(board, reason=reason)
        else:
            chosen = list({job.uuid: job for job in
                           (_context.find_job(board, ref, trash=True) for ref in ids)}.values())
        for old in chosen:
            rows.append(operations.requeue(board, old))
            if not settings.out.is_json:
                print(rows[-1]["uuid"], flush=True)
    if settings.out.is_json:
        settings.out.json(rows)
    elif all_jobs and not rows:
        settings.out.text("no trashed job matches" if reason else "the trash is empty")


def conductors(ctx: typer.Context) -> None:
    """List the live conductors registered on the board and the jobs each one holds."""
    settings: _context.Settings = ctx.obj
    with _context.open_board(settings) as (board, _):
        now = board.clock()
        held: dict[str, list[str]] = {}
        for job in board.iter_claimed():  # the board's index of claims, not every job
            owner = job.record.effective_owner(now)
            if owner is not None:
                held.setdefault(owner, []).append(job.uuid)
        rows = [_conductor_row(entity, held, now) for entity in board.iter_entities("conductor")]
    for row in rows:
        row["jobs"] = ", ".join(j[:8] for j in row["job_uuids"]) or "-"
        row["state"] = _paused_text(row["paused"])
    settings.out.table(rows, ["name", "host", "pid", "started", "state", "jobs"],
                       empty="no live conductors")


def _conductor_row(entity: Any, held: dict[str, list[str]], now: float) -> dict[str, Any]:
    meta = entity.metadata or {}
    started = meta.get("started_at")
    started_text = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
                    + f" ({age(started, now=now)} ago)") if isinstance(started, int | float) \
        else None
    paused = meta.get("paused")
    return {"name": entity.name, "host": meta.get("host"), "pid": meta.get("pid"),
            "started": started_text, "started_at": started,
            "paused": paused if isinstance(paused, dict) else None,
            "job_uuids": held.get(entity.name, []), "metadata": meta}


def _paused_text(paused: dict[str, Any] | None) -> str:
    """``claiming``, or when a conductor that paused itself (it looks misconfigured: the jobs
    it claimed in a row could not run there) claims again, and why it paused."""
    if paused is None:
        return "claiming"
    until = paused.get("until")
    when = (time.strftime("%H:%M:%S", time.localtime(until))
            if isinstance(until, int | float) else "?")
    jobs = paused.get("jobs")
    reason = redact(str(paused.get("reason") or ""))[:200]
    count = f"{jobs} jobs in a row could not run" if isinstance(jobs, int) else "misconfigured"
    return f"PAUSED until {when} ({count}; last: {reason})"


def register(app: typer.Typer) -> None:
    app.add_typer(jobs_app, name="jobs")
    app.command("conductors")(conductors)
