"""Convert persistence models to table rows and back."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from legato import errors
from legato.persistence.models import (
    AtomDetail,
    Claim,
    Fence,
    FlowDetail,
    LogBook,
    RetryDetail,
    TaskDetail,
)
from legato.states import AtomState, FlowState, Intention

__all__ = ["atom_from_row", "atom_row", "book_from_row", "book_row", "claim_from_row",
           "claim_row", "flow_from_row", "flow_row"]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)


def to_micros(value: dt.datetime | None) -> int | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return (value - _EPOCH) // _MICROSECOND


def from_micros(value: int | None) -> dt.datetime | None:
    return None if value is None else _EPOCH + dt.timedelta(microseconds=value)


#: One encoder for every value: ``json.dumps`` with options builds a new one per call.
_ENCODE = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode


def dumps(value: Any, what: str, name: str | None = None) -> str | None:
    """``value`` as JSON text (None: NULL). ``what`` and ``name`` say whose value it is, in
    the error (the message is built only then)."""
    if value is None:
        return None
    try:
        text: str = _ENCODE(value)
    except (TypeError, ValueError) as exc:
        whose = what if name is None else f"{what} {name!r}"
        raise errors.SerializationError(f"{whose} is not JSON-serialisable: {exc}") from exc
    return text


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def book_row(book: LogBook) -> dict[str, Any]:
    return {
        "uuid": book.uuid,
        "name": book.name,
        "created_at": to_micros(book.created_at),
        "updated_at": to_micros(book.updated_at),
        "meta": dumps(book.meta, "meta of logbook", book.name),
    }


def book_from_row(row: Mapping[Any, Any]) -> LogBook:
    return LogBook(
        name=row["name"],
        uuid=row["uuid"],
        created_at=from_micros(row["created_at"]) or _EPOCH,
        updated_at=from_micros(row["updated_at"]),
        meta=loads(row["meta"]) or {},
    )


def flow_row(flow: FlowDetail) -> dict[str, Any]:
    return {
        "uuid": flow.uuid,
        "name": flow.name,
        "state": str(flow.state) if flow.state is not None else None,
        "meta": dumps(flow.meta, "meta of flow", flow.name),
    }


def flow_from_row(row: Mapping[Any, Any]) -> FlowDetail:
    state = row["state"]
    return FlowDetail(
        name=row["name"],
        uuid=row["uuid"],
        state=FlowState(state) if state else None,
        meta=loads(row["meta"]) or {},
        fence=_fence(row),
    )


def _fence(row: Mapping[Any, Any]) -> Fence | None:
    """The fence a flow row records (None when never taken or not selected)."""
    job, number = row.get("fence_job"), row.get("fence")
    return None if job is None or number is None else Fence(str(job), int(number))


def atom_row(atom: AtomDetail) -> dict[str, Any]:
    name = atom.name
    return {
        "uuid": atom.uuid,
        "kind": atom.KIND,
        "name": name,
        "state": str(atom.state),
        "intention": str(atom.intention),
        "results": dumps(atom.results, "results of atom", name),
        "failure": dumps(atom.failure, "failure of atom", name),
        "revert_results": dumps(atom.revert_results, "revert_results of atom", name),
        "revert_failure": dumps(atom.revert_failure, "revert_failure of atom", name),
        "meta": dumps(atom.meta, "meta of atom", name),
        "version": atom.version,
    }


def atom_from_row(row: Mapping[Any, Any]) -> AtomDetail:
    cls = RetryDetail if row["kind"] == RetryDetail.KIND else TaskDetail
    return cls(
        name=row["name"],
        uuid=row["uuid"],
        state=AtomState(row["state"]),
        intention=Intention(row["intention"]),
        results=loads(row["results"]),
        failure=loads(row["failure"]),
        revert_results=loads(row["revert_results"]),
        revert_failure=loads(row["revert_failure"]),
        meta=loads(row["meta"]) or {},
        version=row["version"],
    )


def claim_row(claim: Claim) -> dict[str, Any]:
    return {
        "job_uuid": claim.job_uuid,
        "fence": claim.fence,
        "owner": claim.owner,
        "job_name": claim.job_name,
        "book_uuid": claim.book_uuid,
        "flow_uuid": claim.flow_uuid,
        "claimed_at": to_micros(claim.claimed_at),
        "ended_at": to_micros(claim.ended_at),
        "outcome": claim.outcome,
        "reason": claim.reason,
        "flow_state": claim.flow_state,
        "atoms": dumps(list(claim.atoms), "atoms of a claim"),
    }


def claim_from_row(row: Mapping[Any, Any]) -> Claim:
    return Claim(
        job_uuid=row["job_uuid"],
        fence=int(row["fence"]),
        owner=row["owner"],
        claimed_at=from_micros(row["claimed_at"]) or _EPOCH,
        job_name=row["job_name"],
        book_uuid=row["book_uuid"],
        flow_uuid=row["flow_uuid"],
        ended_at=from_micros(row["ended_at"]),
        outcome=row["outcome"],
        reason=row["reason"],
        flow_state=row["flow_state"],
        atoms=list(loads(row["atoms"]) or []),
    )
