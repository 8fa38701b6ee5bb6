"""Every SQL statement the backend runs, built once per dialect and reused.

Statements are built from bound parameters only, so SQLAlchemy compiles each one once and then
serves it from its compiled cache; drivers that prepare statements (psycopg) do the rest.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from legato._sql.rendered import Rendered, render
from legato.persistence.sql.tables import atomdetails, flowdetails, job_history, logbooks

__all__ = [
    "PG_ROWS",
    "SQLITE_INSERT_CLAIM",
    "SQLITE_TAKE_FIRST",
    "SQLITE_TAKE_NEW_FLOW",
    "SQLITE_UPDATE_ATOM",
    "SQLITE_UPDATE_ATOM_FENCED",
    "SQLITE_UPSERT_ATOM",
    "SQLITE_UPSERT_CLAIM",
    "ManyShape",
    "Statements",
    "pg_joined_sql",
    "pg_many",
    "pg_many_sql",
    "pg_save",
    "pg_save_rendered",
    "sqlite_update_flow",
]


def _upsert(dialect: str, table: sa.Table, *, keep: tuple[str, ...]) -> Insert:
    """``INSERT`` that updates every column but ``keep`` when the row's uuid already exists.

    One statement, so two writers racing on the same new row cannot both insert it.
    """
    updated = [c.name for c in table.columns if c.name not in keep]
    if dialect in ("mysql", "mariadb"):
        my_stmt = mysql.insert(table)
        return my_stmt.on_duplicate_key_update({c: my_stmt.inserted[c] for c in updated})
    if dialect == "postgresql":
        pg_stmt = postgresql.insert(table)
        return pg_stmt.on_conflict_do_update(
            index_elements=[table.c.uuid], set_={c: pg_stmt.excluded[c] for c in updated})
    if dialect == "sqlite":
        lite_stmt = sqlite.insert(table)
        return lite_stmt.on_conflict_do_update(
            index_elements=[table.c.uuid], set_={c: lite_stmt.excluded[c] for c in updated})
    raise NotImplementedError(f"no upsert for the {dialect!r} dialect")


#: ``update_atom_details`` on SQLite, sent straight to the sqlite3 driver (named parameters).
#: It is 20 of the 24 writes of a 10-task flow, and SQLAlchemy's execution path costs three
#: times what SQLite needs for the write itself; the text is generated from the table, so it
#: cannot drift from it.
SQLITE_UPDATE_ATOM = "UPDATE {} SET {} WHERE uuid = :b_uuid".format(
    atomdetails.name, ", ".join(f"{c.name} = :{c.name}" for c in atomdetails.columns
              if c.name not in ("id", "uuid", "flow_uuid")))

#: The same, landing only while the atom's flow records the fence ``:f_job``/``:f_num``.
SQLITE_UPDATE_ATOM_FENCED = SQLITE_UPDATE_ATOM + (
    f" AND EXISTS (SELECT 1 FROM {flowdetails.name} AS f WHERE f.uuid = {atomdetails.name}"
    ".flow_uuid AND f.fence_job = :f_job AND f.fence = :f_num)")


#: ``take_flow`` of a flow never taken, on SQLite (see ``SQLITE_UPDATE_ATOM``): a job's first
#: claim, so once per job.
SQLITE_TAKE_NEW_FLOW = (f"UPDATE {flowdetails.name} SET fence_job = :f_job, fence = :f_num"
                        " WHERE uuid = :b_uuid AND fence_job IS NULL")


#: ``take_first`` on SQLite (see ``SQLITE_UPDATE_ATOM``): the take riding on a claim's first
#: write, once per claim.
SQLITE_TAKE_FIRST = (f"UPDATE {flowdetails.name} SET fence_job = :f_job, fence = :f_num"
                     " WHERE uuid = :b_uuid AND (fence_job IS NULL"
                     " OR (fence_job = :f_job AND fence = :f_num))")

_ATOM_COLUMNS = [c.name for c in atomdetails.columns if c.name != "id"]

#: ``upsert_atom`` on SQLite (see ``SQLITE_UPDATE_ATOM``): a flow's atoms, written with its
#: first write.
SQLITE_UPSERT_ATOM = "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT (uuid) DO UPDATE SET {}".format(
    atomdetails.name, ", ".join(_ATOM_COLUMNS), ", ".join(f":{c}" for c in _ATOM_COLUMNS),
    ", ".join(f"{c} = excluded.{c}" for c in _ATOM_COLUMNS if c not in ("uuid", "flow_uuid")))


@functools.cache
def sqlite_update_flow(columns: tuple[str, ...], *, fenced: bool) -> str:
    """``update_flow`` (``update_flow_fenced`` when ``fenced``) of ``columns`` on SQLite (see
    ``SQLITE_UPDATE_ATOM``); parameters are named after the columns, plus ``b_uuid`` and the
    fence's ``f_job``/``f_num``."""
    unknown = [c for c in columns if c not in flowdetails.c or c in ("id", "uuid")]
    if unknown or not columns:
        raise ValueError(f"cannot update flow detail columns {columns!r}")
    text = "UPDATE {} SET {} WHERE uuid = :b_uuid".format(
        flowdetails.name, ", ".join(f"{c} = :{c}" for c in columns))
    return text + " AND fence_job = :f_job AND fence = :f_num" if fenced else text


