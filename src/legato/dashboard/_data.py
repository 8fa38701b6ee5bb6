"""What the pages and the JSON API show, read through the board's and persistence's public
calls (the same ones the CLI uses). Every function returns plain JSON-friendly data.

Nothing here reads the whole board for one answer: lists stop after a page, scans are
bounded by ``SCAN_LIMIT`` and say when they stopped early.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import itertools
import json
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from legato import errors
from legato.dashboard import _graph
from legato.persistence.models import utcnow
from legato.states import FlowState, JobPriority, JobState

if TYPE_CHECKING:
    from legato.jobboard.base import Entity, Job, JobBoard, JobRecord
    from legato.persistence.base import Persistence
    from legato.persistence.models import AtomDetail, Claim, FlowDetail

__all__ = [
    "SCAN_LIMIT",
    "JobFilter",
    "conductors",
    "flows",
    "job_page",
    "jobs_page",
    "overview",
    "trash_page",
]

#: Most jobs one list request looks at while filtering (the page says when it stopped there).
SCAN_LIMIT = 2000
#: Jobs at the head of the board the overview looks at for lapsed claims.
HEAD_SCAN = 500
#: A value shown folded on the job page when its JSON is longer than this.
FOLD_CHARS = 400
#: Job states the list filters on.
STATES = ("waiting", "delayed", "claimed", "trashed")

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def is_uuid(text: str) -> bool:
    return _UUID.fullmatch(text) is not None


def _iso(stamp: float | dt.datetime | None) -> str | None:
    if stamp is None:
        return None
    if isinstance(stamp, dt.datetime):
        return stamp.isoformat()
    return dt.datetime.fromtimestamp(stamp, dt.UTC).isoformat()


def age(seconds: float | None) -> str:
    """A short human duration: ``42s``, ``3m``, ``5h``, ``2d``."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:.0f}s"


def _state_of(job: Job, now: float) -> str:
    record = job.record
    if record.effective_state(now) is JobState.CLAIMED:
        return "claimed"
    return "waiting" if record.claimable(now) else "delayed"


def _factory_of(job: Job, backend: Persistence) -> str | None:
    """The flow factory of the job's flow (``details["flow_uuid"]``, else its book's only
    flow), from the flow detail's meta."""
    flow_uuid = job.details.get("flow_uuid") if isinstance(job.details, dict) else None
    try:
        if isinstance(flow_uuid, str):
            meta = backend.get_flow_details(flow_uuid, lazy=True).meta
        elif job.book_uuid is not None:
            first = next(iter(backend.get_flows_for_book(job.book_uuid, lazy=True)), None)
            meta = first.meta if first is not None else {}
        else:
            return None
    except errors.NotFound:
        return None
    factory = meta.get("factory")
    return factory.get("name") if isinstance(factory, dict) else None


def job_row(job: Job, *, now: float, state: str | None = None) -> dict[str, Any]:
    """One job as the list shows it."""
    record = job.record
    return {
        "uuid": job.uuid,
        "name": job.name,
        "state": state or _state_of(job, now),
        "priority": job.priority.name,
        "owner": record.effective_owner(now),
        "attempts": job.attempts,
        "created_on": _iso(record.created_on),
        "age": age(now - record.created_on),
        "reason": job.reason,
        "book_uuid": job.book_uuid,
        "factory": None,
    }


@dataclasses.dataclass(frozen=True)
class JobFilter:
    """What the jobs list is filtered by (every field optional)."""

    state: str | None = None
    name: str | None = None
    factory: str | None = None
    owner: str | None = None
    priority: str | None = None

    @classmethod
    def parse(cls, params: dict[str, str]) -> JobFilter:
        """From query parameters; unknown values are a ``ValueError`` with one clear line."""
        state = (params.get("state") or "").strip().lower() or None
        if state is not None and state not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}")
        priority = (params.get("priority") or "").strip().upper() or None
        if priority is not None and priority not in JobPriority.__members__:
            raise ValueError(f"priority must be one of {', '.join(JobPriority.__members__)}")
        return cls(
            state=state,
            priority=priority,
            **{
                key: (params.get(key) or "").strip() or None for key in ("name", "factory", "owner")
            },
        )

    def params(self) -> dict[str, str]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v}

    def matches(self, row: dict[str, Any]) -> bool:
        if self.state and row["state"] != self.state:
            return False
        if self.priority and row["priority"] != self.priority:
            return False
        if self.name and self.name.casefold() not in str(row["name"]).casefold():
            return False
        if self.owner and self.owner.casefold() not in str(row["owner"] or "").casefold():
            return False
        return not (
            self.factory and self.factory.casefold() not in str(row["factory"] or "").casefold()
        )


