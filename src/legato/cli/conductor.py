"""``legato conductor``: run a conductor until stopped, printing its events as they happen.

SIGTERM or SIGINT asks the conductor to stop: it claims nothing more, running engines suspend at
their next atom boundary and their jobs are abandoned at once for other conductors. A second
signal exits immediately (claims then end when their lease runs out).
"""

from __future__ import annotations

import contextlib
import datetime as dt
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
from legato.cli._output import EVENT_FIELD, JSONLogFormatter, Output

__all__ = ["EventPrinter", "register"]

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


def conductor(
    ctx: typer.Context,
    kind: Annotated[str, typer.Option("--kind", help="blocking or nonblocking.")] = "blocking",
    name: Annotated[str, typer.Option(
        "--name", help="Conductor name (its claims add @host:pid/token).")] = "conductor",
    max_dispatches: Annotated[int | None, typer.Option(
        "--max-dispatches", metavar="N", help="Return after dispatching N jobs.")] = None,
    allow: Annotated[list[str] | None, typer.Option(
        "--allow", metavar="PREFIX",
        help="Module prefix whose flow factories may run (repeatable).")] = None,
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
    """Run a conductor: claim jobs, run their flows, consume, abandon or trash them."""
    from legato import conductor as conductors

    settings: _context.Settings = ctx.obj
    options: dict[str, Any] = {"allowed_factories": list(allow or ())}
    if workers is not None:
        options["max_simultaneous_jobs"] = workers
    if ttl is not None:
        options["claim_ttl"] = ttl
    if max_attempts is not None:
        options["max_attempts"] = max_attempts
    if claim_ahead_below is not None:
        if kind != "blocking":
            raise ValueError("--claim-ahead-below applies to the blocking kind only")
        options["claim_ahead_below"] = claim_ahead_below
    printer, formatter, provider = _observers(settings, name, verbose=verbose,
                                              log_format=log_format, trace_file=trace_file)
    if provider is not None:
        options["tracer_provider"] = provider
    with _context.open_board(settings) as (board, backend), \
            _metrics_server(metrics_port, metrics_host, board) as (metrics, served):
        if metrics is not None:
            options["metrics"] = metrics
        worker = conductors.fetch(kind, name, board, persistence=backend, engine=engine,
                                  **options)
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


def _observers(settings: _context.Settings, name: str, *, verbose: bool, log_format: str,
               trace_file: str | None) -> tuple[EventPrinter, JSONLogFormatter | None, Any]:
    """The event printer, the JSON log formatter (``--log-format json``) and the tracer
    provider (``--trace-file``) of a conductor command."""
    if log_format not in ("text", "json"):
        raise ValueError(f"--log-format must be text or json, not {log_format!r}")
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
