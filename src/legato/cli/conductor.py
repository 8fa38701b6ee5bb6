"""``legato conductor``: run a conductor until stopped, printing its events as they happen.

Before claiming anything it checks what it can (option combinations, ``--import`` modules and
``--allow`` prefixes import, the engine kind exists, board and persistence answer, the schema is
current); a failure is one ``error:`` line on stderr and exit status 2. The current directory is
on the import path, as for ``legato post``.

SIGTERM or SIGINT asks the conductor to stop: it claims nothing more, running engines suspend at
their next atom boundary and their jobs are abandoned at once for other conductors. A second
signal exits immediately (claims then end when their lease runs out).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import logging
import os
import signal
import sys
import threading
import types
from collections.abc import Iterator
from typing import Annotated, Any

import typer

from legato._redact import redact
from legato.cli import _context
from legato.cli._output import EVENT_FIELD, JSONLogFormatter, Output, printable

__all__ = ["EventPrinter", "StartupError", "register"]

#: Exit status of a conductor that refused to start (bad options, a check that failed).
STARTUP_EXIT = 2
#: Exit status of ``--max-dispatches N`` when a dispatched job was trashed.
TRASHED_EXIT = 1


class StartupError(Exception):
    """A start-up check failed: printed as one line, exit status 2, before any claim."""

#: Events printed without ``--verbose`` (the others are engine lifecycle steps).
_NOTABLE = frozenset({"started", "stopping", "stopped", "running_start", "job_consumed",
                      "job_abandoned", "job_trashed"})
_STYLES = {"job_consumed": "green", "job_abandoned": "yellow", "job_trashed": "red",
           "running_start": "cyan"}
_OUTCOMES = {"job_consumed": "consumed", "job_abandoned": "abandoned",
             "job_trashed": "trashed"}
#: Fields every event has in the JSON log format (null where they do not apply).
_NO_JOB = dict.fromkeys(("event", "job", "job_name", "attempt", "fence", "outcome", "reason"))
#: The logger conductor events go to with ``--log-format json``.
_events = logging.getLogger("legato.events")


class EventPrinter:
    """A conductor notifier listener that prints each event (one JSON object per line with
    ``--json``), or with ``log`` logs it on the ``legato.events`` logger instead (the JSON
    log format)."""

    def __init__(self, out: Output, *, verbose: bool = False, log: bool = False) -> None:
        self.out = out
        self.verbose = verbose
        self.log = log

    def __call__(self, event: str, details: dict[str, Any]) -> None:
        job = details.get("job")
        row = {
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            "event": event,
            "job": getattr(job, "uuid", None),
            "job_name": getattr(job, "name", None),
            "attempt": getattr(job, "attempts", None),
            "fence": getattr(job, "fence", None),
            "outcome": _OUTCOMES.get(event),
            "reason": details.get("reason"),
        }
        conductor = details.get("conductor")
        if conductor is not None:
            row["conductor"] = getattr(getattr(conductor, "conductor", None), "name", None)
        self.emit(row)

    def emit(self, row: dict[str, Any]) -> None:
        if self.log:
            if self.verbose or row["event"] in _NOTABLE:
                fields = {**_NO_JOB, **row}
                fields.pop("time", None)  # the record's own time is the event's
                _events.info("%s", row["event"], extra={EVENT_FIELD: fields})
            return
        if self.out.is_json:
            self.out.json(row)
            return
        if not self.verbose and row["event"] not in _NOTABLE:
            return
        stamp = dt.datetime.now().strftime("%H:%M:%S")
        text = f"{stamp} {row['event']:<17}"
        if row.get("job"):
            text += f" {row.get('job_name') or ''} ({row['job'][:8]})"
            if row.get("reason"):
                text += f": {row['reason']}"
        elif row.get("reason"):
            text += f" {row['reason']}"
        self.out.text(text, style=_STYLES.get(row["event"]))


def _attach_timing(event: str, details: dict[str, Any]) -> None:
    """Record each atom's duration in its meta (``legato flow show`` prints it)."""
    from legato.engine.listeners import TimingListener

    engine = details.get("engine")
    if engine is not None:
        TimingListener(engine).register()


