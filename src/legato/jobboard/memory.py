"""An in-process jobboard (``memory://``): for tests, demos and single-process programs.

``memory://`` gives each board object its own private storage. ``memory://NAME`` shares one
storage between every board object of this process opened with that name (two conductors in one
test, say); the storage is dropped when the last board using it closes, or by
``MemoryJobBoard.reset_all()``.

Claimable jobs sit in a heap ordered by (priority, post sequence), so ``claim_next`` pops instead
of scanning; delayed jobs and leases wait in heaps of their own and move back when due. Heap
entries are checked against the live record when popped, so stale ones are simply dropped.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from legato import errors
from legato.jobboard.base import (
    Capabilities,
    Entity,
    JobBoard,
    JobCounts,
    JobRecord,
    Position,
    not_owner,
)
from legato.states import JobState

if TYPE_CHECKING:
    from legato.persistence.base import Persistence

__all__ = ["MemoryJobBoard"]


class _Store:
    """Storage shared by the board objects of one ``memory://NAME``. Guarded by ``changed``."""

    def __init__(self) -> None:
        self.changed = threading.Condition(threading.RLock())
        self.version = 0  # bumped on every change that may make a job claimable or finished
        self.sequence = 0
        self.jobs: dict[str, JobRecord] = {}
        self.ready: list[tuple[int, int, str]] = []  # (-priority, sequence, uuid)
        self.delayed: list[tuple[float, str]] = []  # (available_at, uuid)
        self.leases: list[tuple[float, str, int]] = []  # (lease_expires, uuid, fence)
        self.trash: list[JobRecord] = []  # oldest first
        self.entities: dict[tuple[str, str], tuple[Entity, float]] = {}
        self.users = 0

    def bump(self) -> None:
        self.version += 1
        self.changed.notify_all()

    def schedule(self, record: JobRecord, now: float) -> None:
        """Queue an unclaimed record where claim_next will find it when it is due."""
        if record.available_at is not None and record.available_at > now:
            heapq.heappush(self.delayed, (record.available_at, record.uuid))
        else:
            heapq.heappush(self.ready, (-record.priority, record.sequence, record.uuid))

    def promote(self, now: float) -> None:
        """Move due delayed jobs and expired leases into the ready heap."""
        while self.delayed and self.delayed[0][0] <= now:
            _, uuid = heapq.heappop(self.delayed)
            record = self.jobs.get(uuid)
            if record is not None and record.claimable(now):
                heapq.heappush(self.ready, (-record.priority, record.sequence, uuid))
        while self.leases and self.leases[0][0] <= now:
            _, uuid, fence = heapq.heappop(self.leases)
            record = self.jobs.get(uuid)
            if record is not None and record.fence == fence and record.claimable(now):
                heapq.heappush(self.ready, (-record.priority, record.sequence, uuid))

    def pop_claimable(self, now: float) -> JobRecord | None:
        self.promote(now)
        while self.ready:
            _, _, uuid = heapq.heappop(self.ready)
            record = self.jobs.get(uuid)
            if record is not None and record.claimable(now):
                return record
        return None


_registry: dict[str, _Store] = {}
_registry_lock = threading.Lock()