def jobs_page(
    board: JobBoard,
    backend: Persistence,
    wanted: JobFilter,
    *,
    after: str | None = None,
    start: int = 0,
    limit: int = 50,
) -> dict[str, Any]:
    """One page of jobs in claim order (the trash, newest first, for ``state=trashed``).

    A page starts after the job position ``after`` (``Job.position``, the ``next_after`` of
    the page before): the board finds it through its index, so a page reads only its own
    jobs, however deep. ``start`` (a count of jobs to pass over; the trash pages by it) reads
    the ``start`` jobs before the page. A page reads at most ``SCAN_LIMIT`` jobs of its own;
    ``next_after`` and ``next_start`` say where the next one starts (None at the end)."""
    now = board.clock()
    trashed = wanted.state == "trashed"
    source: Iterator[Job]
    if trashed:
        source, after = itertools.islice(board.iter_trash(), start, None), None
    else:
        # Only claimable jobs can match "waiting": the board leaves the others out.
        source = board.iterjobs(only_unclaimed=wanted.state == "waiting", after=after)
        if after is None:
            source = itertools.islice(source, start, None)
    rows: list[dict[str, Any]] = []
    position = start
    scanned = 0
    last: Job | None = None
    for job in source:
        if len(rows) >= limit or scanned >= SCAN_LIMIT:
            break
        position += 1
        scanned += 1
        last = job
        row = job_row(job, now=now, state="trashed" if trashed else None)
        if wanted.factory or wanted.matches(row):  # read the factory only when it may show
            row["factory"] = _factory_of(job, backend)
            if wanted.matches(row):
                rows.append(row)
    else:
        position = -1
    more = position >= 0
    return {
        "jobs": rows,
        "start": start,
        "after": after,
        "scanned": scanned,
        "next_start": position if more and after is None else None,
        "next_after": last.position if more and last is not None and not trashed else None,
        "stopped_early": more and len(rows) < limit,
    }


def overview(board: JobBoard, backend: Persistence) -> dict[str, Any]:
    """Counts, live conductors, finished and failed per minute over the last hour, the age
    of the oldest waiting job (whatever its priority), and what needs attention."""
    now = board.clock()
    counts = board.counts()
    live = [_entity_row(e) for e in board.iter_entities("conductor")]
    oldest = board.oldest_waiting()
    lapsed = _lapsed_at_head(board, now)
    held, lapsing = _claims(board, now)
    for row in live:
        _add_claims(row, held, now)
    recent = backend.claim_counts(utcnow() - dt.timedelta(minutes=10))
    attention = []
    if recent.get("trashed"):
        attention.append(f"{recent['trashed']} job(s) trashed in the last 10 minutes")
    if recent.get("abandoned"):
        attention.append(
            f"{recent['abandoned']} claim(s) abandoned in the last 10 minutes: "
            "a conductor may be misconfigured (see the trash and the flows)"
        )
    if lapsed:
        attention.append(
            f"{len(lapsed)} claim(s) lapsed: their conductor stopped renewing; "
            "the jobs wait for another conductor"
        )
    if lapsing:
        attention.append(
            f"{len(lapsing)} claim(s) about to lapse (less than a third of the lease left; "
            "a conductor renews at two thirds): "
            + ", ".join(
                f"{c['job_name']} held by {c['owner']}, {c['left']}s left" for c in lapsing[:5]
            )
            + (" ..." if len(lapsing) > 5 else "")
        )
    for row in live:
        if row["paused"]:
            attention.append(
                f"conductor {row['name']} paused itself: it looks misconfigured "
                f"({row['paused']['jobs']} jobs in a row could not run there; last: "
                f"{row['paused']['reason']}); claiming again at {row['paused']['until']}"
            )
    if counts["waiting"] and not live:
        attention.append("jobs are waiting and no conductor is live")
    return {
        "board": board.name,
        "counts": counts,
        "conductors": live,
        "oldest_waiting": oldest.uuid if oldest else None,
        "oldest_waiting_since": _iso(oldest.record.created_on) if oldest else None,
        "oldest_waiting_age": age(now - oldest.record.created_on) if oldest else None,
        "per_minute": per_minute(backend),
        "attention": attention,
        "lapsed": lapsed,
        "lapsing": lapsing,
        "time": _iso(now),
    }