def _install_signals(conductor: Any, printer: EventPrinter) -> dict[int, Any]:
    received = 0

    def handler(signum: int, frame: types.FrameType | None) -> None:
        nonlocal received
        received += 1
        if received > 1:
            # Second signal: leave now; the claims we hold end with their lease.
            os._exit(128 + signum)
        note = {"event": "stopping", "job": None, "job_name": None,
                "reason": f"{signal.Signals(signum).name} received; signal again to exit at once"}

        def stop() -> None:
            printer.emit(note)
            conductor.stop()

        # Not in the handler itself: it interrupts the main thread, which may hold the stdout
        # or a conductor lock at that moment.
        threading.Thread(target=stop, name="legato-stop", daemon=True).start()

    previous: dict[int, Any] = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, handler)
    return previous


def check_options(kind: str, workers: int | None, max_dispatches: int | None,
                  ttl: float | None, max_attempts: int | None, claim_ahead_below: float | None,
                  pause_after: int | None, pause_for: float | None) -> None:
    """Refuse option values and combinations that make no sense.

    Raises:
        StartupError: naming the option(s).
    """
    refusals = [
        (workers is not None and workers < 1, f"--workers must be >= 1, not {workers}"),
        (kind == "blocking" and workers is not None and workers != 1,
         f"--workers {workers} needs --kind nonblocking (a blocking conductor runs one job "
         "at a time)"),
        (max_dispatches is not None and max_dispatches < 1,
         f"--max-dispatches must be >= 1, not {max_dispatches}"),
        (ttl is not None and not ttl > 0, f"--ttl must be > 0, not {ttl}"),
        (max_attempts is not None and max_attempts < 1,
         f"--max-attempts must be >= 1, not {max_attempts}"),
        (claim_ahead_below is not None and kind != "blocking",
         "--claim-ahead-below applies to --kind blocking only"),
        (claim_ahead_below is not None and not claim_ahead_below >= 0,
         f"--claim-ahead-below must be >= 0, not {claim_ahead_below}"),
        (pause_after is not None and pause_after < 0,
         f"--pause-after must be >= 0, not {pause_after}"),
        (pause_for is not None and not pause_for > 0,
         f"--pause-for must be > 0, not {pause_for}"),
    ]
    for refused, message in refusals:
        if refused:
            raise StartupError(message)


def check_imports(imports: list[str], allow: list[str], engine: str) -> None:
    """Put the current directory on the import path, import each ``--import`` module (so its
    ``@legato.flow_factory`` registrations count) and each ``--allow`` prefix, and check the
    engine kind.

    Raises:
        StartupError: naming the module, prefix or engine kind.
    """
    from legato import engine as engine_mod

    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    for option, names in (("--import", imports), ("--allow", allow)):
        for module in names:
            try:
                importlib.import_module(module.strip().rstrip("."))
            except Exception as exc:
                raise StartupError(f"{option} {module}: cannot import it: "
                                   f"{type(exc).__name__}: {exc} (import path starts with the "
                                   f"current directory {cwd})") from exc
    try:
        engine_mod.engine_class(engine)
    except Exception as exc:
        raise StartupError(f"--engine {engine}: {exc}") from exc


def _check_services(board: Any, backend: Any) -> None:
    """The board and persistence answer, and persistence's schema is current."""
    try:
        backend.validate()
    except Exception as exc:
        raise StartupError(f"persistence does not answer or its schema is not current: "
                           f"{type(exc).__name__}: {exc}") from exc
    try:
        board.job_count  # noqa: B018 - one cheap call that must answer
    except Exception as exc:
        raise StartupError(f"the board does not answer: {type(exc).__name__}: {exc}") from exc


def _refuse(exc: BaseException) -> typer.Exit:
    """Print one ``error:`` line for a failed start-up; the ``Exit`` to raise."""
    message = str(exc).strip() or type(exc).__name__
    if not isinstance(exc, StartupError):
        message = f"cannot start: {type(exc).__name__}: {message}"
    sys.stderr.write(f"error: StartupError: {printable(redact(message.splitlines()[0]))}\n")
    sys.stderr.flush()
    return typer.Exit(STARTUP_EXIT)


