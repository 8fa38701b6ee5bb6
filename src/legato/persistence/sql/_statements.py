"""Every SQL statement the backend runs, built once per dialect and reused.

Statements are built from bound parameters only, so SQLAlchemy compiles each one once and then
serves it from its compiled cache; drivers that prepare statements (psycopg) do the rest.
"""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from legato.persistence.sql.tables import atomdetails, flowdetails, logbooks

__all__ = ["SQLITE_TAKE_NEW_FLOW", "SQLITE_UPDATE_ATOM", "SQLITE_UPDATE_ATOM_FENCED",
           "Statements"]


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
SQLITE_UPDATE_ATOM = "UPDATE atomdetails SET {} WHERE uuid = :b_uuid".format(
    ", ".join(f"{c.name} = :{c.name}" for c in atomdetails.columns
              if c.name not in ("id", "uuid", "flow_uuid")))

#: The same, landing only while the atom's flow records the fence ``:f_job``/``:f_num``.
SQLITE_UPDATE_ATOM_FENCED = SQLITE_UPDATE_ATOM + (
    " AND EXISTS (SELECT 1 FROM flowdetails WHERE flowdetails.uuid = atomdetails.flow_uuid"
    " AND flowdetails.fence_job = :f_job AND flowdetails.fence = :f_num)")


#: ``take_flow`` of a flow never taken, on SQLite (see ``SQLITE_UPDATE_ATOM``): a job's first
#: claim, so once per job.
SQLITE_TAKE_NEW_FLOW = ("UPDATE flowdetails SET fence_job = :f_job, fence = :f_num"
                        " WHERE uuid = :b_uuid AND fence_job IS NULL")


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
    update_flow_fenced: sa.Executable
    update_atom_fenced: sa.Executable
    select_book: sa.Select[tuple[object, ...]]
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

    @classmethod
    def for_dialect(cls, dialect: str) -> Statements:
        book_cols = [c for c in logbooks.c if c.name != "id"]
        flow_cols = [c for c in flowdetails.c if c.name != "id"]
        atom_cols = [c for c in atomdetails.c if c.name != "id"]
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
            update_flow_fenced=flowdetails.update().where(flowdetails.c.uuid == by_uuid,
                                                          *_fence_matches()),
            update_atom_fenced=_fenced_atom_update(),
            select_book=sa.select(*book_cols).where(logbooks.c.uuid == by_uuid),
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
            delete_all=(atomdetails.delete(), flowdetails.delete(), logbooks.delete()),
        )
