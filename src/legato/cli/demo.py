"""``legato demo``: several conductor processes, one of them killed mid-flow, nothing lost.

Posts a batch of multi-step jobs on an embedded SQLite board (a fresh temporary file, so every
run starts clean), starts conductor processes, SIGKILLs one while it holds a job with at least
one recorded step, and shows another conductor resuming that job from the last recorded step.
It ends with a summary computed from the side-effect log the steps write. Exit code 0 only if
every job completed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.live import Live

from legato._redact import redact
from legato.cli import _context, _demo_view
from legato.cli import _demo_run as parts
from legato.cli._output import Mode

if TYPE_CHECKING:
    from legato.jobboard.base import JobBoard
    from legato.persistence.base import Persistence

__all__ = ["DemoOptions", "DemoRun", "register"]

_POLL = 0.2


@dataclasses.dataclass(frozen=True)
class DemoOptions:
    jobs: int = 12
    conductors: int = 3
    steps: int = 5
    step_delay: float = 0.3
    ttl: float = 2.0
    kill: bool = True
    timeout: float = 120.0
    dashboard: bool = False
    dashboard_port: int = 0
    dashboard_linger: float = 300.0

    def check(self) -> None:
        if self.jobs < 1 or self.steps < 2:
            raise ValueError("the demo needs --jobs >= 1 and --steps >= 2")
        if self.conductors < (2 if self.kill else 1):
            raise ValueError("the demo needs --conductors >= 2 (one of them is killed); "
                             "or pass --no-kill")
        if self.step_delay < 0 or self.ttl <= 0 or self.timeout <= 0:
            raise ValueError("--step-delay must be >= 0, --ttl and --timeout > 0")
        if not 0 <= self.dashboard_port < 65536 or self.dashboard_linger < 0:
            raise ValueError("--dashboard-port must be 0 (a free port) to 65535, "
                             "--dashboard-linger >= 0")


class DemoRun:
    """One run of the demo against ``settings``' board and persistence."""

    def __init__(self, settings: _context.Settings, options: DemoOptions, workdir: Path) -> None:
        self.settings = settings
        self.options = options
        self.workdir = workdir
        self.log_path = workdir / "side-effects.jsonl"
        self.out = settings.out
        self.jobs: list[parts.DemoJob] = []
        self.workers: list[parts.Worker] = []
        self.crash: parts.Crash | None = None
        self.notes: list[str] = []
        self.started = time.monotonic()
        self._last_progress = 0.0
        self._live: Live | None = None

    # -- the run ---------------------------------------------------------------------------

    def execute(self) -> int:
        """Run the demo; return the exit code."""
        if not self.options.dashboard:
            return self._execute()
        with self._dashboard():
            code = self._execute()
            self._linger()
        return code

    @contextlib.contextmanager
    def _dashboard(self) -> Iterator[None]:
        """The web dashboard over the demo's board and persistence (a connection of its own,
        read-only, loopback only), served in a thread while the demo runs."""
        from legato.cli.dashboard import build
        from legato.dashboard.serving import running

        with _context.open_board(self.settings) as (board, backend):
            app = build(board, backend, self.settings, allow_actions=False, refresh=0.5)
            with running(app, port=self.options.dashboard_port) as url:
                self._say(f"dashboard on {url}/ : open it to watch the jobs, and the "
                          "takeover in the killed conductor's job")
                yield

    def _linger(self) -> None:
        """Keep the dashboard up after the demo, for ``dashboard_linger`` seconds or Ctrl-C."""
        linger = self.options.dashboard_linger
        if linger <= 0:
            return
        with _deferred_interrupt() as hit:  # before saying so: a Ctrl-C right after is a stop
            self._say(f"the dashboard stays up for {linger:.0f}s (Ctrl-C stops it sooner)")
            hit.wait(linger)

    def _say(self, text: str) -> None:
        """A line for the person running the demo, on stderr under --json (stdout carries
        only the summary there)."""
        if self.out.is_json:
            sys.stderr.write(f"{text}\n")
            sys.stderr.flush()
        else:
            self.note(text)

    def _execute(self) -> int:
        with _context.open_board(self.settings) as (board, backend):
            self.note(f"board {redact(self.settings.board_url)}; work folder {self.workdir}")
            try:
                for index in range(1, self.options.conductors + 1):
                    self.workers.append(parts.start_worker(
                        f"conductor-{index}", board_url=self.settings.board_url,
                        persistence_url=self.settings.persistence_url, ttl=self.options.ttl,
                        workdir=self.workdir))
                self.jobs = parts.post_jobs(
                    board, backend, count=self.options.jobs, steps=self.options.steps,
                    log_path=self.log_path, step_delay=self.options.step_delay)
                self.note(f"posted {len(self.jobs)} jobs x {self.options.steps} steps; "
                          f"started {len(self.workers)} conductor processes")
                self._watch(board, backend)
            finally:
                parts.stop_workers(self.workers)
        summary = self._summary()
        _demo_view.print_summary(self.out, summary, self.crash)
        if not summary["ok"]:
            self._explain_failure()
        return 0 if summary["ok"] else 1

    def _explain_failure(self) -> None:
        """On stderr: the jobs that did not finish and the last words of each conductor."""
        for job in self.jobs:
            if not job.finished:
                sys.stderr.write(f"{job.name}: {job.state}, {job.done}/{job.steps} steps, "
                                 f"{'trashed' if job.lost else 'not finished'}\n")
        for worker in self.workers:
            if worker.killed:
                continue
            tail = parts.last_lines(worker.log_path, 3)
            sys.stderr.write(f"{worker.name} ({worker.status}): {' | '.join(tail) or '-'}\n")

    def _watch(self, board: JobBoard, backend: Persistence) -> None:
        live = Live(self._render(), console=self.out.console, refresh_per_second=8,
                    transient=False) if self.out.mode is Mode.RICH else None
        with live if live is not None else contextlib.nullcontext(), _deferred_interrupt() as hit:
            self._live = live
            deadline = self.started + self.options.timeout
            while time.monotonic() < deadline:
                if hit.is_set():
                    raise KeyboardInterrupt
                parts.refresh(self.jobs, board, backend)
                self._maybe_kill(backend)
                self._watch_takeover()
                self._show()
                if all(job.finished or job.lost for job in self.jobs):
                    break
                if not any(w.proc.poll() is None for w in self.workers):
                    self.note("every conductor has exited")
                    break
                time.sleep(_POLL)
            else:
                self.note(f"gave up after {self.options.timeout:.0f}s")
            self._live = None

    # -- the crash -------------------------------------------------------------------------

    def _maybe_kill(self, backend: Persistence) -> None:
        """SIGKILL a conductor that holds a job with >= 1 recorded step and steps still to do."""
        if not self.options.kill or self.crash is not None:
            return
        alive = {w.name: w for w in self.workers if w.proc.poll() is None}
        if len(alive) < 2:
            return
        for job in self.jobs:
            if job.owner in alive and 1 <= job.done < job.steps and job.running is not None:
                worker = alive[job.owner]
                parts.kill(worker)
                recorded = parts.recorded_steps(backend, job.flow_uuid)
                self.crash = parts.Crash(victim=worker.name, victim_pid=worker.pid, job=job.name,
                                         recorded=recorded, killed_at=time.monotonic())
                self.note(f"killed {worker.name} (pid {worker.pid}) with SIGKILL while it held "
                          f"{job.name} with {recorded}/{job.steps} steps recorded")
                return

    def _watch_takeover(self) -> None:
        crash = self.crash
        if crash is None or crash.resumed_by is not None:
            return
        job = next(j for j in self.jobs if j.name == crash.job)
        if job.owner is not None and job.owner != crash.victim:
            crash.resumed_by = job.owner
            crash.resumed_at = time.monotonic()
            self.note(f"{job.owner} claimed {job.name} after "
                      f"{crash.resumed_at - crash.killed_at:.1f}s (the dead claim's lease "
                      f"ended) and resumes after step {job.done}")

    # -- output ----------------------------------------------------------------------------

    def note(self, text: str) -> None:
        line = f"{_demo_view.stamp(self.started)} {text}"
        self.notes.append(line)
        if self._live is not None:
            self._live.update(self._render())
        else:
            self.out.text(line)

    def _render(self) -> Any:
        return _demo_view.render(self.jobs, self.workers, self.notes,
                                 time.monotonic() - self.started)

    def _show(self) -> None:
        if self._live is not None:
            self._live.update(self._render())
            return
        now = time.monotonic()
        if now - self._last_progress >= 2.0:
            self._last_progress = now
            self.out.text(_demo_view.progress_line(self.jobs, now - self.started))

    def _summary(self) -> dict[str, Any]:
        entries = parts.read_side_effects(self.log_path)
        names = {w.pid: w.name for w in self.workers}
        summary = parts.summarise(entries, self.jobs, steps=self.options.steps, names=names)
        crash = self.crash
        if crash is not None:
            crash.resumed_from = parts.resumed_from(entries, crash.job, crash.victim_pid)
            if crash.resumed_by is None:  # finished between two looks: the log knows who
                last = [e for e in entries if e["job"] == crash.job]
                if last and last[-1]["pid"] != crash.victim_pid:
                    crash.resumed_by = names.get(last[-1]["pid"])
        summary["elapsed"] = round(time.monotonic() - self.started, 2)
        summary["ok"] = summary["completed"] == summary["jobs"]
        summary["crash"] = dataclasses.asdict(crash) if crash is not None else None
        if crash is not None and crash.resumed_at is not None:
            summary["crash"]["takeover_after"] = round(crash.resumed_at - crash.killed_at, 2)
        summary["workdir"] = str(self.workdir)
        return summary


