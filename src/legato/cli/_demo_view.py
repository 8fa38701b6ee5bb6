"""How ``legato demo`` shows itself: a live rich display on a terminal, plain lines otherwise."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from legato.cli._demo_run import Crash, DemoJob, Worker
from legato.cli._output import Output, printable

__all__ = ["render", "summary_lines"]


def _bar(job: DemoJob, width: int = 20) -> Text:
    filled = round(width * job.done / job.steps) if job.steps else width
    colour = "green" if job.finished else ("red" if job.lost else "cyan")
    bar = Text("█" * filled, style=colour)
    bar.append("░" * (width - filled), style="dim")
    bar.append(f" {job.done}/{job.steps}")
    return bar


def _job_status(job: DemoJob) -> str:
    if job.finished:
        return "done"
    if job.lost:
        return "trashed"
    if job.owner:
        step = f" step {job.running}" if job.running else ""
        return f"{job.owner}{step}"
    return "waiting"


def render(jobs: list[DemoJob], workers: list[Worker], notes: list[str],
           elapsed: float) -> RenderableType:
    """The live display: one row per job, one per conductor, then what happened."""
    job_table = Table(title=f"jobs ({elapsed:.1f}s)", title_justify="left", expand=False)
    job_table.add_column("job")
    job_table.add_column("steps")
    job_table.add_column("held by / state")
    for job in jobs:
        job_table.add_row(Text(printable(job.name)), _bar(job), Text(printable(_job_status(job))))
    holding = {job.owner: job.name for job in jobs if job.owner}
    worker_table = Table(title="conductors", title_justify="left")
    for column in ("conductor", "pid", "status", "job"):
        worker_table.add_column(column)
    for worker in workers:
        style = "red" if worker.killed else None
        worker_table.add_row(Text(worker.name), str(worker.pid),
                             Text(worker.status, style=style or ""),
                             Text(printable(holding.get(worker.name, "-"))))
    parts: list[RenderableType] = [job_table, worker_table]
    parts.extend(Text(note, style="yellow") for note in notes[-6:])
    return Group(*parts)


def progress_line(jobs: list[DemoJob], elapsed: float) -> str:
    done = sum(j.done for j in jobs)
    total = sum(j.steps for j in jobs)
    finished = sum(1 for j in jobs if j.finished)
    return f"[{elapsed:5.1f}s] steps {done}/{total}, jobs done {finished}/{len(jobs)}"


def summary_lines(summary: dict[str, Any], crash: Crash | None) -> list[str]:
    """The closing summary, as ``key: value`` lines (the same facts as the JSON summary)."""
    lines = [
        f"jobs completed: {summary['completed']}/{summary['jobs']}",
        f"steps run: {summary['steps_run']} for {summary['steps_needed']} needed "
        f"({summary['steps_rerun']} re-run)",
        f"takeovers: {summary['takeovers']} (jobs finished by another conductor than the one "
        "that started them)",
    ]
    if crash is not None:
        lines.append(f"crash: {crash.victim} (pid {crash.victim_pid}) killed with SIGKILL while "
                     f"holding {crash.job} with {crash.recorded} step(s) recorded")
        if crash.resumed_by is not None:
            lines.append(_resume_line(crash))
        else:
            lines.append(f"resume: nobody took {crash.job} over")
    lines.append(f"time: {summary['elapsed']:.1f}s")
    lines.append(f"result: {'OK' if summary['ok'] else 'FAILED'}")
    return lines


def _resume_line(crash: Crash) -> str:
    after = (f" {crash.resumed_at - crash.killed_at:.1f}s later"
             if crash.resumed_at is not None else "")
    text = f"resume: {crash.resumed_by} took {crash.job} over{after}"
    if crash.resumed_from is not None:
        text += f" and continued from step {crash.resumed_from}"
    if crash.recorded == 1:
        text += " (step 1 was recorded: not re-run)"
    elif crash.recorded > 1:
        text += f" (steps 1-{crash.recorded} were recorded: not re-run)"
    return text


def print_summary(out: Output, summary: dict[str, Any], crash: Crash | None) -> None:
    if out.is_json:
        out.json(summary)
        return
    out.text("")
    out.text("summary", style="bold")
    for line in summary_lines(summary, crash):
        out.text(f"  {line}", style="green" if summary["ok"] else "red")


def stamp(start: float) -> str:
    return f"[{time.monotonic() - start:5.1f}s]"
