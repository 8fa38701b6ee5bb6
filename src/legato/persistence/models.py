"""Persistence models: a ``LogBook`` holds ``FlowDetail``s, which hold ``AtomDetail``s.

Models are plain data, JSON-serialisable through ``to_dict()``/``from_dict()``; datetimes are
timezone-aware UTC. Failures are kept as the JSON dicts that ``legato.failure.Failure``
produces, so persistence never depends on the engine.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import os
from typing import Any, ClassVar, NamedTuple, TypeVar

from legato.states import AtomState, FlowState, Intention

__all__ = [
    "AtomDetail",
    "Claim",
    "Fence",
    "FlowDetail",
    "FlowSummary",
    "LogBook",
    "RetryDetail",
    "TaskDetail",
    "copy_json",
    "new_uuid",
    "utcnow",
]


class Fence(NamedTuple):
    """Which claim may write a flow detail: the claimed job's uuid and the claim's fencing
    number (``Job.fence``).

    ``Persistence.take_flow`` records it on the flow detail; writes given a fence land only
    while the flow detail records exactly that fence. A take by another job always wins (a job
    re-posted over the same logbook starts its fences again at 1); a take by the same job only
    with a fencing number at least as large as the recorded one.
    """

    job: str
    number: int

    def __str__(self) -> str:
        return f"{self.job}:{self.number}"


#: ``Claim.outcome`` values. A claim with no outcome has not ended (or its conductor died
#: before it could say how it ended).
CLAIM_OUTCOMES = ("consumed", "abandoned", "trashed", "lost claim", "stopped", "released")


@dataclasses.dataclass
class Claim:
    """One claim of a job, as its history records it (``Persistence.job_history``).

    Attributes:
        job_uuid: the claimed job.
        fence: the claim's fencing number (``Job.fence``); a claim is known by (job, fence).
        owner: the conductor that held it.
        claimed_at: when it was claimed (UTC).
        job_name, book_uuid, flow_uuid: the job's name, logbook and the flow it ran.
        ended_at: when it ended (None while it runs, or when its conductor died).
        outcome: one of ``CLAIM_OUTCOMES``; None until it ended.
        reason: why (the board's abandon or trash reason, a failure's message).
        flow_state: the flow's state when the claim ended.
        atoms: names of the atoms that ran (or reverted) in this claim, in order.
    """

    job_uuid: str
    fence: int
    owner: str
    claimed_at: dt.datetime
    job_name: str | None = None
    book_uuid: str | None = None
    flow_uuid: str | None = None
    ended_at: dt.datetime | None = None
    outcome: str | None = None
    reason: str | None = None
    flow_state: str | None = None
    atoms: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_uuid": self.job_uuid, "fence": self.fence, "owner": self.owner,
            "claimed_at": _ts(self.claimed_at), "ended_at": _ts(self.ended_at),
            "job_name": self.job_name, "book_uuid": self.book_uuid,
            "flow_uuid": self.flow_uuid, "outcome": self.outcome, "reason": self.reason,
            "flow_state": self.flow_state, "atoms": list(self.atoms),
        }

    def copy(self) -> Claim:
        new = _clone(self)
        new.atoms = list(self.atoms)
        return new


@dataclasses.dataclass
class FlowSummary:
    """One flow as ``Persistence.list_flows`` reports it (no atoms read).

    Attributes:
        flow_uuid, name, book_uuid: the flow detail, and its logbook.
        state: the flow's state (None: never ran).
        factory: the flow factory's name recorded in its meta.
        job_uuid: the job that last claimed it (None: never claimed).
        attempts: claims recorded in its jobs' history.
        error: the last error: the flow's recorded ``meta["error"]``, else the reason of the
            last claim that ended with one.
        started_at, ended_at: first claim, and the end of the last one.
    """

    flow_uuid: str
    name: str
    book_uuid: str
    state: str | None
    factory: str | None = None
    job_uuid: str | None = None
    attempts: int = 0
    error: str | None = None
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None

    @property
    def duration(self) -> float | None:
        """Seconds from the first claim to the end of the last one."""
        if self.started_at is None or self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        return {"flow_uuid": self.flow_uuid, "name": self.name, "book_uuid": self.book_uuid,
                "state": self.state, "factory": self.factory, "job_uuid": self.job_uuid,
                "attempts": self.attempts, "error": self.error,
                "started_at": _ts(self.started_at), "ended_at": _ts(self.ended_at),
                "duration": self.duration}


def new_uuid() -> str:
    """A random (version 4) UUID as text, exactly as ``str(uuid.uuid4())`` gives it, from the
    same ``os.urandom``: built from the hex digits directly, several times cheaper than going
    through ``uuid.UUID`` (a job takes four: logbook, flow, atom and job)."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def copy_json(value: Any) -> Any:
    """Deep-copy a JSON-shaped value (dicts, lists, scalars) much faster than ``copy.deepcopy``.

    Anything else is handed to ``copy.deepcopy``, so the copy is always deep.
    """
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is dict:
        return {k: v if type(v) in _SCALARS else copy_json(v) for k, v in value.items()}
    if kind is list:
        return [v if type(v) in _SCALARS else copy_json(v) for v in value]
    if isinstance(value, dict):
        return {k: copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_json(v) for v in value]
    if isinstance(value, (str, int, float, bool)):
        return value
    return copy.deepcopy(value)


