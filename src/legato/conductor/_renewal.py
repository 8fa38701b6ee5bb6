"""Background renewal of claim leases, and of the conductor's entity registration.

One thread per running conductor renews every claim it holds about every TTL/3. A claim whose
renewal is refused (``NotOwner``/``NotFound``), or whose lease deadline passes while the board
cannot be reached, is marked lost; the job's engine checks that mark at every atom boundary and
suspends, so a conductor never keeps running a job another conductor may now hold.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from legato import errors
from legato.jobboard.base import Job, JobBoard

__all__ = ["Lease", "Renewer"]

logger = logging.getLogger(__name__)


class Lease:
    """One claim held by a conductor: the job (carrying its fence) and whether it was lost.

    Attributes:
        job: the claimed job, as ``claim_next`` returned it.
        ttl: the claim's lease length in seconds.
        lost: set once the claim can no longer be relied on.
        deadline: ``time.monotonic()`` value by which the lease ends unless renewed.
    """

    def __init__(self, job: Job, ttl: float, *, claimed_at: float) -> None:
        self.job = job
        self.ttl = ttl
        self.lost = threading.Event()
        self.deadline = claimed_at + ttl
        self.next_renewal = claimed_at + ttl / 3

    def __repr__(self) -> str:
        return f"<Lease {self.job.uuid} lost={self.lost.is_set()}>"


class Renewer:
    """Renews the leases of one conductor from a daemon thread.

    Args:
        board: the jobboard the claims were made on.
        owner: the claims' owner string.
        period: how often the thread wakes, in seconds (about TTL/3).
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
        self._period = period
        self._on_tick = on_tick
        self._on_error = on_error
        self._on_lost = on_lost
        self._leases: dict[str, Lease] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Set while renewal is paused (tests use this to let a lease lapse on purpose).
        self.paused = threading.Event()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name=f"legato-renewer-{self._owner}")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def add(self, job: Job, ttl: float, *, claimed_at: float) -> Lease:
        lease = Lease(job, ttl, claimed_at=claimed_at)
        with self._lock:
            self._leases[job.uuid] = lease
        return lease

    def remove(self, lease: Lease) -> None:
        with self._lock:
            self._leases.pop(lease.job.uuid, None)

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
            self._board.renew(lease.job, self._owner, lease.ttl)
        except (errors.NotOwner, errors.NotFound, errors.BoardDataLost) as exc:
            log = logger.error if isinstance(exc, errors.BoardDataLost) else logger.warning
            log("claim on job %s lost: %s", lease.job.uuid, exc)
            self._report(exc)
            self._lose(lease)
        except Exception as exc:  # board unreachable or failing: lost only once the lease ends
            self._report(exc)
            if time.monotonic() + self._period / 2 >= lease.deadline:
                logger.warning("claim on job %s lapsed while the board failed: %s",
                               lease.job.uuid, exc)
                self._lose(lease)
            else:
                logger.warning("renewing the claim on job %s failed (will retry): %s",
                               lease.job.uuid, exc)
        else:
            lease.deadline = started + lease.ttl
            lease.next_renewal = started + lease.ttl / 3

    def _lose(self, lease: Lease) -> None:
        lease.lost.set()
        if self._on_lost is not None:
            self._on_lost(lease)

    def _report(self, exc: Exception) -> None:
        if self._on_error is not None:
            self._on_error(exc)