_CLAIM_COLUMNS = [c.name for c in job_history.columns if c.name != "id"]

#: A claim's start, recorded with the take on SQLite (see ``SQLITE_UPDATE_ATOM``) unless that
#: claim is recorded already.
SQLITE_INSERT_CLAIM = "INSERT OR IGNORE INTO {} ({}) VALUES ({})".format(
    job_history.name, ", ".join(_CLAIM_COLUMNS), ", ".join(f":{c}" for c in _CLAIM_COLUMNS))


#: ``record_claim`` on SQLite (see ``SQLITE_UPDATE_ATOM``): once per claim, at its end.
SQLITE_UPSERT_CLAIM = "{} ON CONFLICT (job_uuid, fence) DO UPDATE SET {}".format(
    SQLITE_INSERT_CLAIM.replace("INSERT OR IGNORE", "INSERT", 1),
    ", ".join(f"{c} = excluded.{c}" for c in _CLAIM_COLUMNS if c not in ("job_uuid", "fence")))


def _claim_insert(dialect: str, *, replace: bool) -> Insert:
    """Insert a claim; when its (job, fence) is recorded, replace it (``replace``) or leave
    it. One statement either way."""
    key = ("job_uuid", "fence")
    updated = [c for c in _CLAIM_COLUMNS if c not in key] if replace else []
    if dialect in ("mysql", "mariadb"):
        my_stmt = mysql.insert(job_history)
        if not updated:  # a no-op update: MySQL's INSERT IGNORE would also hide other errors
            return my_stmt.on_duplicate_key_update(job_uuid=my_stmt.inserted.job_uuid)
        return my_stmt.on_duplicate_key_update({c: my_stmt.inserted[c] for c in updated})
    if dialect in ("postgresql", "sqlite"):
        stmt = (postgresql.insert(job_history) if dialect == "postgresql"
                else sqlite.insert(job_history))
        if not updated:
            return stmt.on_conflict_do_nothing(index_elements=list(key))
        return stmt.on_conflict_do_update(index_elements=list(key),
                                          set_={c: stmt.excluded[c] for c in updated})
    raise NotImplementedError(f"no upsert for the {dialect!r} dialect")


def _flow_rows(state: bool, since: bool) -> sa.Select[tuple[object, ...]]:
    """Flows newest first, optionally in ``:state`` and with a claim since ``:since``."""
    cols = [c for c in flowdetails.c if c.name not in ("id", "fence_job", "fence")]
    query = sa.select(*cols).order_by(flowdetails.c.id.desc()).limit(sa.bindparam("limit"))
    if state:
        query = query.where(sa.or_(
            flowdetails.c.state == sa.bindparam("state"),
            sa.and_(sa.bindparam("pending", type_=sa.Boolean) == sa.true(),
                    flowdetails.c.state.is_(None))))
    if since:
        active = sa.select(job_history.c.flow_uuid).where(
            sa.func.coalesce(job_history.c.ended_at, job_history.c.claimed_at)
            >= sa.bindparam("since"))
        query = query.where(flowdetails.c.uuid.in_(active))
    return query


def _fence_matches() -> list[sa.ColumnElement[bool]]:
    """``flowdetails`` records the fence bound as ``f_job``/``f_num``."""
    return [flowdetails.c.fence_job == sa.bindparam("f_job"),
            flowdetails.c.fence == sa.bindparam("f_num")]


