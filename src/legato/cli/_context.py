"""What every command shares: the global options and the connections they name.

The CLI is the composition root: it turns ``--board``/``--persistence`` URLs into objects and
passes them down; the library has no process-wide defaults.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from legato import errors, jobboard, persistence
from legato.cli._output import Output

if TYPE_CHECKING:
    from legato.jobboard.base import Job, JobBoard
    from legato.persistence.base import Persistence

__all__ = ["DEFAULT_URL", "Settings", "cli_owner", "find_job", "open_board", "open_persistence"]

#: The embedded default: one SQLite file in ``.legato/`` of the current directory.
DEFAULT_URL = "sqlite:///.legato/legato.db"
BOARD_ENV = "LEGATO_BOARD"
PERSISTENCE_ENV = "LEGATO_PERSISTENCE"


@dataclasses.dataclass
class Settings:
    """The global options, resolved.

    Attributes:
        board_url: the jobboard URL (``--board`` / ``LEGATO_BOARD`` / the default).
        persistence_url: the persistence URL (``--persistence`` / ``LEGATO_PERSISTENCE`` / default).
        explicit: whether either URL was given (option or environment) rather than defaulted.
        json: machine output.
        debug: tracebacks and debug logging.
        out: the printer for this invocation.
    """

    board_url: str
    persistence_url: str
    explicit: bool
    json: bool
    debug: bool
    out: Output

    @classmethod
    def resolve(cls, *, board: str | None, persistence_url: str | None, json_flag: bool,
                debug: bool) -> Settings:
        board = board or os.environ.get(BOARD_ENV) or None
        persistence_url = persistence_url or os.environ.get(PERSISTENCE_ENV) or None
        return cls(board_url=board or DEFAULT_URL,
                   persistence_url=persistence_url or DEFAULT_URL,
                   explicit=board is not None or persistence_url is not None,
                   json=json_flag, debug=debug, out=Output.choose(json_flag=json_flag))


def _prepare_sqlite(url: str) -> None:
    """Create the folder of a relative or absolute SQLite file so the default just works; the
    default folder (``.legato/``) gets a ``.gitignore`` of its own that ignores everything in
    it, so a project's repository never picks up the database."""
    if url.startswith("sqlite:///") and ":memory:" not in url:
        path = url[len("sqlite:///"):].split("?", 1)[0]
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    if url == DEFAULT_URL:
        ignore = Path(DEFAULT_URL[len("sqlite:///"):]).parent / ".gitignore"
        if not ignore.exists():
            with contextlib.suppress(OSError):  # a read-only checkout: nothing to ignore
                ignore.write_text("# Legato's embedded database (legato --help)\n*\n")


def open_persistence(url: str) -> Persistence:
    """Connect to persistence at ``url`` and make sure its schema is current."""
    _prepare_sqlite(url)
    backend = persistence.connect(url)
    try:
        backend.upgrade()
    except BaseException:
        backend.close()
        raise
    return backend


@contextlib.contextmanager
def open_board(settings: Settings, **options: Any) -> Iterator[tuple[JobBoard, Persistence]]:
    """Connect persistence and the board (with that persistence); close both afterwards."""
    backend = open_persistence(settings.persistence_url)
    try:
        _prepare_sqlite(settings.board_url)
        board = jobboard.connect(settings.board_url, persistence=backend, **options)
        with board:
            yield board, backend
    finally:
        backend.close()


def cli_owner() -> str:
    """The claim owner name the CLI uses for its own short claims (``jobs trash``)."""
    return f"legato-cli@{socket.gethostname()}:{os.getpid()}"


def find_job(board: JobBoard, ref: str, *, trash: bool = False) -> Job:
    """The job whose uuid is ``ref`` or starts with it (on the board, or in the trash).

    Raises:
        NotFound: no job matches, or a prefix matches several.
    """
    ref = ref.strip()
    if not ref:
        raise errors.NotFound("no job id given")
    if not trash:
        with contextlib.suppress(errors.NotFound):
            return board.get(ref)
    jobs = board.iter_trash() if trash else board.iterjobs()
    matches = [job for job in jobs if job.uuid.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    where = "in the trash" if trash else "on the board"
    if not matches:
        raise errors.NotFound(f"no job {ref!r} {where}")
    raise errors.NotFound(f"job id {ref!r} is ambiguous {where}: matches "
                          + ", ".join(j.uuid for j in matches[:5]))