class MemoryJobBoard(JobBoard):
    """A thread-safe jobboard living in this process. See the module docstring for sharing.

    Args:
        store_name: share storage with other boards of this name; None for private storage.
        **options: the ``JobBoard`` arguments (``name``, ``persistence``, ``ttl``,
            ``poll_interval``, ``clock``).
    """

    CAPABILITIES = Capabilities(notifications=True)  # within this process

    def __init__(self, *, store_name: str | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.store_name = store_name or None
        self._store: _Store | None = None
        self._private = _Store() if self.store_name is None else None  # kept across reconnects
        self._seen = threading.local()

    @classmethod
    def from_url(cls, url: str, *, persistence: Persistence | None = None,
                 **options: Any) -> MemoryJobBoard:
        parts = urlsplit(url)
        if parts.query:
            raise ValueError(f"unknown board URL options in {url!r}: memory:// takes none "
                             "(give ttl, poll_interval... as arguments)")
        name = (parts.netloc + parts.path).strip("/") or None
        return cls(store_name=name, persistence=persistence, **options)

    @classmethod
    def reset_all(cls) -> None:
        """Forget every named storage (for tests); boards still open keep their own copy."""
        with _registry_lock:
            _registry.clear()

    # -- lifecycle -------------------------------------------------------------------------

    def _connect(self) -> None:
        if self._private is not None:
            self._store = self._private
        else:
            with _registry_lock:
                self._store = _registry.setdefault(str(self.store_name), _Store())
        with self._store.changed:
            self._store.users += 1

    def _close(self) -> None:
        store, self._store = self._store, None
        if store is None:
            return
        with store.changed:
            store.users -= 1
            last = store.users == 0
        if last and self.store_name is not None:
            with _registry_lock:
                if _registry.get(self.store_name) is store:
                    del _registry[self.store_name]

    @property
    def _s(self) -> _Store:
        store = self._store
        if store is None:
            raise errors.JobFailure(f"board {self.name!r} is not connected; call connect()")
        return store

    def _mark_seen(self, store: _Store) -> None:
        self._seen.version = store.version

    # -- primitives ------------------------------------------------------------------------

    def _post(self, record: JobRecord) -> None:
        store = self._s
        with store.changed:
            store.sequence += 1
            record.sequence = store.sequence
            store.jobs[record.uuid] = record.copy()
            store.schedule(record, self.clock())
            store.bump()

    def _get(self, job_uuid: str) -> JobRecord:
        store = self._s
        with store.changed:
            self._mark_seen(store)
            record = store.jobs.get(job_uuid)
            if record is None:
                raise errors.NotFound(f"no job {job_uuid} on board {self.name!r}")
            return record.copy()

    def _iter_records(self, only_unclaimed: bool, ensure_fresh: bool,
                      after: Position | None = None) -> Iterator[JobRecord]:
        # In the process's memory: filtering every record is cheap next to any board call.
        start = (-after[0], after[1]) if after is not None else None
        store = self._s
        with store.changed:
            self._mark_seen(store)
            now = self.clock()
            records = [r.copy() for r in store.jobs.values()
                       if (not only_unclaimed or r.claimable(now))
                       and (start is None or (-r.priority, r.sequence) > start)]
        records.sort(key=lambda r: (-r.priority, r.sequence))
        return iter(records)

    def _waiting_heads(self) -> list[JobRecord]:
        # Jobs sit in the dict in post order (a post appends; claims and delays keep the
        # place): the first claimable one is the oldest, after the claimed and delayed before.
        store = self._s
        with store.changed:
            now = self.clock()
            first = next((r for r in store.jobs.values() if r.claimable(now)), None)
            return [first.copy()] if first is not None else []

    def _iter_claimed(self) -> Iterator[JobRecord]:
        store = self._s
        with store.changed:
            now = self.clock()
            return iter([r.copy() for r in store.jobs.values()
                         if r.effective_state(now) is JobState.CLAIMED])

    def _job_count(self) -> int:
        store = self._s
        with store.changed:
            return len(store.jobs)

    def _job_counts(self) -> JobCounts:
        # In the process's memory: counting the records is cheap next to any board call.
        store = self._s
        with store.changed:
            now = self.clock()
            claimed = delayed = 0
            for record in store.jobs.values():
                if record.effective_state(now) is JobState.CLAIMED:
                    claimed += 1
                elif not record.claimable(now):
                    delayed += 1
            return JobCounts(len(store.jobs) - claimed - delayed, delayed, claimed,
                             len(store.trash))

    def _claim(self, job_uuid: str, who: str, ttl: float) -> JobRecord:
        store = self._s
        with store.changed:
            record = store.jobs.get(job_uuid)
            if record is None:
                raise errors.NotFound(f"no job {job_uuid} on board {self.name!r}")
            now = self.clock()
            if not record.claimable(now):
                owner = record.effective_owner(now)
                why = f"claimed by {owner!r}" if owner else "delayed"
                raise errors.UnclaimableJob(f"job {job_uuid} is {why}", job_uuid=job_uuid,
                                            owner=owner)
            return self._take(store, record, who, ttl, now)

    def _claim_next(self, who: str, ttl: float) -> JobRecord | None:
        store = self._s
        with store.changed:
            now = self.clock()
            record = store.pop_claimable(now)
            return self._take(store, record, who, ttl, now) if record is not None else None

    @staticmethod
    def _take(store: _Store, record: JobRecord, who: str, ttl: float, now: float) -> JobRecord:
        record.state = JobState.CLAIMED
        record.owner = who
        record.fence += 1
        record.attempts += 1
        record.lease_expires = now + ttl
        record.available_at = None
        record.last_modified = now
        heapq.heappush(store.leases, (record.lease_expires, record.uuid, record.fence))
        return record.copy()

    def _owned(self, store: _Store, job_uuid: str, who: str, fence: int | None) -> JobRecord:
        record = store.jobs.get(job_uuid)
        if record is None:
            raise errors.NotFound(f"no job {job_uuid} on board {self.name!r}")
        actual = record.effective_owner(self.clock())
        if actual != who or (fence is not None and fence != record.fence):
            raise not_owner(job_uuid, who, actual, fence=fence, actual_fence=record.fence)
        return record

    def _renew(self, job_uuid: str, who: str, fence: int | None, ttl: float) -> str | None:
        store = self._s
        with store.changed:
            record = self._owned(store, job_uuid, who, fence)
            now = self.clock()
            record.lease_expires = now + ttl
            record.last_modified = now
            heapq.heappush(store.leases, (record.lease_expires, record.uuid, record.fence))
            return record.cancel

    def _cancel(self, job_uuid: str, mark: str) -> bool:
        store = self._s
        with store.changed:
            record = store.jobs.get(job_uuid)
            if record is None:
                raise errors.NotFound(f"no job {job_uuid} on board {self.name!r}")
            now = self.clock()
            record.last_modified = now
            if record.effective_state(now) is JobState.CLAIMED:
                record.cancel = mark
                return False
            del store.jobs[job_uuid]
            record.state, record.owner, record.lease_expires = JobState.UNCLAIMED, None, None
            record.reason = mark
            store.trash.append(record)
            store.bump()
            return True

    def _consume(self, job_uuid: str, who: str, fence: int | None) -> None:
        store = self._s
        with store.changed:
            self._owned(store, job_uuid, who, fence)
            del store.jobs[job_uuid]
            store.bump()

    def _abandon(self, job_uuid: str, who: str, fence: int | None, delay: float,
                 reason: str | None) -> None:
        self._unclaim(job_uuid, who, fence, delay=delay, reason=reason)

    def _release(self, job_uuid: str, who: str, fence: int | None) -> None:
        self._unclaim(job_uuid, who, fence, delay=0.0, uncount=True)

    def _unclaim(self, job_uuid: str, who: str, fence: int | None, *, delay: float,
                 reason: str | None = None, uncount: bool = False) -> None:
        store = self._s
        with store.changed:
            record = self._owned(store, job_uuid, who, fence)
            now = self.clock()
            record.state = JobState.UNCLAIMED
            record.owner = None
            record.lease_expires = None
            record.available_at = now + delay if delay > 0 else None
            if uncount:
                record.attempts = max(record.attempts - 1, 0)
            else:
                record.reason = reason
            record.last_modified = now
            store.schedule(record, now)
            store.bump()

    def _trash(self, job_uuid: str, who: str, fence: int | None, reason: str | None) -> None:
        store = self._s
        with store.changed:
            record = self._owned(store, job_uuid, who, fence)
            del store.jobs[job_uuid]
            record.reason = reason
            record.last_modified = self.clock()
            store.trash.append(record)
            store.bump()

    def _requeue(self, trashed_uuid: str, record: JobRecord) -> None:
        store = self._s
        with store.changed:
            kept = [r for r in store.trash if r.uuid != trashed_uuid]
            if len(kept) == len(store.trash):
                raise errors.NotFound(f"no job {trashed_uuid} in the trash of board "
                                      f"{self.name!r}")
            store.trash[:] = kept
            self._post(record)  # the condition's lock is re-entrant

    def _iter_trash(self) -> Iterator[JobRecord]:
        store = self._s
        with store.changed:
            records = [r.copy() for r in reversed(store.trash)]
        return iter(records)

    def _wait_for_change(self, timeout: float) -> bool:
        store = self._s
        with store.changed:
            # Sleep only if nothing changed since this thread last read the board, so a post
            # between that read and this wait is never missed.
            if getattr(self._seen, "version", -1) == store.version:
                store.changed.wait(timeout)
        return False

    # -- entities --------------------------------------------------------------------------

    def _register_entity(self, entity: Entity, ttl: float) -> None:
        store = self._s
        with store.changed:
            store.entities[(entity.kind, entity.name)] = (entity, self.clock() + ttl)

    def _unregister_entity(self, entity: Entity) -> None:
        store = self._s
        with store.changed:
            store.entities.pop((entity.kind, entity.name), None)

    def _iter_entities(self) -> Iterator[Entity]:
        store = self._s
        with store.changed:
            now = self.clock()
            live = [e for e, expires in store.entities.values() if expires > now]
        return iter(live)