def _started(settings: _context.Settings) -> tuple[contextlib.ExitStack, Any, Any]:
    """Open board and persistence (closed with the returned stack); any failure refuses to
    start."""
    stack = contextlib.ExitStack()
    try:
        board, backend = stack.enter_context(_context.open_board(settings))
    except Exception as exc:
        stack.close()
        if settings.debug:
            raise
        raise _refuse(exc) from None
    return stack, board, backend


def conductor(
    ctx: typer.Context,
    kind: Annotated[str, typer.Option("--kind", help="blocking or nonblocking.")] = "blocking",
    name: Annotated[str, typer.Option(
        "--name", help="Conductor name (its claims add @host:pid/token).")] = "conductor",
    max_dispatches: Annotated[int | None, typer.Option(
        "--max-dispatches", metavar="N", help="Return after dispatching N jobs.")] = None,
    allow: Annotated[list[str] | None, typer.Option(
        "--allow", metavar="PREFIX",
        help="Module prefix the conductor may import to find registered flow factories "
             "(repeatable); checked at start.")] = None,
    imports: Annotated[list[str] | None, typer.Option(
        "--import", metavar="MODULE",
        help="Module to import at start, so its @legato.flow_factory registrations count "
             "(repeatable).")] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", metavar="N", help="Jobs run at once (nonblocking kind).")] = None,
    ttl: Annotated[float | None, typer.Option(
        "--ttl", metavar="SECONDS", help="Claim lease; renewed every TTL/3.")] = None,
    engine: Annotated[str, typer.Option(
        "--engine", help="Engine kind: serial, parallel, process (or a URL).")] = "serial",
    max_attempts: Annotated[int | None, typer.Option(
        "--max-attempts", metavar="N", help="Trash a job after N claims (default 5).")] = None,
    claim_ahead_below: Annotated[float | None, typer.Option(
        "--claim-ahead-below", metavar="SECONDS",
        help="Blocking kind on Redis/ZooKeeper: claim one job ahead after jobs shorter than "
             "this (default 0.05; 0: never).")] = None,
    pause_after: Annotated[int | None, typer.Option(
        "--pause-after", metavar="N",
        help="Pause claiming after N jobs in a row that cannot run here (default 3; 0: "
             "never).")] = None,
    pause_for: Annotated[float | None, typer.Option(
        "--pause-for", metavar="SECONDS",
        help="First pause's length; doubles while misconfigured (default 10).")] = None,
    verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Print every event, not only job outcomes.")] = False,
    metrics_port: Annotated[int | None, typer.Option(
        "--metrics-port", metavar="PORT", min=0, max=65535,
        help="Serve Prometheus metrics at http://HOST:PORT/metrics (0: any free port, "
             "printed in the started event).")] = None,
    metrics_host: Annotated[str, typer.Option(
        "--metrics-host", metavar="HOST",
        help="Address the metrics server listens on.")] = "0.0.0.0",
    log_format: Annotated[str, typer.Option(
        "--log-format", metavar="text|json",
        help="json: every event and log line as one JSON object per line on stderr "
             "(instead of events on stdout).")] = "text",
    trace_file: Annotated[str | None, typer.Option(
        "--trace-file", metavar="PATH",
        help="Append the OpenTelemetry spans of job runs to PATH as JSON lines "
             "(needs legato[otel]).")] = None,
) -> None:
    """Run a conductor: claim jobs, run their flows, consume, abandon or trash them.

    Exit status: 0; 2 when it refused to start (one error line says why); 1 with
    ``--max-dispatches`` when a dispatched job was trashed.
    """
    from legato import conductor as conductors

    settings: _context.Settings = ctx.obj
    options = _given(allowed_factories=list(allow or ()), max_simultaneous_jobs=workers,
                     claim_ttl=ttl, max_attempts=max_attempts,
                     claim_ahead_below=claim_ahead_below, pause_after=pause_after,
                     pause_for=pause_for)
    try:
        check_options(kind, workers, max_dispatches, ttl, max_attempts, claim_ahead_below,
                      pause_after, pause_for)
        check_imports(list(imports or ()), list(allow or ()), engine)
        # Before the board connects, so that its own log lines are JSON too.
        printer, formatter, provider = _observers(settings, name, verbose=verbose,
                                                  log_format=log_format, trace_file=trace_file)
    except StartupError as exc:
        raise _refuse(exc) from None
    if provider is not None:
        options["tracer_provider"] = provider
    stack, board, backend = _started(settings)
    with stack:
        metrics, served = stack.enter_context(_metrics_server(metrics_port, metrics_host, board))
        if metrics is not None:
            options["metrics"] = metrics
        try:
            _check_services(board, backend)
            worker = conductors.fetch(kind, name, board, persistence=backend, engine=engine,
                                      **options)
        except Exception as exc:
            if settings.debug:
                raise
            raise _refuse(exc) from None
        if formatter is not None:
            formatter.static["conductor"] = worker.conductor.name
        worker.notifier.register("*", printer)
        worker.notifier.register("running_start", _attach_timing)
        previous = _install_signals(worker, printer)
        try:
            started: dict[str, Any] = {
                "event": "started", "job": None, "job_name": None,
                "conductor": worker.conductor.name, "pid": os.getpid(),
                "reason": f"{worker.conductor.name} on {redact(settings.board_url)}"}
            if served is not None:
                started["metrics"] = served
                started["reason"] += f"; metrics at {served}"
            printer.emit(started)
            worker.run(max_dispatches=max_dispatches)
        finally:
            for signum, old in previous.items():
                signal.signal(signum, old)
            worker.close()
            if provider is not None:
                provider.shutdown()
    printer.emit({"event": "stopped", "job": None, "job_name": None, "reason": None,
                  "conductor": worker.conductor.name})
    sys.stdout.flush()
    stats: dict[str, int] = getattr(worker, "statistics", None) or {}
    # A job an operator cancelled was trashed as asked: not a failure of this run.
    failed = stats.get("trashed", 0) - stats.get("cancelled", 0)
    if max_dispatches is not None and failed:
        sys.stderr.write(f"error: JobsTrashed: {failed} of {stats['dispatched']} dispatched jobs "
                         "were trashed (legato jobs list --trash says why)\n")
        sys.stderr.flush()
        raise typer.Exit(TRASHED_EXIT)


