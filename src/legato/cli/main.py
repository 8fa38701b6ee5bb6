"""The ``legato`` command: global options, logging, and one clear line per error.

Global options (``--board``, ``--persistence``, ``--json``, ``--debug``) may be written before or
after the command name: ``main`` moves them to the front before parsing.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer.main import get_command

import legato
from legato import errors
from legato._redact import redact
from legato.cli import _context
from legato.cli._output import printable

__all__ = ["app", "main"]

logger = logging.getLogger(__name__)

app = typer.Typer(
    name="legato",
    help="Durable workflow execution: post jobs, run conductors, inspect flows.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

_FLAGS = ("--json", "--debug")
_VALUED = ("--board", "--persistence")


@app.callback()
def _global(
    ctx: typer.Context,
    board: Annotated[str | None, typer.Option(
        "--board", metavar="URL",
        help=f"Jobboard URL (env {_context.BOARD_ENV}; default {_context.DEFAULT_URL}).")] = None,
    persistence: Annotated[str | None, typer.Option(
        "--persistence", metavar="URL",
        help=f"Persistence URL (env {_context.PERSISTENCE_ENV}; default "
             f"{_context.DEFAULT_URL}).")] = None,
    json_output: Annotated[bool, typer.Option(
        "--json", help="Machine-readable JSON output.")] = False,
    debug: Annotated[bool, typer.Option(
        "--debug", help="Debug logging and full tracebacks.")] = False,
    version: Annotated[bool, typer.Option(
        "--version", help="Print Legato's version and exit.", is_eager=True,
        callback=lambda value: _print_version(value))] = False,
) -> None:
    """Durable workflow execution: post jobs, run conductors, inspect flows."""
    _configure_logging(debug)
    ctx.obj = _context.Settings.resolve(board=board, persistence_url=persistence,
                                        json_flag=json_output, debug=debug)


def _print_version(value: bool) -> None:
    if value:
        print(f"legato {legato.__version__}")
        raise typer.Exit(0)


def _configure_logging(debug: bool) -> None:
    # The library never configures logging; the CLI, as the application, does. --debug opens
    # Legato's own loggers only: drivers (SQLAlchemy, kazoo) at DEBUG would drown them.
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, force=True,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s" if debug
        else "%(levelname)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setFormatter(_SafeFormatter(handler.formatter))
    logging.getLogger("legato").setLevel(logging.DEBUG if debug else logging.NOTSET)


class _SafeFormatter(logging.Formatter):
    """Log lines as the given formatter writes them, with URL passwords masked and control
    characters (from job names, reasons...) escaped, so a line cannot be forged or hide a
    secret. A traceback (``--debug``) keeps its lines."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(redact(self.inner.formatMessage(record)))

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return self.inner.formatTime(record, datefmt)

    def usesTime(self) -> bool:
        return self.inner.usesTime()

    def formatException(self, ei: Any) -> str:
        return redact(self.inner.formatException(ei))


def _register_commands() -> None:
    from legato.cli import conductor, dashboard, demo, flow, flows, history, jobs, post, stats

    conductor.register(app)
    post.register(app)
    jobs.register(app)
    history.register(app)
    flow.register(app)
    flows.register(app)
    stats.register(app)
    demo.register(app)
    dashboard.register(app)


def hoist_global_options(argv: Sequence[str]) -> list[str]:
    """Move the global options found anywhere (before a ``--``) to the front of ``argv``."""
    front: list[str] = []
    rest: list[str] = []
    items = list(argv)
    i = 0
    while i < len(items):
        item = items[i]
        if item == "--":
            rest.extend(items[i:])
            break
        name = item.split("=", 1)[0]
        if item in _FLAGS or (name in _VALUED and "=" in item):
            front.append(item)
        elif item in _VALUED and i + 1 < len(items):
            front.extend(items[i:i + 2])
            i += 1
        else:
            rest.append(item)
        i += 1
    return front + rest


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the process exit code (0 on success)."""
    args = hoist_global_options(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    command = get_command(app)
    try:
        result = command.main(args=args, prog_name="legato", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        return _fail("Aborted: aborted", 130)
    except KeyboardInterrupt:
        return _fail("KeyboardInterrupt: interrupted", 130)
    except typer.TyperException as exc:  # click usage errors: bad option, missing argument...
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare `legato` or `legato jobs`
            sys.stderr.write(exc.format_message() + "\n")
            return 2
        return _fail(f"UsageError: {exc.format_message()}", getattr(exc, "exit_code", 2))
    except (errors.LegatoError, ValueError, TypeError, OSError, ImportError,
            LookupError) as exc:
        if debug:
            raise
        return _fail(_describe(exc), 1)
    if result == 130:  # typer turns Ctrl-C into a silent exit code 130
        return _fail("KeyboardInterrupt: interrupted", 130)
    return result if isinstance(result, int) else 0


def _describe(exc: BaseException) -> str:
    """``<kind>: <message>``: the error's class and the first line of its message, so every
    command's errors read alike (``error: <kind>: <message>``)."""
    message = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {message.splitlines()[0]}"


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"error: {printable(redact(message))}\n")
    sys.stderr.flush()
    return code


_register_commands()