def per_minute(backend: Persistence, minutes: int = 60) -> list[dict[str, int]]:
    """Jobs finished and failed in each of the last ``minutes`` minutes, oldest first (from
    the job history: one aggregate query per minute)."""
    end = utcnow()
    totals = [backend.claim_counts(end - dt.timedelta(minutes=k)) for k in range(minutes + 1)]
    return [
        {
            "minute": -k,
            "finished": totals[k]["finished"] - totals[k - 1]["finished"],
            "failed": totals[k]["failed"] - totals[k - 1]["failed"],
        }
        for k in range(minutes, 0, -1)
    ]


def _add_claims(row: dict[str, Any], held: dict[str, list[JobRecord]], now: float) -> None:
    """A live conductor's row gets the jobs it holds and when it last renewed one of their
    claims (the latest claim or renewal: each board's ``last_modified`` of a claimed job)."""
    records = held.get(row["name"], [])
    row["jobs"] = [r.uuid for r in records]
    renewed = max((r.last_modified for r in records if r.last_modified), default=None)
    row["last_renewal"] = _iso(renewed)
    row["last_renewal_age"] = age(now - renewed) if renewed is not None else None


def _lapsed_at_head(board: JobBoard, now: float) -> list[str]:
    """The jobs among the first ``HEAD_SCAN`` whose claim lapsed (their owner stopped
    renewing; the board's index of claims may already have let go of them)."""
    return [
        job.uuid
        for job in itertools.islice(board.iterjobs(), HEAD_SCAN)
        if job.record.state is JobState.CLAIMED and job.record.effective_owner(now) is None
    ]


def _claims(
    board: JobBoard, now: float
) -> tuple[dict[str, list[JobRecord]], list[dict[str, Any]]]:
    """Every live claim by owner, and those about to lapse (``lapsing``), from the board's
    index of claims (``iter_claimed``: what it costs follows the claims, not the jobs)."""
    held: dict[str, list[JobRecord]] = {}
    lapsing: list[dict[str, Any]] = []
    for job in board.iter_claimed():
        record = job.record
        owner = record.effective_owner(now)
        if owner is None:
            continue
        held.setdefault(owner, []).append(record)
        if lapsing_soon(record, now):
            assert record.lease_expires is not None
            lapsing.append(
                {
                    "job_uuid": job.uuid,
                    "job_name": job.name,
                    "owner": owner,
                    "left": round(record.lease_expires - now, 1),
                    "lease_expires": _iso(record.lease_expires),
                }
            )
    return held, lapsing


def lapsing_soon(record: JobRecord, now: float) -> bool:
    """Whether a live claim has less than a third of its lease left: its owner renews with
    two thirds left, so it missed renewals (stuck, cut off from the board, or gone).

    The lease's length is ``lease_expires - last_modified``: every board sets
    ``last_modified`` on a claim's last write (the claim or its last renewal)."""
    expires, written = record.lease_expires, record.last_modified
    if expires is None or written is None or expires <= written:
        return False
    return expires - now < (expires - written) / 3


def _entity_row(entity: Entity) -> dict[str, Any]:
    meta = entity.metadata or {}
    started = meta.get("started_at")
    return {
        "name": entity.name,
        "host": meta.get("host"),
        "pid": meta.get("pid"),
        "started_at": _iso(started) if isinstance(started, int | float) else None,
        "paused": _paused_of(meta.get("paused")),
        "jobs": [],
        "last_renewal": None,
        "last_renewal_age": None,
    }


def _paused_of(paused: Any) -> dict[str, Any] | None:
    """A conductor's published pause (it looks misconfigured): reason, jobs, until."""
    if not isinstance(paused, dict):
        return None
    until = paused.get("until")
    jobs = paused.get("jobs")
    return {
        "reason": str(paused.get("reason") or "")[:500],
        "jobs": jobs if isinstance(jobs, int) else None,
        "until": _iso(until) if isinstance(until, int | float) else None,
    }


# -- one job ------------------------------------------------------------------------------


