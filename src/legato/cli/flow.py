"""``legato flow show BOOK_OR_JOB``: what persistence recorded, atom by atom."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from legato import errors
from legato.cli import _context, _lookup
from legato.cli._output import shorten

if TYPE_CHECKING:
    from legato.jobboard.base import JobBoard
    from legato.persistence.base import Persistence
    from legato.persistence.models import AtomDetail, FlowDetail, LogBook

__all__ = ["atom_row", "register"]

flow_app = typer.Typer(help="Inspect recorded flows.", no_args_is_help=True)


def _failure_text(failure: Any) -> str | None:
    """``Type: message`` of a stored ``Failure`` dict."""
    if not isinstance(failure, dict):
        return None
    names = failure.get("exc_type_names") or ["Exception"]
    return f"{names[0]}: {failure.get('message', '')}"


def _seconds(value: Any) -> str | None:
    return f"{value:.3f}s" if isinstance(value, int | float) else None


def atom_row(atom: AtomDetail) -> dict[str, Any]:
    """The facts ``flow show`` prints for one atom (JSON-friendly)."""
    meta = atom.meta or {}
    return {
        "name": atom.name,
        "kind": atom.KIND,
        "state": str(atom.state),
        "intention": str(atom.intention),
        "result": shorten(atom.results, 50) if atom.results is not None else None,
        "failure": _failure_text(atom.failure) or _failure_text(atom.revert_failure),
        "duration": _seconds(meta.get("duration")),
        "revert_duration": _seconds(meta.get("revert_duration")),
        "progress": meta.get("progress"),
        "results": atom.results,
        "meta": meta,
    }


def _flow_data(flow_detail: FlowDetail, backend: Persistence) -> dict[str, Any]:
    atoms = list(backend.get_atoms_for_flow(flow_detail.uuid))
    factory = flow_detail.meta.get("factory")
    return {
        "uuid": flow_detail.uuid,
        "name": flow_detail.name,
        "state": str(flow_detail.state) if flow_detail.state else "PENDING",
        "factory": factory.get("name") if isinstance(factory, dict) else None,
        "store": flow_detail.meta.get("store"),
        "atoms": [atom_row(a) for a in atoms],
    }


def _book_named(name: str, backend: Persistence) -> LogBook:
    """The one logbook called ``name`` (a consumed job has left the board; its book stays)."""
    books = [b for b in backend.get_logbooks(lazy=True) if b.name == name]
    if not books:
        raise errors.NotFound(f"no logbook, job or logbook name {name!r}")
    if len(books) > 1:
        raise errors.NotFound(f"{len(books)} logbooks are named {name!r}; give a uuid: "
                              + ", ".join(b.uuid for b in books[-3:]))
    return backend.get_logbook(books[0].uuid)


def _book_for(ref: str, board: JobBoard, backend: Persistence) -> tuple[LogBook, str | None]:
    """The logbook of a job (uuid or prefix: on the board, in the trash or consumed), of a
    logbook uuid (or prefix), or of a logbook name."""
    candidates: list[str] = []
    found: _lookup.Found | None = None
    try:
        found = _lookup.find_anywhere(board, backend, ref)
        candidates.append(found.uuid)
    except _lookup.Ambiguous as exc:
        candidates.extend(exc.candidates)
    except errors.NotFound:
        pass
    books = [b for b in _lookup.find_logbooks(backend, ref)
             if found is None or b.uuid != found.book_uuid]
    candidates.extend(b.uuid for b in books)
    if len(candidates) > 1:
        raise _lookup.ambiguous(ref.strip(), "job or logbook", candidates)
    if found is not None:
        if found.book_uuid is None:
            raise errors.NotFound(f"job {found.uuid} has no logbook")
        return backend.get_logbook(found.book_uuid), found.uuid
    if books:
        book = backend.get_logbook(books[0].uuid)
        job_uuid = book.meta.get("job_uuid")
        return book, job_uuid if isinstance(job_uuid, str) else None
    return _book_named(ref.strip(), backend), None


@flow_app.command("show")
def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(
        metavar="BOOK_OR_JOB",
        help="A job or logbook uuid (or a unique prefix), or a logbook name.")],
) -> None:
    """Show each flow of a logbook atom by atom: state, result, failure and timings."""
    settings: _context.Settings = ctx.obj
    with _context.open_board(settings) as (board, backend):
        book, job_uuid = _book_for(ref, board, backend)
        flows = [_flow_data(fd, backend) for fd in backend.get_flows_for_book(book.uuid)]
    out = settings.out
    if out.is_json:
        out.json({"book_uuid": book.uuid, "book_name": book.name, "job_uuid": job_uuid,
                  "flows": flows})
        return
    out.fields({"name": book.name, "job": job_uuid, "flows": len(flows)},
               title=f"logbook {book.uuid}")
    for flow in flows:
        out.text("")
        out.fields({"state": flow["state"], "factory": flow["factory"],
                    "store": shorten(flow["store"], 80) if flow["store"] else None},
                   title=f"flow {flow['name']} ({flow['uuid']})")
        out.table(flow["atoms"], ["name", "state", "result", "failure", "duration"],
                  empty="(no atoms recorded yet)")


def register(app: typer.Typer) -> None:
    app.add_typer(flow_app, name="flow")