def _fenced_atom_update() -> sa.Executable:
    """Update one atom's row only if its flow records the fence, in one statement. The flow's
    row is read with a share lock where the database has one (PostgreSQL, MySQL): a take of
    the flow waits for fenced writes in progress, and a write racing a take sees its result
    (SQLite serialises writers anyway)."""
    fenced: sa.Select[tuple[object]] = (
        sa.select(sa.literal_column("1"))
        .where(flowdetails.c.uuid == atomdetails.c.flow_uuid, *_fence_matches())
        .with_for_update(read=True))
    return atomdetails.update().where(atomdetails.c.uuid == sa.bindparam("b_uuid"),
                                      fenced.exists())


def _take_flow() -> sa.Executable:
    """Record the fence unless the flow records a larger one of the same job."""
    f_job: sa.BindParameter[str] = sa.bindparam("f_job")
    f_num: sa.BindParameter[int] = sa.bindparam("f_num")
    fence_job, fence = flowdetails.c.fence_job, flowdetails.c.fence
    return (flowdetails.update()
            .where(flowdetails.c.uuid == sa.bindparam("b_uuid"),
                   sa.or_(fence_job.is_(None), fence.is_(None), fence_job != f_job,
                          fence <= f_num))
            .values(fence_job=f_job, fence=f_num))


#: Prefixes of the book's and the atoms' columns in ``Statements.select_book_tree``.
BOOK_PREFIX, ATOM_PREFIX = "lb_", "ad_"