#: Immutable JSON leaves, returned as they are (exact types; subclasses take the slow path).
_SCALARS = frozenset({str, int, float, bool, type(None)})


_T = TypeVar("_T")


def _clone(obj: _T) -> _T:
    """A shallow copy of a plain dataclass instance (``copy.copy`` costs several times more,
    going through ``__reduce_ex__``)."""
    new = object.__new__(type(obj))
    new.__dict__.update(obj.__dict__)
    return new


def _ts(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_ts(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    parsed = dt.datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


@dataclasses.dataclass(eq=True)
class AtomDetail:
    """What persistence knows of one atom: its state, what it returned or how it failed.

    Attributes:
        name: the atom's name, unique within its flow.
        uuid: the detail's id.
        state: the atom's last recorded state.
        intention: what the engine means to do with the atom next.
        results: what ``execute`` returned (for a retry: its history, see ``RetryDetail``).
        failure: the ``Failure`` dict of a failed ``execute``, or None.
        revert_results: what ``revert`` returned.
        revert_failure: the ``Failure`` dict of a failed ``revert``, or None.
        meta: free-form JSON dict (progress, timings).
        version: the atom's own version string, if it has one.
    """

    KIND: ClassVar[str] = "task"

    name: str
    uuid: str = dataclasses.field(default_factory=new_uuid)
    state: AtomState = AtomState.PENDING
    intention: Intention = Intention.EXECUTE
    results: Any = None
    failure: dict[str, Any] | None = None
    revert_results: Any = None
    revert_failure: dict[str, Any] | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.KIND,
            "name": self.name,
            "uuid": self.uuid,
            "state": str(self.state),
            "intention": str(self.intention),
            "results": self.results,
            "failure": self.failure,
            "revert_results": self.revert_results,
            "revert_failure": self.revert_failure,
            "meta": self.meta,
            "version": self.version,
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> AtomDetail:
        cls = RetryDetail if data.get("kind") == RetryDetail.KIND else TaskDetail
        return cls(
            name=data["name"],
            uuid=data["uuid"],
            state=AtomState(data.get("state") or AtomState.PENDING),
            intention=Intention(data.get("intention") or Intention.EXECUTE),
            results=data.get("results"),
            failure=data.get("failure"),
            revert_results=data.get("revert_results"),
            revert_failure=data.get("revert_failure"),
            meta=dict(data.get("meta") or {}),
            version=data.get("version"),
        )

    def copy(self) -> AtomDetail:
        new = object.__new__(type(self))  # _clone, inlined: every atom write makes one
        new.__dict__.update(self.__dict__)
        meta = self.meta
        new.meta = copy_json(meta) if meta else {}
        # Mostly None (or a number): skip the call for what is shared as it is anyway.
        if type(self.results) not in _SCALARS:
            new.results = copy_json(self.results)
        if type(self.failure) not in _SCALARS:
            new.failure = copy_json(self.failure)
        if type(self.revert_results) not in _SCALARS:
            new.revert_results = copy_json(self.revert_results)
        if type(self.revert_failure) not in _SCALARS:
            new.revert_failure = copy_json(self.revert_failure)
        return new


@dataclasses.dataclass(eq=True)
class TaskDetail(AtomDetail):
    """Detail of a task."""

    KIND: ClassVar[str] = "task"


@dataclasses.dataclass(eq=True)
class RetryDetail(AtomDetail):
    """Detail of a retry controller.

    ``results`` is the history: a list of ``[result, {atom_name: failure_dict}]`` pairs, one per
    attempt of the retry's scope, oldest first.
    """

    KIND: ClassVar[str] = "retry"

    def __post_init__(self) -> None:
        if self.results is None:
            self.results = []


@dataclasses.dataclass(eq=True)
class FlowDetail:
    """What persistence knows of one flow run: its state, meta, and its atoms by uuid.

    ``meta["factory"]`` records how to rebuild the flow; ``meta["store"]`` holds stored inputs.
    """

    name: str
    uuid: str = dataclasses.field(default_factory=new_uuid)
    state: FlowState | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    atoms: dict[str, AtomDetail] = dataclasses.field(default_factory=dict)
    #: The fence recorded on the flow when it was read (``Persistence.take_flow``); None when
    #: it was never taken. Informational: saving a flow detail never writes it.
    fence: Fence | None = dataclasses.field(default=None, compare=False, repr=False)

    def add(self, atom_detail: AtomDetail) -> None:
        self.atoms[atom_detail.uuid] = atom_detail

    def find(self, atom_uuid: str) -> AtomDetail | None:
        return self.atoms.get(atom_uuid)

    def find_by_name(self, name: str) -> AtomDetail | None:
        for atom_detail in self.atoms.values():
            if atom_detail.name == name:
                return atom_detail
        return None

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.atoms.values())

    def __len__(self) -> int:
        return len(self.atoms)

    def to_dict(self, *, with_atoms: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "uuid": self.uuid,
            "state": str(self.state) if self.state is not None else None,
            "meta": self.meta,
        }
        if with_atoms:
            data["atoms"] = [ad.to_dict() for ad in self.atoms.values()]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FlowDetail:
        fd = cls(
            name=data["name"],
            uuid=data["uuid"],
            state=FlowState(data["state"]) if data.get("state") else None,
            meta=dict(data.get("meta") or {}),
        )
        for atom in data.get("atoms") or ():
            fd.add(AtomDetail.from_dict(atom))
        return fd

    def copy(self) -> FlowDetail:
        new = _clone(self)
        new.meta = copy_json(self.meta)
        new.atoms = {key: atom.copy() for key, atom in self.atoms.items()}
        return new


@dataclasses.dataclass(eq=True)
class LogBook:
    """A named collection of flow details, usually one per job."""

    name: str
    uuid: str = dataclasses.field(default_factory=new_uuid)
    created_at: dt.datetime = dataclasses.field(default_factory=utcnow)
    updated_at: dt.datetime | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    flows: dict[str, FlowDetail] = dataclasses.field(default_factory=dict)

    def add(self, flow_detail: FlowDetail) -> None:
        self.flows[flow_detail.uuid] = flow_detail

    def find(self, flow_uuid: str) -> FlowDetail | None:
        return self.flows.get(flow_uuid)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.flows.values())

    def __len__(self) -> int:
        return len(self.flows)

    def to_dict(self, *, with_flows: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "uuid": self.uuid,
            "created_at": _ts(self.created_at),
            "updated_at": _ts(self.updated_at),
            "meta": self.meta,
        }
        if with_flows:
            data["flows"] = [fd.to_dict() for fd in self.flows.values()]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LogBook:
        book = cls(
            name=data["name"],
            uuid=data["uuid"],
            created_at=_parse_ts(data.get("created_at")) or utcnow(),
            updated_at=_parse_ts(data.get("updated_at")),
            meta=dict(data.get("meta") or {}),
        )
        for flow in data.get("flows") or ():
            book.add(FlowDetail.from_dict(flow))
        return book

    def copy(self) -> LogBook:
        new = _clone(self)
        new.meta = copy_json(self.meta)
        new.flows = {key: flow.copy() for key, flow in self.flows.items()}
        return new
