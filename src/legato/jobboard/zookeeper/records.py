"""What the ZooKeeper board writes and commits: job records as job node JSON, the claim
transactions being built or awaited, and reading their results.

``ZooKeeperJobBoard`` (``legato.jobboard.zookeeper``) describes the nodes and the transactions;
this module holds its plain data and the conversions, with no I/O.
"""

from __future__ import annotations

import dataclasses
import json
import operator
from typing import Any

from kazoo import exceptions as kz

from legato import errors
from legato.jobboard.base import JobRecord, decode_record
from legato.jobboard.zookeeper.follow import claim_expiry, decode_claim
from legato.jobboard.zookeeper.index import job_id
from legato.states import JobState

__all__ = ["CONSUME_OPS", "Claim", "Consuming", "Held", "LostRace", "bounded", "clone",
           "decode_job", "encode_job", "failed_at", "failure_of", "with_claim"]

#: Longest abandon/trash reason kept (in characters); longer ones are cut.
_MAX_REASON = 16_384
#: Operations a consume adds to a transaction (delete the claim node, delete the job node).
CONSUME_OPS = 2
#: Record fields that describe the live claim, kept in the claim node rather than the job node.
_CLAIM_FIELDS = ("state", "owner", "lease_expires", "sequence")
#: Record fields kept in the job node.
_JOB_FIELDS = tuple(f.name for f in dataclasses.fields(JobRecord) if f.name not in _CLAIM_FIELDS)
_job_values = operator.attrgetter(*_JOB_FIELDS)


class LostRace(errors.UnclaimableJob):
    """Another claimer created the claim node between our read and our transaction."""


@dataclasses.dataclass(kw_only=True, slots=True)
class Claim:
    """A claim transaction's operations, ready to commit alone or after a consume."""

    name: str
    job_path: str
    claim_path: str
    record: JobRecord  # as it is once claimed
    claim: dict[str, Any]
    job_data: bytes
    job_version: int
    stale: int | None  # the version of an expired claim node to replace
    cached: bool  # built from what the index knew, not from a read

    def add_to(self, txn: Any) -> None:
        if self.stale is not None:  # replace an expired claim unless it just changed
            txn.delete(self.claim_path, version=self.stale)
        txn.create(self.claim_path, json.dumps(self.claim).encode(), ephemeral=True)
        txn.set_data(self.job_path, self.job_data, version=self.job_version)


@dataclasses.dataclass
class Held:
    """A claim checked to belong to the caller, with the versions to commit against."""

    name: str
    claim: dict[str, Any]
    claim_version: int
    record: JobRecord
    job_version: int


@dataclasses.dataclass(kw_only=True, slots=True)
class Consuming:
    """A consume sent (with the next job's claim, ``prepared``, when there was one ready) and
    not yet answered."""

    job_uuid: str
    who: str
    fence: int | None
    ttl: float
    held: Held
    prepared: Claim | None
    pending: Any  # kazoo's async result of the transaction


def failed_at(results: list[Any]) -> int | None:
    """The position of the transaction operation that failed, or None if it committed."""
    for position, result in enumerate(results):
        if isinstance(result, Exception) and not isinstance(
                result, kz.RolledBackError | kz.RuntimeInconsistency):
            return position
    return None


def failure_of(results: list[Any]) -> Exception | None:
    """The error of the transaction operation that failed, or None if it committed."""
    position = failed_at(results)
    return None if position is None else results[position]


def bounded(reason: str | None) -> str | None:
    """A reason short enough to keep in a node (tracebacks can be long)."""
    if reason is None or len(reason) <= _MAX_REASON:
        return reason
    return reason[:_MAX_REASON] + " [...]"


def encode_job(record: JobRecord) -> bytes:
    # Not ``record.to_dict()``: that deep-copies the details, and this runs on every claim.
    return json.dumps(dict(zip(_JOB_FIELDS, _job_values(record), strict=True))).encode()


def decode_job(name: str, data: bytes) -> JobRecord:
    """The record in the job node ``name`` holding ``data``; ``GarbageRecord`` (a
    ``ValueError``) when it cannot be decoded, whatever the reason (``decode_record``)."""
    try:
        uuid, sequence = job_id(name)
    except ValueError as exc:
        raise errors.GarbageRecord(f"garbage record: {exc}") from exc
    return decode_record(data, uuid=uuid, sequence=sequence)


def with_claim(record: JobRecord, claim: bytes, *, ends: float | None = None) -> JobRecord:
    """``record`` as claimed by the claim node holding ``claim``, whose lease ends at ``ends``
    (default: the owner's ``expires_at``). ``last_modified`` becomes the claim's last write
    (the claim or its last renewal, its TTL before it ends) when that is later, as a renewal
    sets it on the other boards."""
    data = decode_claim(claim)
    record.state = JobState.CLAIMED
    record.owner = data.get("owner")
    record.lease_expires = claim_expiry(data) if ends is None else ends
    ttl = data.get("ttl")
    if isinstance(ttl, int | float) and not isinstance(ttl, bool) and record.lease_expires:
        written = record.lease_expires - float(ttl)
        if record.last_modified is None or written > record.last_modified:
            record.last_modified = written
    return record


def clone(record: JobRecord) -> JobRecord:
    """A shallow copy (``copy.copy`` costs several times more, going through
    ``__reduce_ex__``)."""
    new = object.__new__(JobRecord)
    new.__dict__.update(record.__dict__)
    return new