@dataclasses.dataclass(frozen=True)
class Statements:
    """The backend's statements for one dialect."""

    upsert_book: sa.Executable
    upsert_flow: sa.Executable
    upsert_atom: sa.Executable
    update_flow: sa.Executable
    update_atom: sa.Executable
    take_new_flow: sa.Executable
    take_flow: sa.Executable
    take_first: sa.Executable
    update_flow_fenced: sa.Executable
    update_atom_fenced: sa.Executable
    select_book: sa.Select[tuple[object, ...]]
    select_book_tree: sa.Select[tuple[object, ...]]
    select_books: sa.Select[tuple[object, ...]]
    select_flow: sa.Select[tuple[object, ...]]
    select_flows_of_book: sa.Select[tuple[object, ...]]
    select_all_flows: sa.Select[tuple[object, ...]]
    select_atom: sa.Select[tuple[object, ...]]
    select_atoms_of_flow: sa.Select[tuple[object, ...]]
    select_atoms_of_book: sa.Select[tuple[object, ...]]
    select_all_atoms: sa.Select[tuple[object, ...]]
    delete_book: sa.Executable
    delete_all: tuple[sa.Executable, ...]
    insert_claim: sa.Executable
    upsert_claim: sa.Executable
    select_history: sa.Select[tuple[object, ...]]
    select_claims_of_flows: sa.Select[tuple[object, ...]]
    select_jobs_like: sa.Select[tuple[object, ...]]
    select_books_like: sa.Select[tuple[object, ...]]
    select_flow_rows: dict[tuple[bool, bool], sa.Select[tuple[object, ...]]]
    count_claims: sa.Select[tuple[object, ...]]
    end_unended_claims: sa.Executable

    @classmethod
    def for_dialect(cls, dialect: str) -> Statements:
        book_cols = [c for c in logbooks.c if c.name != "id"]
        flow_cols = [c for c in flowdetails.c if c.name != "id"]
        atom_cols = [c for c in atomdetails.c if c.name != "id"]
        claim_cols = [c for c in job_history.c if c.name != "id"]
        by_uuid: sa.BindParameter[str] = sa.bindparam("b_uuid")
        return cls(
            upsert_book=_upsert(dialect, logbooks, keep=("id", "uuid", "created_at")),
            upsert_flow=_upsert(dialect, flowdetails,
                                keep=("id", "uuid", "book_uuid", "fence_job", "fence")),
            upsert_atom=_upsert(dialect, atomdetails, keep=("id", "uuid", "flow_uuid")),
            update_flow=flowdetails.update().where(flowdetails.c.uuid == by_uuid),
            update_atom=atomdetails.update().where(atomdetails.c.uuid == by_uuid),
            take_new_flow=flowdetails.update()
            .where(flowdetails.c.uuid == by_uuid, flowdetails.c.fence_job.is_(None))
            .values(fence_job=sa.bindparam("f_job"), fence=sa.bindparam("f_num")),
            take_flow=_take_flow(),
            take_first=flowdetails.update()
            .where(flowdetails.c.uuid == by_uuid,
                   sa.or_(flowdetails.c.fence_job.is_(None), sa.and_(*_fence_matches())))
            .values(fence_job=sa.bindparam("f_job"), fence=sa.bindparam("f_num")),
            update_flow_fenced=flowdetails.update().where(flowdetails.c.uuid == by_uuid,
                                                          *_fence_matches()),
            update_atom_fenced=_fenced_atom_update(),
            select_book=sa.select(*book_cols).where(logbooks.c.uuid == by_uuid),
            # A book with its flows and their atoms in one round trip: one row per atom (a flow
            # without atoms, a book without flows: NULLs), the book's columns labelled
            # BOOK_PREFIX + name and the atoms' ATOM_PREFIX + name beside the flow's.
            select_book_tree=sa.select(
                *(c.label(BOOK_PREFIX + c.name) for c in book_cols), *flow_cols,
                *(c.label(ATOM_PREFIX + c.name) for c in atom_cols))
            .select_from(logbooks.outerjoin(flowdetails,
                                            flowdetails.c.book_uuid == logbooks.c.uuid)
                         .outerjoin(atomdetails, atomdetails.c.flow_uuid == flowdetails.c.uuid))
            .where(logbooks.c.uuid == by_uuid).order_by(flowdetails.c.id, atomdetails.c.id),
            select_books=sa.select(*book_cols).order_by(logbooks.c.id),
            select_flow=sa.select(*flow_cols).where(flowdetails.c.uuid == by_uuid),
            select_flows_of_book=sa.select(*flow_cols)
            .where(flowdetails.c.book_uuid == by_uuid).order_by(flowdetails.c.id),
            select_all_flows=sa.select(*flow_cols).order_by(flowdetails.c.id),
            select_atom=sa.select(*atom_cols).where(atomdetails.c.uuid == by_uuid),
            select_atoms_of_flow=sa.select(*atom_cols)
            .where(atomdetails.c.flow_uuid == by_uuid).order_by(atomdetails.c.id),
            select_atoms_of_book=sa.select(*atom_cols)
            .join(flowdetails, flowdetails.c.uuid == atomdetails.c.flow_uuid)
            .where(flowdetails.c.book_uuid == by_uuid).order_by(atomdetails.c.id),
            select_all_atoms=sa.select(*atom_cols).order_by(atomdetails.c.id),
            delete_book=logbooks.delete().where(logbooks.c.uuid == by_uuid),
            delete_all=(atomdetails.delete(), flowdetails.delete(), logbooks.delete(),
                        job_history.delete()),
            insert_claim=_claim_insert(dialect, replace=False),
            upsert_claim=_claim_insert(dialect, replace=True),
            select_history=sa.select(*claim_cols)
            .where(job_history.c.job_uuid == sa.bindparam("job_uuid"))
            .order_by(job_history.c.fence, job_history.c.id),
            select_claims_of_flows=sa.select(*claim_cols)
            .where(job_history.c.flow_uuid.in_(sa.bindparam("flow_uuids", expanding=True)))
            .order_by(job_history.c.claimed_at, job_history.c.id),
            select_jobs_like=sa.select(job_history.c.job_uuid).distinct()
            .where(job_history.c.job_uuid.like(sa.bindparam("pattern")))
            .order_by(job_history.c.job_uuid).limit(sa.bindparam("limit")),
            select_books_like=sa.select(*book_cols)
            .where(logbooks.c.uuid.like(sa.bindparam("pattern")))
            .order_by(logbooks.c.id).limit(sa.bindparam("limit")),
            select_flow_rows={(state, since): _flow_rows(state, since)
                              for state in (False, True) for since in (False, True)},
            count_claims=sa.select(job_history.c.outcome, job_history.c.flow_state,
                                   sa.func.count().label("n"))
            .where(job_history.c.ended_at >= sa.bindparam("since"))
            .group_by(job_history.c.outcome, job_history.c.flow_state),
            end_unended_claims=job_history.update()
            .where(job_history.c.job_uuid == sa.bindparam("job"),
                   job_history.c.fence < sa.bindparam("below"),
                   sa.or_(job_history.c.outcome.is_(None),
                          job_history.c.outcome == "consumed"))
            .values(outcome=sa.bindparam("e_outcome"), reason=sa.bindparam("e_reason"),
                    ended_at=sa.bindparam("e_ended_at")),
        )


