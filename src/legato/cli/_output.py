"""How the CLI prints: rich on a terminal, plain text when piped, JSON with ``--json``.

Commands build plain data (lists of dicts) and hand it here, so the three renderings always
carry the same facts.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import logging
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["EVENT_FIELD", "JSONLogFormatter", "Mode", "Output", "age", "printable", "shorten"]


class Mode(enum.StrEnum):
    RICH = "rich"
    PLAIN = "plain"
    JSON = "json"


# C0 controls, DEL and C1 controls: escapes (ESC[...m), newlines and carriage returns in a job
# name or reason would repaint the terminal or forge lines of a listing.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with every control character shown as a visible escape (``\\x1b``, ``\\n``),
    so that what a job's producer wrote prints on one line and cannot drive the terminal."""
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub(lambda m: repr(m[0])[1:-1] if m[0] in "\n\r\t"
                        else f"\\x{ord(m[0]):02x}", text)


#: The ``extra`` key of a log record that carries an event's fields (``JSONLogFormatter``).
EVENT_FIELD = "legato_event"


class JSONLogFormatter(logging.Formatter):
    """One JSON object per log record: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
    ``message`` (with ``exception`` when there is a traceback), the ``static`` fields (the
    conductor's name, say), and the fields of an event logged with
    ``extra={EVENT_FIELD: {...}}``. URL passwords are masked; JSON escapes control
    characters, so a record is always one line."""

    def __init__(self, **static: Any) -> None:
        super().__init__()
        self.static = static

    def format(self, record: logging.LogRecord) -> str:
        from legato._redact import redact

        stamp = dt.datetime.fromtimestamp(record.created, dt.UTC)
        data: dict[str, Any] = {"time": stamp.isoformat(timespec="milliseconds"),
                                "level": record.levelname, "logger": record.name}
        data.update(self.static)
        event = getattr(record, EVENT_FIELD, None)
        if isinstance(event, dict):
            data.update(event)
        else:
            data["message"] = redact(record.getMessage())
        if record.exc_info:
            data["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps({k: redact(v) if isinstance(v, str) else v for k, v in data.items()},
                          default=_default)


def _default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.name if isinstance(value, int) else str(value.value)
    return str(value)


def shorten(value: Any, width: int = 60) -> str:
    """``value`` as compact JSON (or its str), cut to ``width`` characters with an ellipsis."""
    try:
        text = value if isinstance(value, str) else json.dumps(value, default=_default)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def age(since: dt.datetime | float | None, *, now: float | None = None) -> str:
    """A short human age: ``42s``, ``3m``, ``5h``, ``2d``."""
    if since is None:
        return "-"
    stamp = since.timestamp() if isinstance(since, dt.datetime) else since
    seconds = max(0.0, (now if now is not None else dt.datetime.now(dt.UTC).timestamp()) - stamp)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:.0f}s"


class Output:
    """Prints data in the chosen mode.

    Args:
        mode: rich, plain or json.
        stream: where to print (stdout by default).
    """

    def __init__(self, mode: Mode, *, stream: TextIO | None = None) -> None:
        self.mode = mode
        self.stream = stream or sys.stdout
        self.console = Console(file=self.stream, highlight=False, soft_wrap=False)

    @classmethod
    def choose(cls, *, json_flag: bool, stream: TextIO | None = None) -> Output:
        stream = stream or sys.stdout
        if json_flag:
            return cls(Mode.JSON, stream=stream)
        return cls(Mode.RICH if stream.isatty() else Mode.PLAIN, stream=stream)

    @property
    def is_json(self) -> bool:
        return self.mode is Mode.JSON

    def json(self, data: Any) -> None:
        """Print ``data`` as one JSON document (one line, so it can be streamed)."""
        self.stream.write(json.dumps(data, default=_default, sort_keys=False) + "\n")
        self.stream.flush()

    def text(self, line: str, *, style: str | None = None) -> None:
        """Print a line of text (ignored in JSON mode: JSON callers print data instead).

        Control characters are escaped (``printable``) and rich prints it as plain text, never
        markup: a line may carry a job's name or reason, written by whoever posted it.
        """
        if self.mode is Mode.JSON:
            return
        line = printable(line)
        if self.mode is Mode.RICH:
            self.console.print(line, style=style, markup=False)
        else:
            self.stream.write(line + "\n")
            self.stream.flush()

    def table(self, rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *,
              title: str | None = None, empty: str = "(none)") -> None:
        """Print ``rows`` as a table of ``columns`` (JSON mode prints the rows as a list)."""
        if self.mode is Mode.JSON:
            self.json([dict(r) for r in rows])
            return
        cells = [[_cell(r.get(c)) for c in columns] for r in rows]
        if self.mode is Mode.RICH:
            table = Table(title=Text(title) if title is not None else None,
                          title_justify="left")
            for column in columns:
                table.add_column(Text(column), overflow="fold")
            for row in cells:
                table.add_row(*(Text(cell) for cell in row))  # a str cell would be markup
            if cells:
                self.console.print(table)
            else:
                self.text(empty if title is None else f"{title}: {empty}")
            return
        if title:
            self.text(f"{title}:")
        if not cells:
            self.text(empty)
            return
        widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
        self.text("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))
                  .rstrip())
        for row in cells:
            self.text("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())

    def fields(self, pairs: Mapping[str, Any], *, title: str | None = None) -> None:
        """Print ``key: value`` lines (not in JSON mode)."""
        if self.mode is Mode.JSON:
            return
        if title:
            self.text(title, style="bold")
        width = max((len(k) for k in pairs), default=0)
        for key, value in pairs.items():
            self.text(f"  {key.ljust(width)}  {_cell(value)}")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, enum.Enum):
        return value.name if isinstance(value, int) else str(value.value)
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return printable(str(value))
