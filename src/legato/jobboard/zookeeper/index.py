"""The ZooKeeper board's in-memory view of ``jobs/`` and ``claims/``, kept current by events.

Pure Python, no I/O. ``ZooKeeperJobBoard`` feeds it a full listing of both nodes when it
(re)connects, then the watch events (``legato.jobboard.zookeeper.kazoo_compat``): one per job node created,
rewritten or deleted, and one per change of a claim node it read with a watch. It also tells it
what its own writes did once they have committed, and the results of its reads. It asks it for
the next candidate to claim and for the job data it already knows. Job node names carry the
priority, the uuid and the post sequence, so the order needs no reads.

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

import bisect
import collections
import logging
import re
import threading
from collections.abc import Iterator

__all__ = ["CHANGED", "CLAIMS", "CREATED", "DELETED", "JOBS", "UNCLAIMED", "Index", "SortedKeys",
           "job_id", "job_key", "job_name_prefix", "uuid_of"]

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^job-(?P<priority>[+-]\d+)-(?P<uuid>.+)-(?P<seq>\d{10})$")
#: How many uuids of removed jobs are remembered (so ``get`` of a finished job needs no listing).
_GONE_MEMORY = 10_000
#: Keys per chunk of ``SortedKeys`` (a chunk is split at twice this).
_CHUNK = 512

#: Which watched node an event is about.
JOBS, CLAIMS = "jobs", "claims"
#: ZooKeeper's event types, as a persistent recursive watch delivers them.
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


def job_id(name: str) -> tuple[str, int]:
    """The uuid and the post sequence in a job node name; ``ValueError`` if foreign."""
    match = _NAME.match(name)
    if match is None:
        raise ValueError(f"not a job node name: {name!r}")
    return match["uuid"], int(match["seq"])


def uuid_of(name: str) -> str:
    match = _NAME.match(name)
    if match is None:
        raise ValueError(f"not a job node name: {name!r}")
    return match["uuid"]


class SortedKeys:
    """Keys in order, in chunks, so that adding or removing one costs about the same with a
    hundred thousand keys as with ten (one flat list would move every key after it)."""

    def __init__(self) -> None:
        self._chunks: list[list[Key]] = []
        self._maxes: list[Key] = []
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def add(self, key: Key) -> None:
        if not self._chunks:
            self._chunks, self._maxes = [[key]], [key]
            self._len = 1
            return
        position = min(bisect.bisect_left(self._maxes, key), len(self._maxes) - 1)
        chunk = self._chunks[position]
        bisect.insort(chunk, key)
        self._maxes[position] = chunk[-1]
        self._len += 1
        if len(chunk) > 2 * _CHUNK:
            self._chunks[position:position + 1] = [chunk[:_CHUNK], chunk[_CHUNK:]]
            self._maxes[position:position + 1] = [chunk[_CHUNK - 1], chunk[-1]]

    def load(self, keys: list[Key]) -> None:
        """Add many keys at once (one sort instead of many insertions)."""
        merged = sorted([*self, *keys])
        self._chunks = [merged[i:i + _CHUNK] for i in range(0, len(merged), _CHUNK)]
        self._maxes = [chunk[-1] for chunk in self._chunks]
        self._len = len(merged)

    def remove(self, key: Key) -> None:
        position = bisect.bisect_left(self._maxes, key)
        if position == len(self._maxes):
            return
        chunk = self._chunks[position]
        at = bisect.bisect_left(chunk, key)
        if at == len(chunk) or chunk[at] != key:
            return
        del chunk[at]
        self._len -= 1
        if chunk:
            self._maxes[position] = chunk[-1]
        else:
            del self._chunks[position], self._maxes[position]

    def after(self, key: Key | None = None) -> Iterator[Key]:
        """Keys greater than ``key`` (all when None), in order; don't change the keys while
        iterating."""
        position = 0 if key is None else bisect.bisect_right(self._maxes, key)
        for index in range(position, len(self._chunks)):
            chunk = self._chunks[index]
            start = 0 if key is None or index > position else bisect.bisect_right(chunk, key)
            yield from chunk[start:] if start else chunk

    def __iter__(self) -> Iterator[Key]:
        return self.after(None)


class Index:
    """Job names in claim order, which of them have claim nodes (and until when), what is known
    of delays, and the data of the jobs about to be claimed.

    Claims are kept as a job node name's lease expiry, or None while unknown (not read yet, or
    whether there is a claim node at all is unknown); ``take`` passes over both live and unknown
    claims. Every method is thread-safe; ``cond`` is notified on every change (``generation``
    grows).

    Until ``finish_sync`` has applied listings made on the current connection, ``synced`` is
    False and the board must sync before trusting the index.
    """

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.generation = 0
        self._order = SortedKeys()
        self._keys: dict[str, Key] = {}
        self._by_uuid: dict[str, str] = {}
        self._gone: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._foreign: set[str] = set()
        self._garbage: set[str] = set()
        self._not_before: dict[str, float] = {}
        self._claims: dict[str, float | None] = {}
        self._data: dict[str, Node] = {}
        self._fetching: set[str] = set()
        self._reading: set[str] = set()  # claim nodes being read
        self._writing: set[str] = set()
        self._busy: set[str] = set()
        # Events count up ``_seq``; ``_touched`` says when each node last had one.
        self._seq = 0
        self._touched: dict[str, int] = {}
        self._floor = 0
        self._synced = False
        self._epoch = 0
        self._journal: list[tuple[str, int, str]] | None = None

    def _changed(self) -> None:
        self.generation += 1
        self.cond.notify_all()

    # -- syncing ---------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        return self._synced

    def desync(self) -> None:
        """The connection changed: events may have been missed until the next sync."""
        with self.cond:
            self._epoch += 1
            self._synced = False
            self._journal = None
            self._changed()

    def begin_sync(self) -> int:
        """Start recording events; call before the listings are requested. Returns a token for
        ``finish_sync``."""
        with self.cond:
            self._journal = []
            self._floor = self._seq
            return self._epoch

    def finish_sync(self, epoch: int, jobs: list[str], claims: list[str]) -> list[str] | None:
        """Apply full listings of ``jobs/`` and ``claims/`` and replay on top of them the events
        that came since ``begin_sync``; return the claims to read, or None if the connection
        changed meanwhile (still not synced)."""
        with self.cond:
            journal, self._journal = self._journal, None
            if journal is None or epoch != self._epoch:
                return None
            listed = set(jobs)
            for name in self._keys.keys() - listed:
                self._drop(name)
            self._insert([k for k in map(self._key, listed - self._keys.keys()) if k])
            self._claims = dict.fromkeys(claims)
            self._data.clear()
            self._not_before.clear()
            self._fetching.clear()
            self._reading.clear()
            for root, kind, name in journal:
                self._apply(root, kind, name)
            self._synced = True
            self._changed()
            return [name for name, expires in self._claims.items() if expires is None]

    def abort_sync(self, epoch: int) -> None:
        with self.cond:
            if epoch == self._epoch:
                self._journal = None

    # -- events ----------------------------------------------------------------------------

    def token(self) -> int:
        """Stamp for a read about to be sent (see the module docstring)."""
        return self._seq

    def event(self, root: str, kind: int, name: str) -> None:
        """A watch event about ``root/name`` (``root`` is ``JOBS`` or ``CLAIMS``; ``name`` is
        ``job/child`` for a job node's child)."""
        with self.cond:
            if self._journal is not None:
                self._journal.append((root, kind, name))
            self._seq += 1
            self._touched[name.partition("/")[0]] = self._seq
            self._apply(root, kind, name)
            self._changed()

    def _apply(self, root: str, kind: int, name: str) -> None:
        if root == JOBS:
            job, _, child = name.partition("/")
            if child:
                if child == UNCLAIMED and kind == DELETED:
                    self._claims.pop(job, None)  # the claim just ended: no claim node now
            elif kind == CREATED and name not in self._keys:
                key = self._key(name)
                if key is not None:
                    self._insert([key])
            elif kind == DELETED:
                self._drop(name)
            elif kind == CHANGED:
                # Claimed or abandoned (the only writes to a job node): its data and delay are
                # not known any more, nor whether a claim node exists (read when it matters).
                self._data.pop(name, None)
                self._not_before.pop(name, None)
                self._claims[name] = None
        elif kind == DELETED:
            self._claims.pop(name, None)
        else:
            self._claims[name] = None  # renewed (or replaced): read it, and watch it, again

    # -- this process's own writes and reads -----------------------------------------------

    def add(self, name: str, available_at: float | None, node: Node | None = None) -> None:
        """A job this process just posted (with its data and version, when known)."""
        key = job_key(name)
        if key is None:
            raise ValueError(f"not a job node name: {name!r}")
        with self.cond:
            if name not in self._keys:
                self._insert([key])
            if available_at is not None:
                self._not_before[name] = available_at
            if node is not None:
                self._data[name] = node
            self._changed()

    def remove(self, name: str) -> None:
        """A job known to be gone (consumed, trashed, or found missing)."""
        with self.cond:
            self._drop(name)
            self._claims.pop(name, None)
            self._changed()

    def writing(self, name: str) -> None:
        """This process is about to change the job node ``name`` (claim or abandon it): the
        event that causes needs no read; ``written`` ends that."""
        with self.cond:
            self._writing.add(name)

    def written(self, name: str) -> bool:
        """The write announced by ``writing`` is over (the caller has recorded its outcome with
        ``claimed`` or ``unclaimed``, or it failed). True when whether a claim node exists is
        left unknown, to be read."""
        with self.cond:
            self._writing.discard(name)
            return name in self._keys and name in self._claims and self._claims[name] is None

    def claim_exists(self, name: str) -> bool:
        """A claim attempt found a claim node the index did not know of: True when it should be
        read (nothing is known of it yet)."""
        with self.cond:
            if name in self._claims:
                return False
            self._claims[name] = None
            self._changed()
            return True

    def claimed(self, name: str, expires: float, *, seen: int | None = None) -> None:
        """A claim with this lease expiry: read with token ``seen``, or made or renewed by this
        process just now (``seen`` None)."""
        with self.cond:
            if seen is not None and not (self._fresh(name, seen) and name in self._keys):
                return
            self._claims[name] = expires
            if seen is None:
                self._data.pop(name, None)  # the claim rewrote the job node
            self._changed()

    def reading(self, names: list[str]) -> list[str]:
        """Of ``names``, those whose claim node is not being read already, now marked as being
        read (``read_done`` ends that)."""
        with self.cond:
            fresh = [name for name in names if name not in self._reading]
            self._reading.update(fresh)
            return fresh

    def read_done(self, name: str) -> None:
        with self.cond:
            self._reading.discard(name)

    def no_claim(self, name: str, *, seen: int) -> None:
        """A read with token ``seen`` found no claim node."""
        with self.cond:
            if self._fresh(name, seen) and name in self._claims:
                del self._claims[name]
                self._changed()

    def unclaimed(self, name: str, available_at: float | None = None,
                  node: Node | None = None) -> None:
        """This process ended the job's claim just now; it may be claimed from
        ``available_at`` on (its data and version are now ``node``)."""
        with self.cond:
            self._claims.pop(name, None)
            if available_at is None:
                self._not_before.pop(name, None)
            else:
                self._not_before[name] = available_at
            if node is not None and name in self._keys:
                self._data[name] = node
            self._changed()

    def delayed(self, name: str, available_at: float, *, seen: int) -> None:
        """A read with token ``seen`` found the job delayed until ``available_at``."""
        with self.cond:
            if self._fresh(name, seen) and name in self._keys:
                self._not_before[name] = available_at

    def job_data(self, name: str, node: Node | None, *, seen: int) -> None:
        """A background read of a job node (token ``seen``) came back (None: it failed)."""
        with self.cond:
            self._fetching.discard(name)
            if node is not None and name in self._keys and self._fresh(name, seen):
                self._data[name] = node

    def cached(self, name: str) -> Node | None:
        """The job's data and version, if known and the job is known to have no claim node."""
        with self.cond:
            return None if name in self._claims else self._data.get(name)

    def stale(self, name: str) -> None:
        """A transaction found the cached data of ``name`` out of date."""
        with self.cond:
            self._data.pop(name, None)

    def garbage(self, name: str) -> bool:
        """Mark a job node that cannot be decoded; True the first time (warn then)."""
        with self.cond:
            first = name not in self._garbage
            self._garbage.add(name)
            return first

    def _fresh(self, name: str, seen: int) -> bool:
        return seen >= self._floor and self._touched.get(name, 0) <= seen

    # -- asking ----------------------------------------------------------------------------

    def unknown_claims(self) -> list[str]:
        """Claimed names whose lease expiry has not been read yet."""
        with self.cond:
            return [name for name, expires in self._claims.items() if expires is None]

    def lookup(self, uuid: str) -> str | None:
        with self.cond:
            return self._by_uuid.get(uuid)

    def known_gone(self, uuid: str) -> bool:
        with self.cond:
            return uuid in self._gone

    def forget(self, uuid: str) -> None:
        """Remember that no job has this uuid (any more)."""
        with self.cond:
            self._remember_gone(uuid)

    def count(self) -> int:
        with self.cond:
            return len(self._order)

    def counts(self, now: float) -> tuple[int, int]:
        """How many jobs are known claimed at ``now`` (claims not read yet included) and how
        many known delayed (and not claimed)."""
        with self.cond:
            claimed = sum(1 for expires in self._claims.values()
                          if expires is None or expires > now)
            delayed = sum(1 for name, at in self._not_before.items()
                          if at > now and not self._live_claim(name, now))
            return claimed, delayed

    def _live_claim(self, name: str, now: float) -> bool:
        expires = self._claims.get(name, 0.0)
        return expires is None or expires > now

    def page(self, after: Key | None, now: float, *, only_unclaimed: bool,
             limit: int) -> list[Key]:
        """Up to ``limit`` keys after ``after``; with ``only_unclaimed``, none known to be
        claimed or delayed at ``now`` (claims not read yet are included)."""
        found: list[Key] = []
        with self.cond:
            for key in self._order.after(after):
                if not (only_unclaimed and self._unavailable(key[2], now, unread=False)):
                    found.append(key)
                    if len(found) >= limit:
                        break
        return found

    def take(self, now: float, *, skip: int = 0) -> str | None:
        """Reserve a name that may be claimable for the calling thread, so that this process's
        other claimers try other jobs; ``release`` it afterwards.

        It is the first such name, or the ``skip``-th after it when there are that many:
        claimers that just lost a race spread out instead of all trying the same next job.
        """
        with self.cond:
            found: str | None = None
            for key in self._order:
                name = key[2]
                if name not in self._busy and not self._unavailable(name, now):
                    found = name
                    if skip <= 0:
                        break
                    skip -= 1
            if found is not None:
                self._busy.add(found)
            return found

    def release(self, name: str) -> None:
        with self.cond:
            self._busy.discard(name)

    def to_fetch(self, now: float, limit: int, *,
                 batch: int = 1) -> tuple[list[str], list[str]]:
        """What to read ahead of the next claims: the job nodes, among the next ``limit``
        candidates (not reserved), whose data is neither known nor being read, if there are at
        least ``batch`` of them or the first candidate is one (marked as being read until
        ``job_data``); and the claim nodes in unknown state among the jobs before them (not
        marked: see ``reading``)."""
        jobs: list[str] = []
        claims: list[str] = []
        urgent = False
        with self.cond:
            seen = 0
            for key in self._order:
                name = key[2]
                if name in self._busy:
                    continue
                if name in self._claims and self._claims[name] is None:
                    if name not in self._reading and name not in self._writing:
                        claims.append(name)
                    continue
                if self._unavailable(name, now):
                    continue
                if name not in self._data and name not in self._fetching:
                    jobs.append(name)
                    urgent = urgent or seen == 0
                seen += 1
                if seen >= limit:
                    break
            if not urgent and len(jobs) < batch:
                jobs = []
            self._fetching.update(jobs)
        return jobs, claims

    # -- internals -------------------------------------------------------------------------

    def _unavailable(self, name: str, now: float, *, unread: bool = True) -> bool:
        """Known to be unclaimable at ``now``; a claim not read yet counts as live if
        ``unread``."""
        if name in self._garbage or self._not_before.get(name, now) > now:
            return True
        if name not in self._claims:
            return False
        expires = self._claims[name]
        return unread if expires is None else expires > now

    def _key(self, name: str) -> Key | None:
        key = job_key(name)
        if key is None and name not in self._foreign:
            self._foreign.add(name)
            logger.warning("ignoring a node with a foreign name under jobs/: %r", name)
        return key

    def _insert(self, keys: list[Key]) -> None:
        for key in keys:
            self._keys[key[2]] = key
            self._by_uuid[uuid_of(key[2])] = key[2]
        if len(keys) > 32:
            self._order.load(keys)
        else:
            for key in keys:
                self._order.add(key)

    def _drop(self, name: str) -> None:
        key = self._keys.pop(name, None)
        if key is None:
            return
        self._order.remove(key)
        uuid = uuid_of(name)
        self._by_uuid.pop(uuid, None)
        self._remember_gone(uuid)
        for table in (self._not_before, self._data, self._touched, self._claims):
            table.pop(name, None)
        self._garbage.discard(name)
        self._fetching.discard(name)
        self._reading.discard(name)

    def _remember_gone(self, uuid: str) -> None:
        self._gone[uuid] = None
        if len(self._gone) > _GONE_MEMORY:
            self._gone.popitem(last=False)
