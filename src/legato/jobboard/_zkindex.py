"""The ZooKeeper board's in-memory view of the board, kept current by child watches.

Pure Python, no I/O: ``ZooKeeperJobBoard`` feeds it the children of ``jobs/`` and ``claims/``
(from watches, or from its own writes at once) and asks it for the next candidate to claim. Job
node names carry the priority, the uuid and the post sequence, so the order needs no reads.
"""

from __future__ import annotations

import bisect
import collections
import logging
import re
import threading
import time

__all__ = ["Index", "job_key", "job_name_prefix", "uuid_of"]

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^job-(?P<priority>[+-]\d+)-(?P<uuid>.+)-(?P<seq>\d{10})$")
#: How many uuids of removed jobs are remembered (so ``get`` of a finished job needs no listing).
_GONE_MEMORY = 10_000

Key = tuple[int, int, str]


def job_name_prefix(priority: int, uuid: str) -> str:
    """The name a job node is created with (ZooKeeper appends a 10-digit sequence)."""
    return f"job-{priority:+d}-{uuid}-"


def job_key(name: str) -> Key | None:
    """Sort key of a job node name (higher priority first, then oldest post); None if foreign."""
    match = _NAME.match(name)
    if match is None:
        return None
    return (-int(match["priority"]), int(match["seq"]), name)


def uuid_of(name: str) -> str:
    match = _NAME.match(name)
    if match is None:
        raise ValueError(f"not a job node name: {name!r}")
    return match["uuid"]


class Index:
    """Job names in claim order, which of them have claim nodes, and what is known of delays.

    ``claims`` maps a claimed job's node name to its lease expiry, or None until that is read.
    Every method is thread-safe; ``cond`` is notified on every change (``generation`` grows).
    """

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.generation = 0
        self._order: list[Key] = []
        self._keys: dict[str, Key] = {}
        self._by_uuid: dict[str, str] = {}
        # Names removed here that a listing fetched before their deletion may still show.
        self._removed: set[str] = set()
        self._gone: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._foreign: set[str] = set()
        self._claims: dict[str, float | None] = {}
        # This process's own claim changes, (time.monotonic(), expiry or None if ended), until
        # a listing requested after them arrives.
        self._local: dict[str, tuple[float, float | None]] = {}
        self._busy: set[str] = set()
        self._not_before: dict[str, float] = {}
        self._garbage: set[str] = set()

    def _changed(self) -> None:
        self.generation += 1
        self.cond.notify_all()

    # -- feeding ---------------------------------------------------------------------------

    def set_jobs(self, children: list[str]) -> None:
        """The full listing of ``jobs/``."""
        listed = set(children)
        with self.cond:
            self._removed &= listed
            listed -= self._removed
            for name in self._keys.keys() - listed:
                self._drop(name)
            keys = [self._key(name) for name in listed - self._keys.keys()]
            self._insert([k for k in keys if k is not None])
            self._changed()

    def set_claims(self, children: list[str], *, issued: float,
                   watch_fired: bool = False) -> list[str]:
        """The full listing of ``claims/``, requested at ``issued`` (``time.monotonic()``);
        returns the names whose lease expiry is not known yet.

        What this process itself did to a claim after ``issued`` overrides the listing, which
        cannot show it yet. ``watch_fired``: the listing follows a change event.
        """
        listed = set(children)
        with self.cond:
            for name, (mark, expires) in list(self._local.items()):
                if mark <= issued:
                    del self._local[name]  # the listing knows it already
                elif expires is None:
                    listed.discard(name)
                else:
                    listed.add(name)
            # A job node changes only while its claim node comes or goes: forget its delay.
            changed = listed ^ self._claims.keys()
            for name in changed:
                self._not_before.pop(name, None)
            if watch_fired and not changed:
                # A claim came and went (or was replaced) between two listings: what was read
                # of delays and lease expiries may be stale.
                self._not_before.clear()
                self._claims = {name: self._claims[name] if name in self._local else None
                                for name in self._claims}
            self._claims = {name: self._claims.get(name) for name in listed}
            self._changed()
            return [name for name, expires in self._claims.items() if expires is None]

    def add(self, name: str, available_at: float | None) -> None:
        """A job this process just posted."""
        key = job_key(name)
        if key is None:
            raise ValueError(f"not a job node name: {name!r}")
        with self.cond:
            if name not in self._keys:
                self._insert([key])
            if available_at is not None:
                self._not_before[name] = available_at
            self._changed()

    def remove(self, name: str) -> None:
        """A job known to be gone (consumed, trashed, or found missing)."""
        with self.cond:
            self._removed.add(name)
            self._drop(name)
            self._claims.pop(name, None)
            self._local.pop(name, None)
            self._changed()

    def claimed(self, name: str, expires: float, *, seen_at: float | None = None) -> None:
        """A claim with this lease expiry: read by a request sent at ``seen_at``, or made or
        renewed by this process just now (``seen_at`` None)."""
        with self.cond:
            if seen_at is None:
                self._local[name] = (time.monotonic(), expires)
            elif name in self._local and self._local[name][0] > seen_at:
                return  # a read that started before our own change to this claim
            elif name not in self._claims and name not in self._keys:
                return  # the job is gone (or not listed yet): nothing to remember
            self._claims[name] = expires

    def unclaimed(self, name: str, available_at: float | None = None) -> None:
        """This process ended the job's claim just now; it may be claimed from
        ``available_at`` on."""
        with self.cond:
            self._local[name] = (time.monotonic(), None)
            self._claims.pop(name, None)
            if available_at is None:
                self._not_before.pop(name, None)
            else:
                self._not_before[name] = available_at
            self._changed()

    def delayed(self, name: str, available_at: float) -> None:
        with self.cond:
            self._not_before[name] = available_at

    def garbage(self, name: str) -> bool:
        """Mark a job node that cannot be decoded; True the first time (warn then)."""
        with self.cond:
            first = name not in self._garbage
            self._garbage.add(name)
            return first

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

    def page(self, after: Key | None, now: float, *, only_unclaimed: bool,
             limit: int) -> list[Key]:
        """Up to ``limit`` keys after ``after``; with ``only_unclaimed``, none known to be
        claimed or delayed at ``now``."""
        found: list[Key] = []
        with self.cond:
            start = 0 if after is None else bisect.bisect_right(self._order, after)
            for position in range(start, len(self._order)):
                key = self._order[position]
                if not (only_unclaimed and self._unavailable(key[2], now)):
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

    # -- internals -------------------------------------------------------------------------

    def _unavailable(self, name: str, now: float) -> bool:
        if name in self._garbage or self._not_before.get(name, now) > now:
            return True
        if name not in self._claims:
            return False
        expires = self._claims[name]
        # An unread claim is tried: the claim attempt reads it and records its expiry.
        return expires is not None and expires > now

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
        if len(keys) > 32:  # a bulk load: one sort beats many insertions
            self._order.extend(keys)
            self._order.sort()
        else:
            for key in keys:
                bisect.insort(self._order, key)

    def _drop(self, name: str) -> None:
        key = self._keys.pop(name, None)
        if key is None:
            return
        position = bisect.bisect_left(self._order, key)
        if position < len(self._order) and self._order[position] == key:
            del self._order[position]
        uuid = uuid_of(name)
        self._by_uuid.pop(uuid, None)
        self._remember_gone(uuid)
        self._not_before.pop(name, None)
        self._garbage.discard(name)

    def _remember_gone(self, uuid: str) -> None:
        self._gone[uuid] = None
        if len(self._gone) > _GONE_MEMORY:
            self._gone.popitem(last=False)