def find_job(board: JobBoard, backend: Persistence, uuid: str) -> dict[str, Any]:
    """The job ``uuid`` wherever it is: on the board, in the trash or in the history.

    Raises:
        NotFound: a malformed id, or a job none of them knows.
    """
    if not is_uuid(uuid):
        raise errors.NotFound(f"{uuid[:60]!r} is not a job id")
    now = board.clock()
    history = backend.job_history(uuid)
    job: Job | None = None
    state = None
    with contextlib.suppress(errors.NotFound):
        job = board.get(uuid)
        state = _state_of(job, now)
    if job is None:
        job = next(
            (j for j in itertools.islice(board.iter_trash(), SCAN_LIMIT) if j.uuid == uuid), None
        )
        state = "trashed" if job is not None else None
    if job is None and not history:
        raise errors.NotFound(f"no job {uuid} on the board, in the trash or in the history")
    if state is None:
        last = history[-1].outcome if history else None
        state = "trashed" if last == "trashed" else "consumed"
    return {"job": job, "state": state, "history": history}


def job_page(board: JobBoard, backend: Persistence, uuid: str) -> dict[str, Any]:
    """Everything the job page shows: the job, its flows atom by atom, its claim history."""
    found = find_job(board, backend, uuid)
    job: Job | None = found["job"]
    history: list[Claim] = found["history"]
    now = board.clock()
    if job is not None:
        data = job_row(job, now=now, state=found["state"])
        data["details"] = job.details
        record = job.record
        data["lease_expires_in"] = (
            round(record.lease_expires - now, 1) if data["owner"] and record.lease_expires else None
        )
        data["cancel_requested"] = job.cancel_requested
    else:
        last = history[-1]
        data = {
            "uuid": uuid,
            "name": next((c.job_name for c in reversed(history) if c.job_name), None),
            "state": found["state"],
            "priority": None,
            "owner": None,
            "attempts": len(history),
            "created_on": None,
            "age": None,
            "reason": last.reason,
            "book_uuid": next((c.book_uuid for c in reversed(history) if c.book_uuid), None),
            "details": None,
            "lease_expires_in": None,
            "cancel_requested": None,
        }
    data["finished"] = data["state"] in ("trashed", "consumed")
    data["history"] = [_claim_row(c) for c in history]
    data["flows"] = _flows_of(data["book_uuid"], backend)
    data["factory"] = next((f["factory"] for f in data["flows"] if f["factory"]), None)
    return data


def _claim_row(claim: Claim) -> dict[str, Any]:
    row = claim.to_dict()
    row["outcome"] = claim.outcome or "running"
    row["took"] = (
        round((claim.ended_at - claim.claimed_at).total_seconds(), 3)
        if claim.ended_at is not None
        else None
    )
    return row


def _flows_of(book_uuid: str | None, backend: Persistence) -> list[dict[str, Any]]:
    if book_uuid is None:
        return []
    try:
        flows = list(backend.get_flows_for_book(book_uuid))
    except errors.NotFound:
        return []
    return [_flow_row(fd) for fd in flows]


def _flow_row(flow_detail: FlowDetail) -> dict[str, Any]:
    factory = flow_detail.meta.get("factory")
    atoms = [_atom_row(ad) for ad in flow_detail]
    return {
        "uuid": flow_detail.uuid,
        "name": flow_detail.name,
        "state": str(flow_detail.state) if flow_detail.state else "PENDING",
        "factory": factory.get("name") if isinstance(factory, dict) else None,
        "store": flow_detail.meta.get("store"),
        "error": flow_detail.meta.get("error"),
        "atoms": atoms,
        "done": sum(1 for a in atoms if a["state"] == "SUCCESS"),
        # A graph flow's layout (from the edges its engine recorded); None: a list.
        "graph": _graph.layout(atoms, flow_detail.meta.get("edges")),
    }


def _atom_row(atom: AtomDetail) -> dict[str, Any]:
    """One atom as the job page shows it. Times are what the engine's ``TimingListener``
    stored in the atom's meta (``duration``, ``revert_duration``; ``legato conductor``
    attaches it): None where nothing recorded them, never made up."""
    retry = atom.KIND == "retry"
    return {
        "name": atom.name,
        "kind": atom.KIND,
        "state": str(atom.state),
        "intention": str(atom.intention),
        "result": None if retry else atom.results,
        "failure": _failure_row(atom.failure),
        "revert_failure": _failure_row(atom.revert_failure),
        "duration": _seconds(atom.meta.get("duration")),
        "revert_duration": _seconds(atom.meta.get("revert_duration")),
        "progress": atom.meta.get("progress"),
        "retry_history": _retry_history(atom.results) if retry else None,
    }