@dataclasses.dataclass(frozen=True)
class ManyShape:
    """The shape of one ``update_many`` on PostgreSQL: which writes it makes, with which
    columns. Equal shapes share one statement (``pg_many``)."""

    #: The flow row's columns written (empty: the flow's row is not written).
    flow: tuple[str, ...]
    #: Record the fence first (a take riding on the write): ``f_job``/``f_num``.
    take: bool
    #: Fenced by ``f_job``/``f_num``.
    fenced: bool
    #: A claim's start inserted (parameters ``s_<column>``).
    started: bool
    #: Atom rows upserted (parameters ``u<i>_<column>``), one column tuple each.
    upserted: tuple[tuple[str, ...], ...]
    #: Atom rows updated (parameters ``a<i>_<column>``, ``a<i>_b_uuid``), one tuple each.
    updated: tuple[tuple[str, ...], ...]
    #: A claim's end upserted (parameters ``e_<column>``).
    ended: bool

    @property
    def gated(self) -> bool:
        """The flow's row is written: every other write lands only if that one did."""
        return bool(self.flow) or self.take


def _typed(prefix: str, table: sa.Table, columns: tuple[str, ...]) -> list[sa.BindParameter[Any]]:
    return [sa.bindparam(prefix + c, type_=table.c[c].type) for c in columns]


def _insert_select(table: sa.Table, rows: list[tuple[str, tuple[str, ...]]],
                   gate: sa.ColumnElement[bool] | None) -> postgresql.Insert:
    """``INSERT INTO table SELECT <parameters>`` of ``rows`` (a parameter prefix and the
    columns of each), landing only where ``gate`` holds."""
    selects = []
    for prefix, columns in rows:
        select = sa.select(*_typed(prefix, table, columns))
        selects.append(select if gate is None else select.where(gate))
    source = selects[0] if len(selects) == 1 else sa.union_all(*selects)
    return postgresql.insert(table).from_select(list(rows[0][1]), source)


#: Rows a ``pg_many`` or ``pg_save`` statement writes at most (more: a statement per kind).
PG_ROWS = 64


