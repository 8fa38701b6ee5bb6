"""Claiming ahead: the blocking conductor keeps the board working while it runs the next job.

A conductor that runs one job at a time, on the thread of its claim loop, can let the call that
finishes a job also claim the next one (``JobBoard.consume_and_claim_next``: one round trip
instead of two). On boards that answer later (``Capabilities.sends_without_waiting``: Redis,
ZooKeeper) it can go further: after a short job, the consume is sent without waiting and claims
one job *ahead*, and its answer is read when the next job ends, so the board's round trip
overlaps the next job's run. Where sends are pipelined (``Capabilities.pipelined_sends``: kazoo)
two such calls are kept in flight, and one more for each further call the board gathers into one
request (``Capabilities.gathered_sends``: two consumes per ZooKeeper ``multi``). ``ClaimAhead``
is that pipeline; only ``BlockingConductor`` owns one.

Threads. Everything but ``release_stale`` belongs to the conductor's claim loop: the thread
that called ``start`` (``run()``'s, which also runs every job). The job handed to the next
dispatch (``take``) and the room left under ``max_dispatches`` are kept without a lock, which is
correct only because one thread both finishes jobs and dispatches the next; two jobs finishing
at once on other threads would overwrite each other's claimed job, which would then be neither
run nor released. So those methods check their thread and raise ``RuntimeError`` from any other.
The calls in flight and the jobs claimed ahead are shared with the renewer thread, which hands
back jobs held too long (``release_stale``): they are kept under a lock.
"""

from __future__ import annotations

import collections
import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from legato import errors
from legato.conductor._job import Action, Outcome
from legato.jobboard.base import Job, JobBoard, Pending

if TYPE_CHECKING:
    from legato.conductor._renewal import Lease
    from legato.persistence.base import Persistence

__all__ = ["ClaimAhead", "board_sends"]

logger = logging.getLogger(__name__)

#: ``complete(lease, persistence, outcome, call)``: make the finishing board ``call`` for the
#: lease's job and emit its event (the conductor's ``_complete``).
Complete = Callable[["Lease", "Persistence", Outcome, Callable[[], None]], None]
#: A claimed job with the ``time.monotonic()`` value when its claim was sent.
Claimed = tuple[Job, float]


def board_sends(board: JobBoard) -> tuple[bool, int]:
    """What the board's sends allow: (answers come later, how many calls to keep in flight).
    The one place the pipeline reads the board's capabilities: one call, or, where sends are
    pipelined, two, plus one for each further call gathered into one request (the answer
    read when a job ends must have been sent a job earlier)."""
    capabilities = board.CAPABILITIES
    if not capabilities.pipelined_sends:
        return capabilities.sends_without_waiting, 1
    return True, 1 + max(1, capabilities.gathered_sends)