def _seconds(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _retry_history(results: Any) -> list[dict[str, Any]]:
    """A retry's history (``RetryDetail.results``: ``[result, {atom: failure}]`` per try),
    one entry per try: what the retry returned for it and what failed in it."""
    if not isinstance(results, list):
        return []
    tries = []
    for number, entry in enumerate(results, 1):
        result, failures = (
            entry if isinstance(entry, list | tuple) and len(entry) == 2 else (entry, {})
        )
        failed = failures.items() if isinstance(failures, dict) else ()
        tries.append(
            {
                "try": number,
                "result": result,
                "failures": [dict(_failure_row(f) or {}, atom=str(name)) for name, f in failed],
            }
        )
    return tries


def _failure_row(failure: dict[str, Any] | None) -> dict[str, Any] | None:
    if not isinstance(failure, dict):
        return None
    names = failure.get("exc_type_names") or []
    return {
        "type": names[0] if names else "Exception",
        "message": failure.get("message"),
        "traceback": failure.get("traceback"),
    }


def pretty(value: Any) -> str:
    """``value`` as indented JSON (its repr when it is not JSON)."""
    try:
        return json.dumps(value, indent=2, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return repr(value)


# -- flows, trash, conductors -------------------------------------------------------------

_FAILED_FIRST = {str(FlowState.FAILURE): 0, str(FlowState.REVERTED): 1}


def flows(
    backend: Persistence,
    *,
    state: str | None = None,
    since: dt.timedelta | None = None,
    factory: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """``flows list`` as rows: failed flows first, then the rest, newest first."""
    wanted = None
    if state:
        try:
            wanted = FlowState(state.strip().upper())
        except ValueError:
            raise ValueError(
                "state must be one of " + ", ".join(s.value for s in FlowState)
            ) from None
    after = utcnow() - since if since is not None else None
    summaries = backend.list_flows(state=wanted, since=after, factory=factory or None, limit=limit)
    rows = [dict(s.to_dict(), state=s.state or "PENDING") for s in summaries]
    rows.sort(key=lambda row: _FAILED_FIRST.get(row["state"], 2))
    return rows


def trash_page(board: JobBoard, *, limit: int = 200) -> dict[str, Any]:
    """The newest trashed jobs (at most ``limit``) and how many share each reason."""
    now = board.clock()
    rows = [
        job_row(job, now=now, state="trashed")
        for job in itertools.islice(board.iter_trash(), limit)
    ]
    reasons: dict[str, int] = {}
    for row in rows:
        reasons[row["reason"] or ""] = reasons.get(row["reason"] or "", 0) + 1
    grouped = sorted(reasons.items(), key=lambda item: -item[1])
    return {
        "jobs": rows,
        "reasons": [{"reason": r, "count": n} for r, n in grouped],
        "total": board.counts()["trashed"],
        "shown": len(rows),
    }


def conductors(
    board: JobBoard,
    backend: Persistence,
    *,
    flows_limit: int = 50,
    since: dt.timedelta = dt.timedelta(hours=1),
) -> dict[str, Any]:
    """Live conductors with the jobs they hold (``iter_claimed``), and
    every owner in the history of the last ``flows_limit`` flows run within ``since``, with
    the jobs each ran and their outcomes."""
    now = board.clock()
    live = [_entity_row(e) for e in board.iter_entities("conductor")]
    held, _ = _claims(board, now)
    for row in live:
        _add_claims(row, held, now)
    ran: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for summary in backend.list_flows(since=utcnow() - since, limit=flows_limit):
        if summary.job_uuid is None or summary.job_uuid in seen:
            continue
        seen.add(summary.job_uuid)
        for claim in backend.job_history(summary.job_uuid):
            entry = ran.setdefault(
                claim.owner, {"name": claim.owner, "runs": [], "last_seen": None}
            )
            entry["runs"].append(
                {
                    "job_uuid": claim.job_uuid,
                    "job_name": claim.job_name,
                    "fence": claim.fence,
                    "outcome": claim.outcome or "running",
                    "reason": claim.reason,
                }
            )
            seen_at = _iso(claim.ended_at or claim.claimed_at)
            if seen_at and (entry["last_seen"] is None or seen_at > entry["last_seen"]):
                entry["last_seen"] = seen_at
    names = {row["name"] for row in live}
    for row in live:
        row["runs"] = ran.get(row["name"], {}).get("runs", [])
    gone = sorted(
        (entry for name, entry in ran.items() if name not in names),
        key=lambda entry: entry["last_seen"] or "",
        reverse=True,
    )
    return {"live": live, "gone": gone}