@functools.lru_cache(maxsize=256)
def pg_many(shape: ManyShape, parts: Any = None) -> sa.Select[Any]:
    """``update_many`` on PostgreSQL as one statement of data-modifying CTEs: the flow's row
    (with the take when ``shape.take``), the claim's start, the atoms upserted and updated, the
    claim's end. It returns one row of one column, ``written``: the fewest rows written by the
    gate (see below) and each atom's update, 0 for a refusal (1 without a gate).

    Every write is all or nothing, so the statement can run as its own transaction
    (autocommit). When the flow's row is written, or atoms are updated, the statement has a
    gate ``w_flow``: the flow's write, or (atoms only) its row read ``FOR SHARE`` while it
    records the fence; either way only while every updated atom exists in the flow. Every other
    write lands only if the gate holds (``EXISTS`` over its CTE), so a refused take, a fenced
    out write or an atom never saved writes nothing at all. The gate's lock on the flow's row
    holds off a take (which changes the fence) and a logbook's delete (which cascades to the
    atoms) until the statement ends, so an atom found by the gate is updated.

    With ``parts`` (another component's ``StatementParts``; only for a gated shape) the
    statement makes them too: their ``check`` is a CTE ``j_check`` the flow's write is gated on
    (so a refused part writes nothing of the flow's), their writes are gated on the flow's
    write, and the statement also returns ``joined`` (the rows ``j_check`` found) and the
    parts' columns."""
    f_job: sa.BindParameter[str] = sa.bindparam("f_job", type_=flowdetails.c.fence_job.type)
    f_num: sa.BindParameter[int] = sa.bindparam("f_num", type_=flowdetails.c.fence.type)
    b_uuid: sa.BindParameter[str] = sa.bindparam("b_uuid", type_=flowdetails.c.uuid.type)
    counts: list[sa.ScalarSelect[Any]] = []
    ctes: list[sa.CTE] = []
    gate: sa.ColumnElement[bool] | None = None
    atom_uuids = [sa.bindparam(f"a{index}_b_uuid", type_=atomdetails.c.uuid.type)
                  for index in range(len(shape.updated))]
    # Every updated atom is a saved atom of the flow (in the statement's snapshot).
    present = [sa.exists(sa.select(sa.literal_column("1")).where(
        atomdetails.c.uuid == uuid, atomdetails.c.flow_uuid == b_uuid)) for uuid in atom_uuids]
    check, checked = _check_of(shape, parts)
    where: list[sa.ColumnElement[bool]] = [flowdetails.c.uuid == b_uuid, *present, *checked]
    if shape.take:
        where.append(sa.or_(flowdetails.c.fence_job.is_(None),
                            sa.and_(flowdetails.c.fence_job == f_job,
                                    flowdetails.c.fence == f_num)))
    elif shape.fenced:
        where += [flowdetails.c.fence_job == f_job, flowdetails.c.fence == f_num]
    flow: sa.CTE | None = None
    if shape.gated:
        values: dict[str, Any] = {c: p for c, p in zip(
            shape.flow, _typed("fl_", flowdetails, shape.flow), strict=True)}
        if shape.take:
            values.update(fence_job=f_job, fence=f_num)
        flow = (flowdetails.update().where(*where).values(values)
                .returning(flowdetails.c.uuid).cte("w_flow"))
    elif shape.updated:
        # Nothing of the flow's row written: its row, read with a share lock, is the gate.
        flow = sa.select(flowdetails.c.uuid).where(*where).with_for_update(read=True) \
            .cte("w_flow")
    if flow is not None:
        gate = sa.exists(sa.select(flow.c.uuid))
        counts.append(_count(flow))
    if shape.started:
        ctes.append(_insert_select(job_history, [("s_", tuple(_CLAIM_COLUMNS))], gate)
                    .on_conflict_do_nothing(index_elements=["job_uuid", "fence"])
                    .cte("w_started"))
    if shape.upserted:
        ctes.append(_upsert_cte(atomdetails, [(f"u{i}_", c) for i, c in enumerate(shape.upserted)],
                                ("id", "uuid", "flow_uuid"), "w_upserted", gate=gate))
    for index, columns in enumerate(shape.updated):
        assert gate is not None
        prefix = f"a{index}_"
        atom = (atomdetails.update()
                .where(atomdetails.c.uuid == atom_uuids[index],
                       atomdetails.c.flow_uuid == b_uuid, gate)
                .values(dict(zip(columns, _typed(prefix, atomdetails, columns), strict=True)))
                .returning(atomdetails.c.uuid).cte(f"w_atom{index}"))
        counts.append(_count(atom))
    if shape.ended:
        key = ("job_uuid", "fence")
        ctes.append(_upsert_cte(job_history, [("e_", tuple(_CLAIM_COLUMNS))], key, "w_ended",
                                gate=gate, key=key))
    # One column, so reading the answer costs little: 0 when a gated write was refused.
    written = (counts[0] if len(counts) == 1 else sa.func.least(*counts)) if counts \
        else sa.literal(1)
    if check is None:
        return sa.select(written.label("written")).add_cte(*ctes)
    return _joined(parts, check, gate, written, ctes)


def _check_of(shape: ManyShape, parts: Any) -> tuple[sa.CTE | None,
                                                      list[sa.ColumnElement[bool]]]:
    """``parts``' check as the CTE ``j_check``, and what gates the flow's write on it."""
    if parts is None:
        return None, []
    if not shape.gated:
        raise ValueError("statement parts ride only on a write of the flow's row")
    check = parts.check().cte("j_check")
    return check, [sa.exists(check.select())]


def _joined(parts: Any, check: sa.CTE, gate: sa.ColumnElement[bool] | None,
            written: sa.ColumnElement[Any], ctes: list[sa.CTE]) -> sa.Select[Any]:
    """``pg_many``'s final ``SELECT`` with ``parts``' writes (gated by ``gate``) and columns,
    and ``joined``: the rows their ``check`` found."""
    part_ctes, extend = parts.writes(gate)
    selected = sa.select(written.label("written"), _count(check).label("joined"))
    return extend(selected).add_cte(*ctes, *part_ctes)  # type: ignore[no-any-return]


