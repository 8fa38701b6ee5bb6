"""Background renewal of claim leases, and of the conductor's entity registration.

One thread per running conductor renews every claim it holds about every TTL/3. A claim whose
renewal is refused (``NotOwner``/``NotFound``), or whose lease deadline passes while the board
cannot be reached, is marked lost; the job's engine checks that mark, and the deadline, at every
atom boundary and suspends, so a conductor never keeps running a job another conductor may now
hold.

The deadline a lease is trusted to is its TTL after the start of its last successful renewal,
capped by the board's ``lease_cap`` (the ZooKeeper session timeout: the server ends the claim
with the session, whatever its TTL). When the board reports ``CLAIMS_LOST`` (a new session, or
a connection suspended for longer than the session could last), every lease is marked lost.

Leases are keyed by (job, fence): a conductor that lost a claim may claim the same job again
(a new fence) before the run holding the old claim has ended, and ending that run removes its
own lease object only, never the newer claim's.

A renewal also brings back the job's cancel mark (``JobBoard.cancel``): the lease keeps it in
``cancelled``, and the job's engine suspends at its next atom boundary, as for a lost claim; the
conductor then trashes the job with the mark as its reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from legato import errors
from legato.jobboard.base import CLAIMS_LOST, Job, JobBoard

__all__ = ["Lease", "Renewer"]

logger = logging.getLogger(__name__)


class Lease:
    """One claim held by a conductor: the job (carrying its fence) and whether it was lost.

    Attributes:
        job: the claimed job, as ``claim_next`` returned it.
        ttl: the claim's lease length in seconds.
        lost: set once the claim can no longer be relied on.
        trusted_for: how long the lease is trusted after a claim or renewal was sent: ``ttl``,
            capped by the board's ``lease_cap``.
        deadline: ``time.monotonic()`` value by which the lease ends unless renewed.
        cancelled: the job's cancel mark (the reason to trash it with) once the claim or a
            renewal brought one, else None.
        claimed_at: ``time.monotonic()`` value when the claim was sent.
        key: (job uuid, fence): what tells this claim from any other claim of the same job.
    """

    def __init__(self, job: Job, ttl: float, *, claimed_at: float,
                 cap: float | None = None) -> None:
        self.job = job
        self.key: tuple[str, int | None] = (job.uuid, job.fence)
        self.ttl = ttl
        self.claimed_at = claimed_at
        #: The claim's history record (``conductor._history.ClaimLog``), set by the conductor.
        self.history: Any = None
        self.lost = threading.Event()
        self.trusted_for = ttl if cap is None else min(ttl, cap)
        self.deadline = claimed_at + self.trusted_for
        self.next_renewal = claimed_at + self.trusted_for / 3
        self.cancelled: str | None = job.cancel_requested

    def trusted(self) -> bool:
        """Whether the claim may still be relied on: not lost, and its deadline not passed
        (a process paused past it, say, before the renewer could notice)."""
        return not self.lost.is_set() and time.monotonic() < self.deadline

    def __repr__(self) -> str:
        return f"<Lease {self.job.uuid} fence={self.job.fence} lost={self.lost.is_set()}>"


class Renewer:
    """Renews the leases of one conductor from a daemon thread.

    Args:
        board: the jobboard the claims were made on.
        owner: the claims' owner string.
        period: how often the thread wakes, in seconds (about TTL/6; at most a sixth of the
            board's ``lease_cap``).
        on_tick: called on every wake-up (the conductor refreshes its entity there).
        on_error: called with every jobboard error raised while renewing (for counters).
        on_lost: called with each lease found lost.
    """

    def __init__(self, board: JobBoard, owner: str, *, period: float,
                 on_tick: Callable[[], None] | None = None,
                 on_error: Callable[[Exception], None] | None = None,
                 on_lost: Callable[[Lease], None] | None = None) -> None:
        self._board = board
        self._owner = owner
        cap = board.lease_cap  # leases renew every third of it at most: wake twice as often
        self._period = period if cap is None else min(period, cap / 6)
        self._on_tick = on_tick
        self._on_error = on_error
        self._on_lost = on_lost
        self._leases: dict[tuple[str, int | None], Lease] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Set while renewal is paused (tests use this to let a lease lapse on purpose).
        self.paused = threading.Event()

    def start(self) -> None:
        self._stop.clear()
        self._board.notifier.register(CLAIMS_LOST, self._all_lost)
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name=f"legato-renewer-{self._owner}")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._board.notifier.deregister(CLAIMS_LOST, self._all_lost)
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def add(self, job: Job, ttl: float, *, claimed_at: float) -> Lease:
        """Start renewing the claim ``job`` carries (its uuid and fence); return its lease."""
        lease = Lease(job, ttl, claimed_at=claimed_at, cap=self._board.lease_cap)
        with self._lock:
            self._leases[lease.key] = lease
        return lease

    def remove(self, lease: Lease) -> None:
        """Stop renewing ``lease``: only that object, never another claim of the same job."""
        key = lease.key
        if self._leases.get(key) is not lease:  # removed already (only remove() deletes it)
            return
        with self._lock:
            if self._leases.get(key) is lease:
                del self._leases[key]

    def held(self, job_uuid: str) -> list[Lease]:
        """The leases held on the job, oldest claim (lowest fence) first."""
        if not self._leases:  # the usual case on a claim, read without the lock
            return []
        with self._lock:
            found = [lease for lease in self._leases.values() if lease.job.uuid == job_uuid]
        return sorted(found, key=lambda lease: lease.job.fence or 0)

    def lose(self, lease: Lease) -> None:
        """Mark ``lease`` lost (once: ``on_lost`` is called the first time only)."""
        with self._lock:
            if lease.lost.is_set():
                return
            lease.lost.set()
        if self._on_lost is not None:
            self._on_lost(lease)

    def _loop(self) -> None:
        while not self._stop.wait(self._period):
            if self._on_tick is not None:
                try:
                    self._on_tick()
                except Exception:  # the tick is a best-effort refresh; never kill renewal
                    logger.exception("conductor refresh failed")
            if not self.paused.is_set():
                self.renew_due()

    def renew_due(self) -> None:
        """Renew every lease whose renewal time has come."""
        with self._lock:
            leases = list(self._leases.values())
        for lease in leases:
            if not lease.lost.is_set() and time.monotonic() >= lease.next_renewal:
                self._renew(lease)

    def _renew(self, lease: Lease) -> None:
        started = time.monotonic()
        try:
            mark = self._board.renew(lease.job, self._owner, lease.ttl)
        except (errors.NotOwner, errors.NotFound, errors.BoardDataLost) as exc:
            log = logger.error if isinstance(exc, errors.BoardDataLost) else logger.warning
            log("claim on job %s (fence %s) lost: %s", lease.job.uuid, lease.job.fence, exc)
            self._report(exc)
            self.lose(lease)
        except Exception as exc:  # board unreachable or failing: lost only once the lease ends
            self._report(exc)
            if time.monotonic() + self._period / 2 >= lease.deadline:
                logger.warning("claim on job %s lapsed while the board failed: %s",
                               lease.job.uuid, exc)
                self.lose(lease)
            else:
                logger.warning("renewing the claim on job %s failed (will retry): %s",
                               lease.job.uuid, exc)
        else:
            lease.deadline = started + lease.trusted_for
            lease.next_renewal = started + lease.trusted_for / 3
            if mark is not None and lease.cancelled is None:
                lease.cancelled = mark  # before saying so: what the log says has happened
                logger.warning("job %s (fence %s) %s: suspending it", lease.job.uuid,
                               lease.job.fence, mark)

    def _all_lost(self, _event: str, details: dict[str, object]) -> None:
        """The board reported that every claim made through it ended (``CLAIMS_LOST``)."""
        with self._lock:
            leases = list(self._leases.values())
        for lease in leases:
            if not lease.lost.is_set():
                logger.warning("claim on job %s lost: %s", lease.job.uuid, details.get("reason"))
                self.lose(lease)

    def _report(self, exc: Exception) -> None:
        if self._on_error is not None:
            self._on_error(exc)
