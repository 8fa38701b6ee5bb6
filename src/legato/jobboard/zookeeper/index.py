"""The ZooKeeper board's in-memory view of ``jobs/`` and ``claims/``, kept current by events.

Pure Python, no I/O: one ``Entry`` per job node, and the job node names in claim order (a
``SortedList``; the names carry the priority and the post sequence, so the order needs no reads).
The board feeds it a full listing of both nodes when it (re)connects, then the watch events
(``follow``): one per job node created, rewritten or deleted, and one per change of a claim node
it read with a watch. It also tells it what its own writes did once they have committed, and the
results of its reads; and asks it for the next candidate to claim and the data it already knows.

A job node is rewritten only by a claim or by the end of one (abandon, release), so after such an
event whether it has a claim node is unknown (``take`` passes it over) until the board reads the
claim node, unless the write was the board's own (``writing``/``written``), or the event of the
``UNCLAIMED`` marker's deletion follows: the transaction that ends a claim creates and deletes a
child of that name under the job node, after rewriting it.

Everything here is a hint: the board's transactions check node versions, so a stale entry costs
a failed transaction and a read, never a wrong claim. Reads are stamped with ``token()`` when
sent, and their results dropped if an event about the same node came after that.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import re
import threading
from collections.abc import Callable, Iterator

from sortedcontainers import SortedList

__all__ = ["CHANGED", "CLAIMS", "CREATED", "DELETED", "JOBS", "UNCLAIMED", "Entry", "Index",
           "job_id", "job_key", "job_name_prefix", "key_after", "uuid_of"]

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^job-(?P<priority>[+-]\d+)-(?P<uuid>.+)-(?P<seq>\d{10})$")
#: How many uuids of removed jobs are remembered (so ``get`` of a finished job needs no listing).
_GONE_MEMORY = 10_000

#: Which watched node an event is about.
JOBS, CLAIMS = "jobs", "claims"
#: ZooKeeper's event types.
CREATED, DELETED, CHANGED = 1, 2, 3
#: The child of a job node created and deleted by the transaction that ends its claim.
UNCLAIMED = "unclaimed"

Key = tuple[int, int, str]
#: A node's data and version.
Node = tuple[bytes, int]


def job_name_prefix(priority: int, uuid: str) -> str:
    """The name a job node is created with (ZooKeeper appends a 10-digit sequence)."""
    return f"job-{priority:+d}-{uuid}-"


def job_key(name: str) -> Key | None:
    """Sort key of a job node name (higher priority first, then oldest post); None if foreign."""
    match = _NAME.match(name)
    if match is None:
        return None
    return (-int(match["priority"]), int(match["seq"]), name)


def key_after(priority: int, sequence: int) -> Key:
    """A key that sorts after every job node of ``priority`` posted at ``sequence`` or before,
    and before the rest (``bisect_right`` of it starts a listing there)."""
    return (-priority, sequence, "\U0010ffff")


def job_id(name: str) -> tuple[str, int]:
    """The uuid and the post sequence in a job node name; ``ValueError`` if foreign."""
    match = _NAME.match(name)
    if match is None:
        raise ValueError(f"not a job node name: {name!r}")
    return match["uuid"], int(match["seq"])


def uuid_of(name: str) -> str:
    return job_id(name)[0]


def _uuid_in(name: str) -> str:
    """The uuid in a job node name known to match ``_NAME`` (``job-<priority>-<uuid>-<10
    digits>``, the priority a sign and digits): string slicing, no regular expression."""
    return name[name.index("-", 5) + 1:-11]


@dataclasses.dataclass(slots=True)
class Entry:
    """What is known of one job node.

    ``claimed``: a claim node may exist; its lease ends at ``expires`` (None: not read yet, so
    unknown). ``busy``: reserved by a claimer of this process; ``writing``: this process is
    changing the node; ``fetching``/``reading``: its job node / claim node is being read.
    ``touched``: the event count when an event last concerned it.
    """

    key: Key
    claimed: bool = False
    expires: float | None = None
    not_before: float | None = None
    data: Node | None = None
    garbage: bool = False
    busy: bool = False
    writing: bool = False
    fetching: bool = False
    reading: bool = False
    touched: int = 0

    @property
    def unknown(self) -> bool:
        return self.claimed and self.expires is None

    def unavailable(self, now: float, *, unread: bool = True) -> bool:
        """Known to be unclaimable at ``now``; a claim not read yet counts as live if
        ``unread``."""
        if self.garbage or self.writing or (self.not_before or now) > now:
            return True
        if not self.claimed:
            return False
        return unread if self.expires is None else self.expires > now

    def claim_ended(self) -> None:
        self.claimed, self.expires = False, None


class Index:
    """Job entries by node name, in claim order. Every method is thread-safe; every change
    makes ``generation`` grow and wakes the threads in ``wait_for``.

    Until ``finish_sync`` has applied listings made on the current connection, ``synced`` is
    False and the board must sync before trusting the index.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._waiting = 0  # threads in wait_for: a change notifies only if there are some
        self.generation = 0
        self._jobs: dict[str, Entry] = {}
        self._order: SortedList = SortedList()
        self._by_uuid: dict[str, str] = {}
        self._gone: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._foreign: set[str] = set()
        self._seq = 0  # events count it up
        self._floor = 0  # reads stamped before the last listing are dropped
        self._synced = False
        self._epoch = 0
        self._journal: list[tuple[str, int, str]] | None = None

    def _changed(self) -> None:
        self.generation += 1
        if self._waiting:
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` (called with the index locked, after each change) is
        true, at most ``timeout`` seconds; its last value."""
        with self._lock:
            self._waiting += 1
            try:
                return self._cond.wait_for(predicate, timeout)
            finally:
                self._waiting -= 1

    # -- syncing ---------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        return self._synced

    def desync(self) -> None:
        """The connection changed: events may have been missed until the next sync."""
        with self._lock:
            self._epoch += 1
            self._synced = False
            self._journal = None
            self._changed()

    def begin_sync(self) -> int:
        """Start recording events; call before the listings are requested. Returns a token for
        ``finish_sync``."""
        with self._lock:
            self._journal = []
            self._floor = self._seq
            return self._epoch

    def finish_sync(self, epoch: int, jobs: list[str], claims: list[str]) -> list[str] | None:
        """Apply full listings of ``jobs/`` and ``claims/`` and replay on top of them the events
        that came since ``begin_sync``; return the claims to read, or None if the connection
        changed meanwhile (still not synced)."""
        with self._lock:
            journal, self._journal = self._journal, None
            if journal is None or epoch != self._epoch:
                return None
            listed = set(jobs)
            for name in self._jobs.keys() - listed:
                self._drop(name)
            self._insert([k for k in map(self._key, listed - self._jobs.keys()) if k])
            claimed = set(claims)
            for name, entry in self._jobs.items():
                garbage, busy = entry.garbage, entry.busy
                self._jobs[name] = Entry(entry.key, claimed=name in claimed, garbage=garbage,
                                         busy=busy)
            for root, kind, name in journal:
                self._apply(root, kind, name)
            self._synced = True
            self._changed()
            return [key[2] for key in self._order if self._jobs[key[2]].unknown]

    def abort_sync(self, epoch: int) -> None:
        with self._lock:
            if epoch == self._epoch:
                self._journal = None

    # -- events ----------------------------------------------------------------------------

    def token(self) -> int:
        """Stamp for a read about to be sent (see the module docstring)."""
        return self._seq

    def event(self, root: str, kind: int, name: str) -> None:
        """A watch event about ``root/name`` (``root`` is ``JOBS`` or ``CLAIMS``; ``name`` is
        ``job/child`` for a job node's child)."""
        with self._lock:
            if self._journal is not None:
                self._journal.append((root, kind, name))
            self._seq += 1
            entry = self._apply(root, kind, name)
            if entry is not None:
                entry.touched = self._seq
            self._changed()

    def _apply(self, root: str, kind: int, name: str) -> Entry | None:
        """Apply an event; the entry of the job it concerns, if it has one now."""
        job, _, child = name.partition("/")
        if root == JOBS and kind == CREATED and not child:
            if job not in self._jobs and (key := self._key(job)) is not None:
                self._insert([key])
            return self._jobs.get(job)
        if root == JOBS and kind == DELETED and not child:
            self._drop(job)
            return None
        entry = self._jobs.get(job)
        if entry is None:
            return None
        if root == JOBS and child:
            if child == UNCLAIMED and kind == DELETED:
                entry.claim_ended()  # the claim just ended: no claim node now
        elif root == JOBS and kind == CHANGED:
            # Claimed or abandoned (the only writes to a job node): its data and delay are
            # not known any more, nor whether a claim node exists (read when it matters).
            entry.data = entry.not_before = None
            entry.claimed, entry.expires = True, None
        elif root == CLAIMS and kind == DELETED:
            entry.claim_ended()
        elif root == CLAIMS:
            entry.claimed, entry.expires = True, None  # renewed (or replaced): read it again
        return entry

    # -- this process's own writes and reads -----------------------------------------------

    def add(self, name: str, available_at: float | None, node: Node | None = None) -> None:
        """A job this process just posted (with its data and version, when known)."""
        key = job_key(name)
        if key is None:
            raise ValueError(f"not a job node name: {name!r}")
        with self._lock:
            if name not in self._jobs:
                self._insert([key])
            entry = self._jobs[name]
            entry.not_before = available_at if available_at is not None else entry.not_before
            entry.data = node if node is not None else entry.data
            self._changed()

    def remove(self, name: str) -> None:
        """A job known to be gone (consumed, trashed, or found missing)."""
        with self._lock:
            self._drop(name)
            self._changed()

    def writing(self, name: str) -> None:
        """This process is about to change the job node ``name`` (claim or abandon it): the
        job is passed over, and the event that causes needs no read, until ``written``."""
        with self._lock:
            if (entry := self._jobs.get(name)) is not None:
                entry.writing = True

    def written(self, name: str) -> bool:
        """The write announced by ``writing`` is over and its event handled (the caller has
        recorded its outcome with ``claimed`` or ``unclaimed``, or it failed). True when
        whether a claim node exists is left unknown, to be read."""
        with self._lock:
            entry = self._jobs.get(name)
            if entry is None:
                return False
            entry.writing = False
            self._changed()
            return entry.unknown

    def claim_exists(self, name: str) -> bool:
        """A claim attempt found a claim node the index did not know of: True when it should be
        read (nothing is known of it yet)."""
        with self._lock:
            entry = self._jobs.get(name)
            if entry is None or entry.claimed:
                return False
            entry.claimed, entry.expires = True, None
            self._changed()
            return True

    def claimed(self, name: str, expires: float, *, seen: int | None = None) -> None:
        """A claim with this lease expiry: read with token ``seen``, or made or renewed by this
        process just now (``seen`` None)."""
        with self._lock:
            entry = self._jobs.get(name)
            if entry is None or (seen is not None and not self._fresh(entry, seen)):
                return
            entry.claimed, entry.expires = True, expires
            if seen is None:
                entry.data = None  # the claim rewrote the job node
                self._own_change(entry)
            self._changed()

    def reading(self, names: list[str]) -> list[str]:
        """Of ``names``, those whose claim node is not being read already, now marked as being
        read (``read_done`` ends that)."""
        with self._lock:
            fresh = [n for n in names if (e := self._jobs.get(n)) is not None and not e.reading]
            for name in fresh:
                self._jobs[name].reading = True
            return fresh

    def read_done(self, name: str) -> None:
        with self._lock:
            if (entry := self._jobs.get(name)) is not None:
                entry.reading = False

    def no_claim(self, name: str, *, seen: int) -> None:
        """A read with token ``seen`` found no claim node."""
        with self._lock:
            entry = self._jobs.get(name)
            if entry is not None and entry.claimed and self._fresh(entry, seen):
                entry.claim_ended()
                self._changed()

    def unclaimed(self, name: str, available_at: float | None = None,
                  node: Node | None = None) -> None:
        """This process ended the job's claim just now; it may be claimed from
        ``available_at`` on (its data and version are now ``node``)."""
        with self._lock:
            entry = self._jobs.get(name)
            if entry is not None:
                entry.claim_ended()
                entry.not_before, entry.data = available_at, node
                self._own_change(entry)
            self._changed()

    def _own_change(self, entry: Entry) -> None:
        """This process changed the job just now (lock held): a read sent before (its token
        is older) no longer tells the truth about it and is ignored when it lands."""
        self._seq += 1
        entry.touched = self._seq

    def delayed(self, name: str, available_at: float, *, seen: int) -> None:
        """A read with token ``seen`` found the job delayed until ``available_at``."""
        with self._lock:
            entry = self._jobs.get(name)
            if entry is not None and self._fresh(entry, seen):
                entry.not_before = available_at

    def job_data(self, name: str, node: Node | None, *, seen: int) -> None:
        """A background read of a job node (token ``seen``) came back (None: it failed)."""
        with self._lock:
            entry = self._jobs.get(name)
            if entry is not None:
                entry.fetching = False
                if node is not None and self._fresh(entry, seen):
                    entry.data = node

    def cached(self, name: str) -> Node | None:
        """The job's data and version, if known and the job is known to have no claim node."""
        with self._lock:
            entry = self._jobs.get(name)
            return None if entry is None or entry.claimed else entry.data

    def stale(self, name: str) -> None:
        """A transaction found the cached data of ``name`` out of date."""
        with self._lock:
            if (entry := self._jobs.get(name)) is not None:
                entry.data = None

    def garbage(self, name: str) -> bool:
        """Mark a job node that cannot be decoded; True the first time (warn then)."""
        with self._lock:
            entry = self._jobs.get(name)
            if entry is None or entry.garbage:
                return entry is None
            entry.garbage = True
            return True

    def _fresh(self, entry: Entry, seen: int) -> bool:
        return seen >= self._floor and entry.touched <= seen

    # -- asking ----------------------------------------------------------------------------

    def unknown_claims(self) -> list[str]:
        """Claimed names whose lease expiry has not been read yet, in claim order."""
        with self._lock:
            return [key[2] for key in self._order if self._jobs[key[2]].unknown]

    def lookup(self, uuid: str) -> str | None:
        with self._lock:
            return self._by_uuid.get(uuid)

    def known_gone(self, uuid: str) -> bool:
        with self._lock:
            return uuid in self._gone

    def forget(self, uuid: str) -> None:
        """Remember that no job has this uuid (any more)."""
        with self._lock:
            self._remember_gone(uuid)

    def count(self) -> int:
        with self._lock:
            return len(self._jobs)

    def counts(self, now: float) -> tuple[int, int]:
        """How many jobs are known claimed at ``now`` (claims not read yet included) and how
        many known delayed (and not claimed)."""
        with self._lock:
            claimed = delayed = 0
            for entry in self._jobs.values():
                if entry.claimed and (entry.expires is None or entry.expires > now):
                    claimed += 1
                elif (entry.not_before or now) > now:
                    delayed += 1
            return claimed, delayed

    def page(self, after: Key | None, now: float, *, only_unclaimed: bool,
             limit: int) -> list[Key]:
        """Up to ``limit`` keys after ``after``; with ``only_unclaimed``, none known to be
        claimed or delayed at ``now`` (claims not read yet are included)."""
        found: list[Key] = []
        with self._lock:
            start = 0 if after is None else self._order.bisect_right(after)
            for key in self._order.islice(start):
                entry = self._jobs[key[2]]
                if not (only_unclaimed and entry.unavailable(now, unread=False)):
                    found.append(key)
                    if len(found) >= limit:
                        break
        return found

    def claimed_names(self, now: float) -> list[str]:
        """The names of the jobs known claimed at ``now`` (claims not read yet included)."""
        with self._lock:
            return [name for name, entry in self._jobs.items()
                    if entry.claimed and (entry.expires is None or entry.expires > now)]

    def take(self, now: float, *, skip: int = 0) -> str | None:
        """Reserve a name that may be claimable for the calling thread, so that this process's
        other claimers try other jobs; ``release`` it afterwards.

        It is the first such name, or the ``skip``-th after it when there are that many:
        claimers that just lost a race spread out instead of all trying the same next job.
        """
        with self._lock:
            found: Entry | None = None
            for entry in self._candidates(now):
                found = entry
                if skip <= 0:
                    break
                skip -= 1
            if found is None:
                return None
            found.busy = True
            return found.key[2]

    def release(self, name: str) -> None:
        with self._lock:
            if (entry := self._jobs.get(name)) is not None:
                entry.busy = False

    def to_fetch(self, now: float, limit: int, *,
                 batch: int = 1) -> tuple[list[str], list[str]]:
        """What to read ahead of the next claims: the job nodes, among the next ``limit``
        candidates (not reserved), whose data is neither known nor being read, if there are at
        least ``batch`` of them or the first candidate is one (marked as being read until
        ``job_data``); and the claim nodes in unknown state among the jobs before them (not
        marked: see ``reading``)."""
        jobs: list[Entry] = []
        claims: list[str] = []
        urgent = False
        with self._lock:
            seen = 0
            entries = self._jobs
            for key in self._order:
                entry = entries[key[2]]
                if entry.busy:
                    continue
                # entry.unknown and entry.unavailable(now), inlined: scans pass many entries
                if entry.claimed:
                    if entry.expires is None:
                        if not (entry.reading or entry.writing):
                            claims.append(key[2])
                        continue
                    if entry.expires > now:
                        continue
                if (entry.garbage or entry.writing
                        or entry.not_before is not None) and entry.unavailable(now):
                    continue
                if entry.data is None and not entry.fetching:
                    jobs.append(entry)
                    urgent = urgent or seen == 0
                seen += 1
                if seen >= limit:
                    break
            if not urgent and len(jobs) < batch:
                jobs = []
            for entry in jobs:
                entry.fetching = True
        return [entry.key[2] for entry in jobs], claims

    # -- internals -------------------------------------------------------------------------

    def _candidates(self, now: float) -> Iterator[Entry]:
        entries = self._jobs
        for key in self._order:
            entry = entries[key[2]]
            # entry.unavailable(now), inlined: scans pass many entries
            if entry.busy or (entry.claimed and (entry.expires is None or entry.expires > now)):
                continue
            if not ((entry.garbage or entry.writing
                     or entry.not_before is not None) and entry.unavailable(now)):
                yield entry

    def _key(self, name: str) -> Key | None:
        key = job_key(name)
        if key is None and name not in self._foreign:
            self._foreign.add(name)
            logger.warning("ignoring a node with a foreign name under jobs/: %r", name)
        return key

    def _insert(self, keys: list[Key]) -> None:
        for key in keys:
            self._jobs[key[2]] = Entry(key)
            self._by_uuid[_uuid_in(key[2])] = key[2]
        self._order.update(keys)

    def _drop(self, name: str) -> None:
        entry = self._jobs.pop(name, None)
        if entry is None:
            return
        self._order.discard(entry.key)
        uuid = _uuid_in(name)
        self._by_uuid.pop(uuid, None)
        self._remember_gone(uuid)

    def _remember_gone(self, uuid: str) -> None:
        self._gone[uuid] = None
        if len(self._gone) > _GONE_MEMORY:
            self._gone.popitem(last=False)