@functools.lru_cache(maxsize=256)
def pg_many_sql(shape: ManyShape, dialect: sa.Dialect) -> str | None:
    """``pg_many(shape)`` rendered once for ``dialect``, to run with
    ``Connection.exec_driver_sql`` and a dict of the same parameters: no compiled-cache lookup
    and no per-parameter processing on each write (about 40 parameters a step). None when a
    parameter needs processing by SQLAlchemy (then the statement runs as a ``pg_many``)."""
    rendered = pg_joined_sql(shape, dialect, None)
    if rendered is None or rendered[1]:
        return None
    return rendered[0]


@functools.lru_cache(maxsize=256)
def pg_joined_sql(shape: ManyShape, dialect: sa.Dialect,
                  parts: Any) -> tuple[str, dict[str, Any]] | None:
    """``pg_many(shape, parts)`` rendered once for ``dialect`` (``legato._sql.rendered``),
    with the values of the parameters the statement fixes itself (literals of the parts), which
    every execution adds to its own. None when a parameter needs processing by SQLAlchemy,
    but for floats of the parts (their clock and lease times): their processing is
    ``float()``, so the caller passes floats."""
    rendered = render(pg_many(shape, parts), dialect, processed=lambda type_: (
        parts is not None and isinstance(type_, sa.Float)))
    return None if rendered is None else (rendered.sql, dict(rendered.fixed))


def _count(cte: sa.CTE) -> sa.ScalarSelect[Any]:
    return sa.select(sa.func.count()).select_from(cte).scalar_subquery()


def _upsert_cte(table: sa.Table, rows: list[tuple[str, tuple[str, ...]]],
                keep: tuple[str, ...], name: str, *,
                gate: sa.ColumnElement[bool] | None = None,
                key: tuple[str, ...] = ("uuid",)) -> sa.CTE:
    """``rows`` (see ``_insert_select``) inserted, or updated on a conflict over ``key``,
    leaving the columns ``keep`` as they were; landing only where ``gate`` holds."""
    upsert = _insert_select(table, rows, gate)
    return upsert.on_conflict_do_update(
        index_elements=list(key),
        set_={c: upsert.excluded[c] for c in rows[0][1] if c not in keep}).cte(name)


@functools.lru_cache(maxsize=256)
def pg_save(book: tuple[str, ...], flows: tuple[tuple[str, ...], ...],
            atoms: tuple[tuple[str, ...], ...],
            along: sa.Executable | None = None) -> sa.Select[Any]:
    """``save_logbook`` on PostgreSQL as one statement: the book's upsert (parameters
    ``b_<column>``), its flows' (``f<i>_<column>``) and their atoms' (``a<i>_<column>``), as
    data-modifying CTEs (the foreign keys are checked at the statement's end). With ``along``
    (another component's data-modifying statement with ``RETURNING``, built once: it is part
    of the cache key), that statement is one more CTE and the statement returns its rows."""
    ctes = [_upsert_cte(logbooks, [("b_", book)], ("id", "uuid", "created_at"), "w_book")]
    if flows:
        ctes.append(_upsert_cte(flowdetails, [(f"f{i}_", c) for i, c in enumerate(flows)],
                                ("id", "uuid", "book_uuid", "fence_job", "fence"), "w_flows"))
    if atoms:
        ctes.append(_upsert_cte(atomdetails, [(f"a{i}_", c) for i, c in enumerate(atoms)],
                                ("id", "uuid", "flow_uuid"), "w_atoms"))
    if along is not None:
        rode = along.cte("w_along")  # type: ignore[attr-defined]
        return sa.select(*rode.c).add_cte(*ctes)
    return sa.select(sa.literal(1).label("saved")).add_cte(*ctes)


@functools.lru_cache(maxsize=256)
def pg_save_rendered(book: tuple[str, ...], flows: tuple[tuple[str, ...], ...],
                     atoms: tuple[tuple[str, ...], ...], along: sa.Executable | None,
                     dialect: sa.Dialect) -> Rendered | None:
    """``pg_save`` rendered once for ``dialect`` (``legato._sql.rendered``): a post runs it
    with ``exec_driver_sql``. None when it cannot be rendered."""
    return render(pg_save(book, flows, atoms, along), dialect)