def _given(**options: Any) -> dict[str, Any]:
    """The conductor options given on the command line (those not None)."""
    return {key: value for key, value in options.items() if value is not None}


def _observers(settings: _context.Settings, name: str, *, verbose: bool, log_format: str,
               trace_file: str | None) -> tuple[EventPrinter, JSONLogFormatter | None, Any]:
    """The event printer, the JSON log formatter (``--log-format json``) and the tracer
    provider (``--trace-file``) of a conductor command."""
    if log_format not in ("text", "json"):
        raise StartupError(f"--log-format must be text or json, not {log_format!r}")
    printer = EventPrinter(settings.out, verbose=verbose or settings.debug,
                           log=log_format == "json")
    formatter = _log_json(name) if printer.log else None
    provider = None
    if trace_file is not None:
        from legato.cli._traces import file_tracer_provider

        provider = file_tracer_provider(trace_file)
    return printer, formatter, provider


def _log_json(conductor: str) -> JSONLogFormatter:
    """Every log line as one JSON object naming the conductor; conductor events logged."""
    formatter = JSONLogFormatter(conductor=conductor)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter)
    if not _events.isEnabledFor(logging.INFO):
        _events.setLevel(logging.INFO)
    return formatter


@contextlib.contextmanager
def _metrics_server(port: int | None, host: str,
                    board: Any) -> Iterator[tuple[Any, str | None]]:
    """With a port: conductor metrics on a registry of their own (board gauges included),
    served over HTTP until the block ends; yields them and their URL. Else (None, None)."""
    if port is None:
        yield None, None
        return
    from prometheus_client import CollectorRegistry, start_http_server

    from legato.conductor._metrics import ConductorMetrics

    registry = CollectorRegistry()
    metrics = ConductorMetrics(registry)
    metrics.watch_board(board)
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise OSError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
    try:
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        yield metrics, f"http://{shown}:{server.server_port}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def register(app: typer.Typer) -> None:
    app.command("conductor")(conductor)