class ClaimAhead:
    """The claim-ahead pipeline of one conductor (see the module docstring for threads).

    Args:
        board: the board jobs are claimed from.
        owner: the claims' owner (the conductor entity's name).
        claim_ttl: the claims' TTL (the board's when None).
        below: after a job that ran for less than this many seconds, its consume claims one
            job ahead; 0 never does (a consume still claims the next job in the same call).
            Only on boards whose answers come later; elsewhere it is 0.
        hold: a job claimed ahead that has not started after this many seconds is released
            (``release_stale``), at most a quarter of the TTL (see ``start``).
        complete: the conductor's finishing call (see ``Complete``).
        release: hands back a job claimed but never started (uncounted).
        stopping: set once the conductor is stopping: nothing more is claimed, and jobs
            claimed ahead are released.
    """

    def __init__(self, board: JobBoard, owner: str, *, claim_ttl: float | None, below: float,
                 hold: float, complete: Complete, release: Callable[[Job], None],
                 stopping: threading.Event) -> None:
        later, depth = board_sends(board)
        self._board = board
        self._owner = owner
        self._claim_ttl = claim_ttl
        self.below = below if later else 0.0
        self._max_hold = hold
        self.hold = hold
        self._complete = complete
        self._release = release
        self._stopping = stopping
        # Calls kept in flight while a job runs (see ``board_sends``).
        self._depth = depth
        # Claim loop only: the thread, the next job to dispatch, and how many more jobs may
        # be claimed in this run() (None: no limit).
        self._thread: int | None = None
        self._handoff: Claimed | None = None
        self._room: int | None = 0
        # Shared with the renewer thread, under _lock: finishing calls in flight (oldest
        # first) and jobs their answers claimed that have not started.
        self._lock = threading.Lock()
        self._sent: collections.deque[_Sent] = collections.deque()
        self._ready: collections.deque[Claimed] = collections.deque()

    # -- the claim loop's calls ------------------------------------------------------------

    def start(self, ttl: float) -> None:
        """Bind the pipeline to the calling thread (the claim loop) for one ``run()``."""
        self._thread = threading.get_ident()
        self.hold = min(self._max_hold, ttl / 4)
        self._room = 0

    def dispatched(self, room: int | None) -> None:
        """A job was dispatched; ``room`` more may be (None: no limit)."""
        if self._thread is not None and threading.get_ident() != self._thread:
            self._check_thread()
        self._room = room

    def take(self) -> Claimed | None:
        """The job claimed for the next dispatch, if any (and forget it)."""
        if self._thread is not None and threading.get_ident() != self._thread:
            self._check_thread()
        handoff, self._handoff = self._handoff, None
        return handoff

    def release_all(self) -> None:
        """Read every answer in flight and release every job claimed and not started."""
        self._check_thread()
        self._release_held()
        handoff, self._handoff = self._handoff, None
        if handoff is not None:
            self._release(handoff[0])

    def stop(self) -> None:
        """The run is over: claim nothing more, release what was claimed."""
        self._check_thread()
        self._room = 0
        self.release_all()
        self._thread = None

    def finish(self, lease: Lease, persistence: Persistence, outcome: Outcome,
               call: Callable[[], None], *, ran_for: float | None) -> None:
        """Finish ``lease``'s job with ``call`` (the plain board call for ``outcome``),
        reading the answers in flight first; a consume claims the next job in the same
        call, or, after a short job (``ran_for`` < ``below``), is sent without waiting and
        claims one ahead."""
        if self._thread is not None and threading.get_ident() != self._thread:
            self._check_thread()
        room = self._room
        short = (outcome.action is Action.CONSUME and ran_for is not None
                 and ran_for < self.below and (room is None or room >= 2)
                 and not self._stopping.is_set())
        if short and self._depth > 1 and self._send_then_read(lease, persistence, outcome, room):
            return
        ahead = self._take_ahead()  # the previous job's consume, and a job claimed ahead
        stopping = self._stopping.is_set()
        if outcome.action is Action.CONSUME and not stopping:
            if short and self._send_ahead(lease, persistence, outcome, ahead, room):
                return
            if ahead is None and (room is None or room >= 1):
                call = functools.partial(self._consume_and_claim, lease.job)
        self._complete(lease, persistence, outcome, call)
        if stopping:
            if ahead is not None:
                self._release(ahead[0])
            self._release_held()
        elif ahead is not None:
            self._handoff = ahead

    def wants_next(self) -> bool:
        """Whether the consume of the running job, made in the transaction recording its
        flow's end, should claim the next job too: nothing is claimed ahead or held, there is
        room under ``max_dispatches``, and the conductor is not stopping. False off the claim
        loop's thread."""
        if self._thread is not None and threading.get_ident() != self._thread:
            return False
        room = self._room
        with self._lock:
            held = len(self._sent) + len(self._ready)
        return (held == 0 and self._handoff is None and (room is None or room >= 1)
                and not self._stopping.is_set())

    def finish_consumed(self, lease: Lease, persistence: Persistence, outcome: Outcome,
                        call: Callable[[], None], following: Claimed | None) -> None:
        """Finish ``lease``'s job, consumed already with its flow's end (``call`` only
        announces it); ``following``, the job that transaction claimed, runs next (or is
        released when stopping)."""
        self._check_thread()
        ahead = self._take_ahead()
        self._complete(lease, persistence, outcome, call)
        held = [claimed for claimed in (ahead, following) if claimed is not None]
        if self._stopping.is_set():
            for job, _ in held:
                self._release(job)
            self._release_held()
            return
        if held:
            self._handoff = held[0]
            with self._lock:
                self._ready.extend(held[1:])

    # -- the renewer's call ----------------------------------------------------------------

    def release_stale(self) -> None:
        """Release the jobs claimed ahead that have waited ``hold`` seconds (the job running
        meanwhile turned out long); give up at once when the claim loop is reading answers.
        Any thread."""
        if self._sent or self._ready:
            self._release_held(held_for=self.hold, wait=False)

    # -- inside ----------------------------------------------------------------------------

    def _check_thread(self) -> None:
        if self._thread is not None and threading.get_ident() != self._thread:
            raise RuntimeError("ClaimAhead belongs to its conductor's claim loop thread; it "
                               f"was called from {threading.current_thread().name!r}")

    def _consume_and_claim(self, job: Job) -> None:
        """Consume ``job`` and claim the next one in one board call; the claim loop picks the
        new job up as its next dispatch (or releases it if ``stop()`` came meanwhile)."""
        claimed_at = time.monotonic()
        following = self._board.consume_and_claim_next(job, self._owner, ttl=self._claim_ttl)
        if following is not None:
            self._handoff = (following, claimed_at)

    def _send_ahead(self, lease: Lease, persistence: Persistence, outcome: Outcome,
                    ahead: Claimed | None, room: int | None) -> bool:
        """Consume ``lease``'s job and claim one more, without waiting: the answer is read
        when the next job ends (``_take_ahead``). The next job is the one claimed ahead
        before or, when there is none, one claimed now (and, where ``_depth`` calls are kept
        in flight, as many more as make them up); False (nothing sent) when there is no next
        job to run meanwhile, or when claiming one more could pass ``max_dispatches``."""
        if ahead is None:
            count = self._depth if room is None else min(self._depth, room - 1)
            claimed = self._claim_now(count) if count > 0 else []
            if not claimed:
                return False
            ahead = claimed[0]
            with self._lock:
                self._ready.extend(claimed[1:])
        elif room is not None:
            with self._lock:
                held = len(self._sent) + len(self._ready) + 1
            if held + 1 > room:
                return False
        sent = self._send(lease, persistence, outcome)
        with self._lock:
            self._sent.append(sent)
        self._handoff = ahead
        return True

    def _claim_now(self, count: int) -> list[Claimed]:
        """Up to ``count`` jobs claimed one after another (fewer when the board has fewer or
        fails: the claim loop retries with back-off)."""
        claimed: list[Claimed] = []
        while len(claimed) < count:
            claimed_at = time.monotonic()
            try:
                job = self._board.claim_next(self._owner, ttl=self._claim_ttl)
            except Exception as exc:
                log = logger.error if isinstance(exc, errors.BoardDataLost) else logger.debug
                log("%s: claim before consuming ahead failed: %s", self._owner, exc)
                break
            if job is None:
                break
            claimed.append((job, claimed_at))
        return claimed

    def _send_then_read(self, lease: Lease, persistence: Persistence, outcome: Outcome,
                        room: int | None) -> bool:
        """Where sends are pipelined: send this job's consume (claiming one more) before
        reading earlier answers, so that one wake-up of the board client's I/O thread carries
        both, and keep ``_depth`` calls in flight: the answer read now was sent a job earlier
        and is in already. False (nothing sent) when nothing is in flight or ready, or when
        claiming one more could pass ``max_dispatches``."""
        with self._lock:
            held = len(self._sent) + len(self._ready)
        if held == 0 or (room is not None and held + 1 > room):
            return False
        sent = self._send(lease, persistence, outcome)
        with self._lock:
            self._sent.append(sent)
            while len(self._sent) > self._depth or (self._sent and not self._ready):
                self._settle_oldest()
            self._handoff = self._ready.popleft() if self._ready else None
        return True

    def _send(self, lease: Lease, persistence: Persistence, outcome: Outcome) -> _Sent:
        """Send the consume of ``lease``'s job, claiming one more, without waiting; the
        ``outcome`` (its reason) is emitted with ``job_consumed`` when the answer is read."""
        sent_at = time.monotonic()
        try:
            pending = self._board.consume_and_claim_next_async(lease.job, self._owner,
                                                               ttl=self._claim_ttl)
        except Exception as exc:  # e.g. a closed board: an answer like the board's others
            pending = Pending.failed(exc)
        return _Sent(pending, lease, persistence, outcome, sent_at, self._board, self._owner)

    def _take_ahead(self) -> Claimed | None:
        """Read the answers of the finishing calls in flight (emitting their jobs' events);
        the first job they (or earlier ones) claimed ahead, if any. Other such jobs stay
        ready for the next dispatches."""
        with self._lock:
            while self._sent:
                self._settle_oldest()
            return self._ready.popleft() if self._ready else None

    def _settle_oldest(self) -> None:
        """Read the oldest answer in flight and emit its job's event; the job it claimed, if
        any, is ready to run. Called with ``_lock`` held."""
        sent = self._sent.popleft()
        self._complete(sent.lease, sent.persistence, sent.outcome, sent.answer)
        if sent.claimed is not None:
            self._ready.append((sent.claimed, sent.sent_at))

    def _release_held(self, *, held_for: float = 0.0, wait: bool = True) -> None:
        """Read every answer in flight and release the jobs claimed ahead that have waited
        ``held_for`` seconds or more (all of them by default). Without ``wait``, give up at
        once when the claim loop is reading answers itself."""
        if not self._lock.acquire(blocking=wait):
            return
        try:
            now = time.monotonic()
            if held_for and not any(now - s.sent_at >= held_for for s in self._sent) \
                    and not any(now - at >= held_for for _, at in self._ready):
                return
            while self._sent:
                self._settle_oldest()
            stale = [held for held in self._ready if now - held[1] >= held_for]
            for held in stale:
                self._ready.remove(held)
        finally:
            self._lock.release()
        for job, _ in stale:
            self._release(job)


class _Sent:
    """A consume sent without waiting that also claims a job ahead (``_send_ahead``)."""

    __slots__ = ("board", "claimed", "lease", "outcome", "owner", "pending", "persistence",
                 "read", "sent_at")

    def __init__(self, pending: Pending[Job | None], lease: Lease, persistence: Persistence,
                 outcome: Outcome, sent_at: float, board: JobBoard, owner: str) -> None:
        self.pending = pending
        self.lease = lease
        self.persistence = persistence
        self.outcome = outcome
        self.sent_at = sent_at
        self.board = board
        self.owner = owner
        self.read = False
        #: The job the answer claimed, once read.
        self.claimed: Job | None = None

    def answer(self) -> None:
        """The finishing call ``_settle_oldest`` makes: read the answer; when it was read already
        and lost (a transient error, the call retried), consume again."""
        if not self.read:
            self.read = True
            self.claimed = self.pending.result()
        else:
            self.board.consume(self.lease.job, self.owner)