def _demo_settings(settings: _context.Settings, workdir: Path) -> _context.Settings:
    """The given URLs if any were given, else a fresh SQLite file in ``workdir``."""
    if not settings.explicit:
        url = f"sqlite:///{workdir / 'demo.db'}"
        return dataclasses.replace(settings, board_url=url, persistence_url=url)
    for url in (settings.board_url, settings.persistence_url):
        if url.startswith("memory:"):
            raise ValueError(f"the demo runs conductors in other processes; {redact(url)} is "
                             "private to one process (use sqlite, postgresql, redis or zookeeper)")
    return settings


def demo(
    ctx: typer.Context,
    jobs: Annotated[int, typer.Option("--jobs", help="Jobs to post.")] = 12,
    conductors: Annotated[int, typer.Option("--conductors", help="Conductor processes.")] = 3,
    steps: Annotated[int, typer.Option("--steps", help="Steps per job.")] = 5,
    step_delay: Annotated[float, typer.Option(
        "--step-delay", metavar="SECONDS", help="How long each step works.")] = 0.3,
    ttl: Annotated[float, typer.Option(
        "--ttl", metavar="SECONDS", help="Claim lease: how soon a dead claim ends.")] = 2.0,
    kill: Annotated[bool, typer.Option(
        "--kill/--no-kill", help="SIGKILL one conductor mid-flow.")] = True,
    timeout: Annotated[float, typer.Option(
        "--timeout", metavar="SECONDS", help="Give up after this long.")] = 120.0,
    keep: Annotated[bool, typer.Option(
        "--keep", help="Keep the work folder (database, side-effect and conductor logs).")] =
        False,
    dashboard: Annotated[bool, typer.Option(
        "--dashboard", help="Serve the web dashboard (read-only, on 127.0.0.1) while the demo "
        "runs; needs legato[dashboard].")] = False,
    dashboard_port: Annotated[int, typer.Option(
        "--dashboard-port", metavar="N", help="The dashboard's port (0: a free one).")] = 0,
    dashboard_linger: Annotated[float, typer.Option(
        "--dashboard-linger", metavar="SECONDS",
        help="Keep the dashboard up this long after the demo ends (Ctrl-C stops it sooner).")] =
        300.0,
) -> None:
    """Run conductors in several processes, kill one mid-flow, watch another resume its job."""
    options = DemoOptions(jobs=jobs, conductors=conductors, steps=steps, step_delay=step_delay,
                          ttl=ttl, kill=kill, timeout=timeout, dashboard=dashboard,
                          dashboard_port=dashboard_port, dashboard_linger=dashboard_linger)
    options.check()
    settings: _context.Settings = ctx.obj
    workdir = Path(tempfile.mkdtemp(prefix="legato-demo-"))
    try:
        code = DemoRun(_demo_settings(settings, workdir), options, workdir).execute()
    finally:
        if keep:
            settings.out.text(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if code:
        raise typer.Exit(code)


@contextlib.contextmanager
def _deferred_interrupt() -> Iterator[threading.Event]:
    """Turn Ctrl-C into a flag the watch loop checks between polls.

    A KeyboardInterrupt raised in the middle of a database call can surface as a storage error
    (SQLite reports "interrupted") that is retried and swallowed; checking a flag between polls
    makes the interrupt reliable.
    """
    hit = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield hit
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: hit.set())
    try:
        yield hit
    finally:
        signal.signal(signal.SIGINT, previous)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
