"""The executor conductor: a claim loop that hands each claimed job to an executor.

Per job: rebuild the flow through the factory policy, build the engine, compile, prepare,
validate and run it (suspending at the next atom boundary on ``stop()`` or a lost claim), then
consume, abandon (with back-off) or trash the job. See ``ExecutorConductor`` for the outcome table.
"""

from __future__ import annotations

import abc
import collections
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent import futures
from typing import TYPE_CHECKING, Any

from legato import engine as engine_mod
from legato import errors
from legato._redact import redact
from legato.conductor import _job
from legato.conductor._backoff import Backoff
from legato.conductor._history import ClaimLog
from legato.conductor._job import Action, Cause, Outcome, Tally
from legato.conductor._renewal import Lease, Renewer
from legato.conductor._tracing import JobTracing
from legato.conductor.base import Conductor
from legato.jobboard.base import Job, JobBoard, Pending
from legato.notifier import ANY
from legato.persistence.models import FlowDetail
from legato.states import FlowState

if TYPE_CHECKING:
    from legato.conductor._metrics import ConductorMetrics
    from legato.persistence.base import Persistence

__all__ = ["ExecutorConductor"]

logger = logging.getLogger(__name__)

#: Statistics keys (``ExecutorConductor.statistics``).
STATISTICS = ("dispatched", "consumed", "abandoned", "trashed", "cancelled", "board_errors",
              "claims_lost", "paused")


class ExecutorConductor(Conductor):
    """Dispatches jobs from the blocking ``run()`` method to some executor.

    This conductor claims jobs from the board one at a time (``claim_next``, whose cost does not
    grow with the backlog), idles in ``jobboard.wait(wait_timeout)`` when there are none, works
    on each job using an executor and then consumes, abandons or trashes it:

    ====================================================================  =====================
    outcome                                                               board action
    ====================================================================  =====================
    flow SUCCESS; flow REVERTED (or FAILURE) after a task failure;        consume
    validation error (missing arguments: the flow never ran)
    ``ExecutionFailure``/``StorageFailure`` (every failure of that kind),  abandon, back-off delay
    engine suspended, transient error building the engine or loading
    the book
    claim lost; a write refused for a newer claim (``FencedOut``);       abandon, no delay
    ``stop()`` while running
    ``StorageCorrupted`` (persistence's file is damaged): the conductor   release (uncounted)
    stops claiming, logs one error line and ``run()`` raises it
    the job cannot run *on this conductor*: factory refused by this       abandon, back-off
    conductor's policy or not importable here, book or flow detail not    delay, counted
    in this conductor's persistence, unknown engine kind
    details that are not a valid job document (not a JSON object, wrong   trash at once, with
    types, no logbook named): it can never run anywhere                   the reason
    a counted failure on the ``max_attempts``-th claim, or a job          trash, "too many
    claimed more than ``max_attempts`` times                              attempts: <tally>"
    cancelled (``JobBoard.cancel``): the renewal after the cancel brings  trash, "cancelled by
    the mark, the engine suspends at the next atom boundary               WHO at TIME: REASON"
    ====================================================================  =====================

    Every counted failure is tallied in the reason the board keeps with the job (``Tally``),
    so the trash reason names every distinct reason and where it happened: "too many attempts:
    factory refused on a@h1 (3x), logbook not found on b@h2 (2x)" (with a multiplication
    sign for the x).

    A job that cannot run here is no fault of the job's: after ``pause_after`` such jobs in a
    row with none consumed, the conductor logs one error line saying what is wrong, stops
    claiming for ``pause_for`` seconds (doubling while it stays misconfigured, at most 8
    times as long) and then tries again; ``statistics["paused"]`` counts the pauses.

    Every claim is recorded in the job's history (``Persistence.job_history``): its start with
    the take of the flow, its end (outcome, reason, flow state, atoms run) when the board call
    that ends it returns. A validation error is recorded on the flow detail as FAILURE with the
    error in its meta before the job is consumed.

    A storage outage before the flow starts never trashes a job (it is abandoned with back-off
    however often it happens). Damaged storage is no outage: waiting does not mend it, and
    abandoning job after job on it would only burn their attempts, so the conductor stops.
    Claims are renewed in the background about every TTL/3; when
    renewal fails the job's engine suspends at its next atom boundary and the job is not
    consumed. Jobboard errors never end ``run()``: they are logged, counted in ``statistics``
    and retried with back-off.

    Args:
        name, jobboard, persistence, engine, engine_options: see ``Conductor``.
        wait_timeout: seconds to idle in ``jobboard.wait`` when no job is claimable
            (``WAIT_TIMEOUT`` when None); must be a positive number.
        log: logger that receives every conductor event at DEBUG (module logger when None).
        max_simultaneous_jobs: jobs in progress at once; <= 0 means no limit.
        allowed_factories: module prefixes whose flow factories may be imported besides the
            registered ones (the factory policy).
        max_attempts: claims after which a job that keeps failing is trashed (>= 1).
        claim_ttl: claim lease in seconds (the board's ``ttl`` when None).
        backoff_base: abandon delay in seconds after a job's first failed claim; doubles with
            every further claim.
        backoff_max: the largest abandon delay.
        board_backoff_base, board_backoff_max: the same for retrying a failing jobboard.
        metrics: Prometheus metrics to update (``ConductorMetrics``), or None.
        pause_after: jobs in a row that cannot run on this conductor (with none consumed)
            after which it pauses claiming; 0 never pauses.
        pause_for: seconds of the first such pause (doubling for each further one in a row,
            at most 8 times as long).
        tracer_provider: OpenTelemetry tracer provider for the spans of job runs (see
            ``legato.conductor._tracing``); None uses the global one if one is set when
            ``run()`` starts, else (or without OpenTelemetry installed) traces nothing.
        claim_ahead_below: conductors that chain claims (the blocking one), on boards that
            answer later (``Capabilities.sends_without_waiting``: Redis, ZooKeeper), keep the board
            working while they run: after a job that took less than this many seconds, the
            call that consumes it also claims the job after next, and its answer is read when
            the next job ends. So the conductor holds one job it has not started yet (two on
            boards with ``Capabilities.pipelined_sends``), for about one short job's time each
            (``CLAIM_AHEAD_HOLD`` at most, then it is released uncounted), and
            ``job_consumed`` for a job (with its reason, e.g. a validation failure's) comes
            when the following job (or the one after) ends.
            ``CLAIM_AHEAD_BELOW`` when None; 0 turns claiming ahead off.
    """

    #: Logger that will be used for listening to events (if none then the module level logger
    #: will be used instead).
    LOG: logging.Logger | None = None

    #: Upper bound, in seconds, between two refreshes of the conductor's entity registration.
    #: (Claiming uses ``claim_next``, which always sees the board's current state, so no other
    #: resync is needed.)
    REFRESH_PERIODICITY = 30

    #: Default timeout used to idle/wait when no jobs have been found.
    WAIT_TIMEOUT = 0.5

    #: Default maximum number of jobs that can be in progress at the same time (<= 0: no limit).
    MAX_SIMULTANEOUS_JOBS = -1

    #: Whether consuming a job may claim the next one in the same board call
    #: (``JobBoard.consume_and_claim_next``). Only for conductors that run the next job in the
    #: claim loop's thread straight after (the blocking one).
    CHAIN_CLAIMS = False

    #: With ``CHAIN_CLAIMS``: after a job that ran for less than this many seconds, the
    #: conductor claims one job ahead (see ``claim_ahead_below``); 0 never does.
    CLAIM_AHEAD_BELOW = 0.05

    #: A job claimed ahead that has not started after this many seconds (at most a quarter of
    #: the claim TTL) is handed back to the board with ``JobBoard.release``.
    CLAIM_AHEAD_HOLD = 0.5

    #: Exceptions that will not cause consumption to occur.
    NO_CONSUME_EXCEPTIONS: tuple[type[Exception], ...] = (errors.ExecutionFailure,
                                                          errors.StorageFailure)

    #: Events emitted to listeners registered with the conductor's ``notifier``. The stage
    #: events carry ``job``, ``engine`` and ``conductor``; ``job_consumed``, ``job_abandoned``
    #: and ``job_trashed`` carry ``job``, ``conductor``, ``persistence`` and ``reason``.
    EVENTS_EMITTED = (
        "compilation_start", "compilation_end",
        "preparation_start", "preparation_end",
        "validation_start", "validation_end",
        "running_start", "running_end",
        "job_consumed", "job_abandoned", "job_trashed",
    )

    def __init__(self, name: str, jobboard: JobBoard, persistence: Persistence | None = None,
                 engine: str | None = None, engine_options: dict[str, Any] | None = None,
                 wait_timeout: float | None = None, log: logging.Logger | None = None,
                 max_simultaneous_jobs: int = MAX_SIMULTANEOUS_JOBS, *,
                 allowed_factories: Iterable[str] = (), max_attempts: int = 5,
                 claim_ttl: float | None = None, backoff_base: float = 1.0,
                 backoff_max: float = 60.0, board_backoff_base: float = 0.1,
                 board_backoff_max: float = 5.0,
                 metrics: ConductorMetrics | None = None,
                 claim_ahead_below: float | None = None, pause_after: int = 3,
                 pause_for: float = 10.0, tracer_provider: Any = None) -> None:
        super().__init__(name, jobboard, persistence=persistence, engine=engine,
                         engine_options=engine_options)
        self._wait_timeout = _positive("wait_timeout", wait_timeout, self.WAIT_TIMEOUT)
        if isinstance(max_simultaneous_jobs, bool) or not isinstance(max_simultaneous_jobs, int):
            raise ValueError("max_simultaneous_jobs must be an integer")
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValueError("max_attempts must be an integer >= 1")
        self._claim_ttl = None if claim_ttl is None else _positive("claim_ttl", claim_ttl, 0)
        if isinstance(pause_after, bool) or not isinstance(pause_after, int) or pause_after < 0:
            raise ValueError(f"pause_after must be an integer >= 0, not {pause_after!r}")
        pause_for = _positive("pause_for", pause_for, 0)
        self._pause_after = pause_after
        self._pause_backoff = Backoff(base=pause_for, maximum=8 * pause_for)
        # Jobs in a row that could not run here, the last one's reason, and pauses in a row.
        self._misses = 0
        self._last_miss: str | None = None
        self._pauses = 0
        if claim_ahead_below is None:
            claim_ahead_below = self.CLAIM_AHEAD_BELOW
        if (isinstance(claim_ahead_below, bool) or not isinstance(claim_ahead_below, int | float)
                or not claim_ahead_below >= 0):
            raise ValueError(f"claim_ahead_below must be a number >= 0, not "
                             f"{claim_ahead_below!r}")
        # Claiming ahead only pays where the board works while the next job runs.
        self._claim_ahead_below = (float(claim_ahead_below) if self.CHAIN_CLAIMS
                                   and jobboard.CAPABILITIES.sends_without_waiting else 0.0)
        self._max_simultaneous_jobs = max_simultaneous_jobs
        self._max_attempts = max_attempts
        self._backoff = Backoff(base=backoff_base, maximum=backoff_max)
        self._board_backoff = Backoff(base=board_backoff_base, maximum=board_backoff_max)
        self._policy = engine_mod.FactoryPolicy(allowed_prefixes=tuple(allowed_factories))
        self._metrics = metrics
        self._tracer_provider = tracer_provider
        self._tracing: JobTracing | None = None  # the running run()'s
        if metrics is not None:
            metrics.track(self)
            self._notifier.register("running_start", metrics.attach)
        self._log = log or self.LOG or logger
        self._notifier.register(ANY, self._log_event)
        self._stopping = threading.Event()
        # The StorageCorrupted that stopped this run() (raised by run() once jobs are done).
        self._corruption: BaseException | None = None
        self._dead = threading.Event()
        self._dead.set()
        self._run_lock = threading.Lock()
        self._slots = threading.Condition()
        self._inflight = 0
        self._stats_lock = threading.Lock()
        self._stats = dict.fromkeys(STATISTICS, 0)
        self._next_entity_refresh = 0.0
        self._idle_wakeups = 0
        self._renewer: Renewer | None = None  # the running run()'s
        # The next job to dispatch, claimed while the last one finished, with when it was
        # claimed; and how many more jobs may be claimed in this run() (None: no limit).
        self._handoff: tuple[Job, float] | None = None
        self._room: int | None = 0
        # Finishing calls in flight while the next job runs (each claims one ahead), oldest
        # first, and jobs their answers claimed that have not started; both under _ahead_lock.
        self._sent: collections.deque[_Ahead] = collections.deque()
        self._ready: collections.deque[tuple[Job, float]] = collections.deque()
        self._ahead_lock = threading.Lock()
        self._hold = self.CLAIM_AHEAD_HOLD
        # Calls kept in flight while a job runs: two where sends are pipelined (the answer
        # read when a job ends was sent a job earlier), else one.
        self._depth = 2 if jobboard.CAPABILITIES.pipelined_sends else 1

    # -- public API ------------------------------------------------------------------------

    @property
    def dispatching(self) -> bool:
        """Whether or not the dispatching loop is still dispatching."""
        return not self._dead.is_set()

    @property
    def statistics(self) -> dict[str, int]:
        """Counters since construction: dispatched, consumed, abandoned, trashed, cancelled
        (of the trashed, those an operator cancelled), board_errors (jobboard calls that failed
        and were retried), claims_lost (claims whose renewal failed or that another owner held
        when the job finished), paused."""
        with self._stats_lock:
            return dict(self._stats)

    @property
    def jobs_in_flight(self) -> int:
        """Jobs submitted to the executor and not finished yet."""
        return self._inflight

    @property
    def max_simultaneous_jobs(self) -> int:
        return self._max_simultaneous_jobs

    def stop(self, timeout: float | None = None) -> None:
        """Requests the conductor to stop dispatching.

        Claiming stops at once; running engines suspend at their next atom boundary and their
        jobs are abandoned with no delay, so another conductor resumes them. Returns
        immediately; use ``wait()`` to block until ``run()`` has returned. ``timeout`` is kept
        for the seed contract and ignored.
        """
        del timeout
        self._stopping.set()
        with self._slots:
            self._slots.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Waits for the conductor to gracefully exit.

        Returns:
            True once ``run()`` is not running, False if ``timeout`` seconds passed first.
        """
        return self._dead.wait(timeout)

    def run(self, max_dispatches: int | None = None) -> None:
        """Continuously claims, runs, and consumes jobs (and repeat).

        Args:
            max_dispatches: with a positive value, claim exactly that many jobs, wait for them
                to finish and return; None or <= 0 means run until ``stop()``.

        Raises:
            RuntimeError: ``run()`` is already running on this conductor.
            ValueError: neither the conductor nor its board has a persistence.
            StorageCorrupted: persistence's storage is damaged; the conductor stopped claiming
                (the jobs it held were released) and says so in one error log line.
        """
        if not self._run_lock.acquire(blocking=False):
            raise RuntimeError(f"{self!r} is already running")
        try:
            persistence = self.persistence
            if persistence is None:
                raise ValueError("a conductor needs a persistence (its own or its board's)")
            limit = max_dispatches if max_dispatches is not None and max_dispatches > 0 else None
            self._stopping.clear()
            self._dead.clear()
            self._corruption = None
            self._run(limit, persistence)
            if self._corruption is not None:
                raise self._corruption
        finally:
            self._dead.set()
            self._run_lock.release()

    # -- the claim loop --------------------------------------------------------------------

    @abc.abstractmethod
    def _executor_factory(self) -> futures.Executor:
        """The executor jobs are submitted to, created at every ``run()``."""

    def _run(self, limit: int | None, persistence: Persistence) -> None:
        ttl = self._lease_ttl()
        self._hold = min(self.CLAIM_AHEAD_HOLD, ttl / 4)
        period = min(ttl / 6, self._hold / 2) if self._claim_ahead_below else ttl / 6
        renewer = Renewer(self._jobboard, self._conductor.name, period=period,
                          on_tick=lambda: self._tick(ttl),
                          on_error=lambda exc: self._count("board_errors"),
                          on_lost=lambda lease: self._count("claims_lost"))
        self._renewer = renewer
        tracing = self._tracing = JobTracing.create(self._tracer_provider,
                                                    self._conductor.name)
        if tracing is not None:
            self._notifier.register("running_start", tracing.running)
        executor = self._executor_factory()
        self._next_entity_refresh = 0.0
        self._refresh_entity(ttl)
        renewer.start()
        try:
            dispatched = 0
            failures = 0
            while not self._stopping.is_set() and (limit is None or dispatched < limit):
                if not self._wait_for_slot() or not self._pause_if_misconfigured():
                    break
                lease, failures = self._claim_next(ttl, renewer, failures)
                if lease is not None:
                    dispatched += 1
                    self._room = None if limit is None else limit - dispatched
                    self._submit(executor, lease, persistence, renewer)
            self._wait_for_all()
        finally:
            self._room = 0
            self._release_held()
            if self._handoff is not None:  # claimed as run() ended: hand it straight back
                self._release_unstarted(self._handoff[0])
                self._handoff = None
            executor.shutdown(wait=True)
            renewer.stop()
            self._unregister_entity()
            if tracing is not None:
                self._notifier.deregister("running_start", tracing.running)

    def _lease_ttl(self) -> float:
        return self._claim_ttl if self._claim_ttl is not None else float(self._jobboard.ttl)

    def _wait_for_slot(self) -> bool:
        """Block until fewer than ``max_simultaneous_jobs`` jobs run; False once stopping."""
        limit = self._max_simultaneous_jobs
        with self._slots:
            while limit > 0 and self._inflight >= limit and not self._stopping.is_set():
                self._slots.wait(self._wait_timeout)
        return not self._stopping.is_set()

    def _wait_for_all(self) -> None:
        with self._slots:
            while self._inflight > 0:
                self._slots.wait(self._wait_timeout)

    def _claim_next(self, ttl: float, renewer: Renewer,
                    failures: int) -> tuple[Lease | None, int]:
        """Claim one job (or idle until one may exist); return its lease and the board failure
        streak."""
        claimed_at = time.monotonic()
        handoff, self._handoff = self._handoff, None
        try:
            if handoff is not None:
                job, claimed_at = handoff
            else:
                claimed = self._jobboard.claim_next(self._conductor.name, ttl=self._claim_ttl)
                if claimed is None:
                    self._idle(self._jobboard.wait(self._wait_timeout))
                    return None, 0
                job = claimed
                if self._metrics is not None:
                    self._metrics.claim_seconds.observe(time.monotonic() - claimed_at)
        except Exception as exc:  # any board error: log, count, back off, carry on (Lesson 6)
            failures += 1
            self._board_failed("claiming a job", exc, failures)
            return None, failures
        if self._stopping.is_set():
            # stop() came while the claim was in flight: hand the job straight back.
            self._release_unstarted(job)
            return None, 0
        if renewer.held(job.uuid):
            self._still_running(job, renewer)
            return None, 0
        self._count("dispatched")
        self._idle_wakeups = 0
        return renewer.add(job, ttl, claimed_at=claimed_at), 0

    def _pause_if_misconfigured(self) -> bool:
        """After ``pause_after`` jobs in a row that could not run here (and none consumed),
        say so loudly and stop claiming for a while: the conductor is misconfigured, the jobs
        are fine (they stay on the board for others). False once stopping."""
        with self._stats_lock:
            if not self._pause_after or self._misses < self._pause_after:
                return not self._stopping.is_set()
            misses, last, self._misses = self._misses, self._last_miss, 0
            self._pauses += 1
            self._stats["paused"] += 1
            delay = self._pause_backoff.delay(self._pauses)
        handoff, self._handoff = self._handoff, None
        if handoff is not None:
            self._release_unstarted(handoff[0])
        self._release_held()
        logger.error("%s: PAUSED: could not build %d jobs in a row and none ran; this conductor "
                     "looks misconfigured (the jobs stay on the board for others); last: %s; "
                     "claiming again in %.0fs", self._conductor.name, misses, last, delay)
        self._show_paused({"reason": redact(str(last))[:500], "jobs": misses,
                           "until": time.time() + delay})
        if self._stopping.wait(delay):
            return False
        self._show_paused(None)
        return True

    def _note_outcome(self, outcome: Outcome) -> None:
        """Count jobs that could not run here in a row (for ``_pause_if_misconfigured``)."""
        with self._stats_lock:
            if outcome.cause is Cause.NOT_HERE:
                self._misses += 1
                self._last_miss = outcome.reason
            elif outcome.action is Action.CONSUME:
                self._misses = 0
                self._pauses = 0

    def _still_running(self, job: Job, renewer: Renewer) -> None:
        """The board gave back a job this conductor is still running: the claim of that run
        lapsed (the board was out of reach, or this process paused, past the lease) and this
        is a new one. A conductor never runs one job twice: the old run's claim is over, so it
        is marked lost (its engine suspends at the next atom boundary); the new claim is
        handed back unstarted (uncounted), and the claim loop waits for the old run to end
        before claiming again, since the board would give it the same job first."""
        running = renewer.held(job.uuid)
        for lease in running:
            renewer.lose(lease)
        logger.warning("%s: job %s is still running here under fence %s; handing back the new "
                       "claim (fence %s) until that run ends", self._conductor.name, job.uuid,
                       ", ".join(str(lease.job.fence) for lease in running), job.fence)
        self._release_unstarted(job)
        with self._slots:
            while renewer.held(job.uuid) and not self._stopping.is_set():
                self._slots.wait(self._wait_timeout)

    def _release_unstarted(self, job: Job) -> None:
        """Hand back a job claimed but not started (claimed ahead, or after ``stop()``): its
        lease would lapse anyway; releasing it lets another conductor take it at once, and the
        claim does not count in its attempts. Its history records the claim as released."""
        try:
            self._jobboard.release(job, self._conductor.name)
        except Exception as exc:  # the lease lapses by itself: nothing is lost
            logger.warning("%s: could not release unstarted job %s: %s",
                           self._conductor.name, job.uuid, exc)
        persistence = self.persistence
        if persistence is not None:
            ClaimLog(job, self._conductor.name, claimed_at=time.monotonic()).record(
                persistence, Outcome(Action.RELEASE, "released unstarted"))

    def _history_of(self, lease: Lease) -> ClaimLog:
        """The claim's history record (made on first use)."""
        history: ClaimLog | None = lease.history
        if history is None:
            history = lease.history = ClaimLog(lease.job, self._conductor.name,
                                               claimed_at=lease.claimed_at)
        return history

    def _idle(self, woken: bool) -> None:
        """Don't spin when ``wait`` keeps reporting a job that ``claim_next`` does not get (a
        race lost to other conductors, or a board whose listing and claiming disagree)."""
        self._idle_wakeups = self._idle_wakeups + 1 if woken else 0
        if self._idle_wakeups > 1:
            self._stopping.wait(min(0.005 * self._idle_wakeups, self._wait_timeout))

    def _board_failed(self, what: str, exc: Exception, failures: int) -> None:
        self._count("board_errors")
        delay = self._board_backoff.delay(failures)
        # A board that lost its data is no outage to wait out: say so loudly, then carry on
        # with what the board holds now (it reports each loss once).
        log = logger.error if isinstance(exc, errors.BoardDataLost) else logger.warning
        log("%s: jobboard error while %s (retrying in %.2fs): %s",
            self._conductor.name, what, delay, exc, exc_info=failures == 1)
        self._stopping.wait(delay)

    def _submit(self, executor: futures.Executor, lease: Lease, persistence: Persistence,
                renewer: Renewer) -> None:
        with self._slots:
            self._inflight += 1

        def done(_: futures.Future[None]) -> None:
            renewer.remove(lease)
            with self._slots:
                self._inflight -= 1
                self._slots.notify_all()

        try:
            future = executor.submit(self._process, lease, persistence)
        except Exception as exc:  # e.g. a custom executor already shut down
            logger.exception("%s: cannot submit job %s", self._conductor.name, lease.job.uuid)
            self._finish(lease, persistence, Outcome(Action.ABANDON, f"cannot submit: {exc}",
                                                     delay=0.0, cause=Cause.INTERRUPTED))
            future = futures.Future()
            future.set_result(None)
        future.add_done_callback(done)

    # -- one job ---------------------------------------------------------------------------

    def _process(self, lease: Lease, persistence: Persistence) -> None:
        started = time.monotonic()
        tracing = self._tracing
        span = None if tracing is None else tracing.start_job(lease, lease.claimed_at)
        try:
            outcome = self._outcome_of(lease, persistence)
        except Exception as exc:  # a bug must not kill the worker; the job is retried later
            logger.exception("%s: unexpected error on job %s", self._conductor.name,
                             lease.job.uuid)
            outcome = Outcome(Action.ABANDON, f"conductor error: {exc}", cause=Cause.FAILED)
        outcome = self._limit_attempts(lease.job, outcome)
        self._note_outcome(outcome)
        self._finish(lease, persistence, outcome, ran_for=time.monotonic() - started)
        if span is not None and tracing is not None:
            tracing.end_job(lease, span, outcome)
        if self._metrics is not None:
            self._metrics.duration.observe(time.monotonic() - started)
            if outcome.reason and outcome.reason.startswith(_STORAGE_REASONS):
                self._metrics.storage_errors.inc()

    def _outcome_of(self, lease: Lease, persistence: Persistence) -> Outcome:
        job = lease.job
        if lease.cancelled is not None:  # cancelled while an earlier claim ran
            return Outcome(Action.TRASH, lease.cancelled, cause=Cause.CANCELLED)
        if job.attempts > self._max_attempts and not _storage_reason(job.reason):
            return _exhausted(Tally.of(job.reason))
        try:
            engine = self._build_engine(job, persistence, lost=lease.lost,
                                        history=self._history_of(lease))
        except errors.FencedOut as exc:
            return _fenced_out(job, exc)
        except _job.CannotRun as exc:  # NotHere included
            action = Action.TRASH if exc.cause is Cause.INVALID else Action.ABANDON
            return Outcome(action, exc.reason, cause=exc.cause)
        except errors.DisallowedFactory as exc:
            return Outcome(Action.ABANDON, f"factory refused: {exc}", cause=Cause.NOT_HERE)
        except _UnknownEngine as exc:
            return Outcome(Action.ABANDON, f"unknown engine: {exc.__cause__}",
                           cause=Cause.NOT_HERE)
        except (errors.NotFound, ImportError, AttributeError) as exc:
            return Outcome(Action.ABANDON, f"factory not found: {exc}", cause=Cause.NOT_HERE)
        except errors.StorageFailure as exc:
            return Outcome(Action.ABANDON, f"{_job.STORAGE_REASON}: {exc}", cause=Cause.STORAGE)
        except errors.StorageCorrupted as exc:
            return self._corrupted(exc)
        except Exception as exc:  # e.g. the factory raised: maybe transient, so retry it
            return Outcome(Action.ABANDON, f"cannot build the engine: {exc!r}",
                           cause=Cause.FAILED)
        return self._drive(lease, engine)

    def _build_engine(self, job: Job, persistence: Persistence, *,
                      lost: threading.Event | None = None,
                      history: ClaimLog | None = None) -> Any:
        """Take the job's flow detail with the claim's fence (``FencedOut`` when a newer claim
        of the job took it) and build an engine whose every write carries that fence and
        that never reverts once ``lost`` is set. With ``history``, the claim's start is
        recorded with the take."""
        fence = _job.fence_of(job)
        flow_detail = _job.take_flow_detail(job, persistence, fence, history)
        if history is not None:
            history.taken(flow_detail)
        _job.check_factory(flow_detail)
        kind = self._engine or "serial"
        try:
            engine_mod.engine_class(kind)
        except (errors.UnknownBackend, errors.MissingDriver) as exc:
            raise _UnknownEngine from exc
        engine = engine_mod.load_from_detail(
            flow_detail, store=_job.merged_store(job, flow_detail),
            engine=self._engine or "serial", persistence=persistence, policy=self._policy,
            **{**self._engine_options, "fence": fence, "fence_lost": lost})
        if history is not None:
            history.flow_detail = engine.flow_detail
        return engine

    def _drive(self, lease: Lease, engine: Any) -> Outcome:
        payload = {"job": lease.job, "engine": engine, "conductor": self}
        stages: tuple[tuple[str, Callable[[], Any], str], ...] = (
            ("compilation_start", engine.compile, "compilation_end"),
            ("preparation_start", engine.prepare, "preparation_end"),
            ("validation_start", engine.validate, "validation_end"))
        try:
            for start, call, end in stages:
                self._notifier.notify(start, payload)
                call()
                self._notifier.notify(end, payload)
        except errors.MissingDependencies as exc:
            return self._invalid(lease, engine, exc)
        except errors.FencedOut as exc:
            return _fenced_out(lease.job, exc)
        except errors.StorageFailure as exc:
            return Outcome(Action.ABANDON, f"{_job.STORAGE_REASON}: {exc}", cause=Cause.STORAGE)
        except errors.StorageCorrupted as exc:
            return self._corrupted(exc)
        except Exception as exc:  # compilation or preparation failed: retried, then trashed
            return Outcome(Action.ABANDON, f"cannot prepare the flow: {exc!r}",
                           cause=Cause.FAILED)
        self._notifier.notify("running_start", payload)
        failure: Exception | None = None
        try:
            self._run_engine(engine, lease)
        except Exception as exc:
            failure = exc
        self._notifier.notify("running_end", payload)
        return self._judge(engine, lease, failure)

    def _invalid(self, lease: Lease, engine: Any, exc: Exception) -> Outcome:
        """The flow cannot start (missing inputs): record it on the flow detail as a FAILURE
        with the error in its meta (so ``list_flows`` shows it), then consume the job."""
        reason = f"validation failed: {exc}"
        fd = engine.flow_detail
        failed = FlowDetail(fd.name, fd.uuid, FlowState.FAILURE,
                            {**fd.meta, "error": f"{type(exc).__name__}: {exc}"})
        try:
            engine.storage.persistence.update_flow_details(
                failed, fence=_job.fence_of(lease.job))
        except errors.FencedOut as fenced:
            return _fenced_out(lease.job, fenced)
        except errors.StorageFailure as failure:
            return Outcome(Action.ABANDON, f"{_job.STORAGE_REASON}: {failure}",
                           cause=Cause.STORAGE)
        fd.state, fd.meta = failed.state, failed.meta
        return Outcome(Action.CONSUME, reason)

    def _run_engine(self, engine: Any, lease: Lease) -> None:
        suspended = False
        for _state in engine.run_iter():
            if not suspended and (self._stopping.is_set() or not lease.trusted()
                                  or lease.cancelled is not None):
                engine.suspend()
                suspended = True

    def _judge(self, engine: Any, lease: Lease, failure: Exception | None) -> Outcome:
        if isinstance(failure, errors.FencedOut):
            return _fenced_out(lease.job, failure)
        if failure is not None:
            corrupt = _job.found(failure, errors.StorageCorrupted)
            if corrupt is not None:
                return self._corrupted(corrupt)
            if _job.is_no_consume(failure, self.NO_CONSUME_EXCEPTIONS):
                return Outcome(Action.ABANDON, f"{type(failure).__name__}: {failure}",
                               cause=Cause.FAILED)
            return Outcome(Action.CONSUME, f"flow failed: {type(failure).__name__}: {failure}")
        if engine.flow_detail.state is not FlowState.SUSPENDED:
            return Outcome(Action.CONSUME)
        if not lease.trusted():  # a cancel mark stays on the job for its next claim
            return Outcome(Action.ABANDON, "claim lost", delay=0.0, cause=Cause.INTERRUPTED)
        if lease.cancelled is not None:
            return Outcome(Action.TRASH, lease.cancelled, cause=Cause.CANCELLED)
        if self._stopping.is_set():
            return Outcome(Action.ABANDON, "conductor stopping", delay=0.0,
                           cause=Cause.INTERRUPTED)
        return Outcome(Action.ABANDON, "engine suspended", cause=Cause.FAILED)

    def _corrupted(self, exc: BaseException) -> Outcome:
        """Persistence's storage is damaged: stop claiming (``run()`` then raises ``exc``) and
        hand the job back uncounted; it is no fault of the job's."""
        with self._stats_lock:
            first = self._corruption is None
            if first:
                self._corruption = exc
        if first:
            logger.error("%s: STOPPING: persistence storage is corrupted, not unavailable; "
                         "no more jobs will be claimed: %s", self._conductor.name, exc)
        self._stopping.set()
        return Outcome(Action.RELEASE, f"{_job.CORRUPT_REASON}: {exc}", cause=Cause.CORRUPT)

    def _limit_attempts(self, job: Job, outcome: Outcome) -> Outcome:
        """Trash a job whose counted failure happened on its ``max_attempts``-th claim, with
        every distinct reason it collected."""
        if (outcome.action is Action.ABANDON and outcome.retryable
                and job.attempts >= self._max_attempts):
            logger.warning("%s: trashing job %s after %d claims; last error: %s",
                           self._conductor.name, job.uuid, job.attempts, outcome.reason)
            tally = Tally.of(job.reason)
            tally.add(outcome.reason, self._conductor.name)
            return _exhausted(tally)
        return outcome

    def _abandon_reason(self, job: Job, outcome: Outcome) -> str | None:
        """The reason an abandon stores: the outcome's, followed by the job's tally of counted
        failures (this one included when counted)."""
        tally = Tally.of(job.reason)
        if outcome.retryable:
            tally.add(outcome.reason, self._conductor.name)
        return tally.reason(outcome.reason)

    # -- finishing a job -------------------------------------------------------------------

    def _finish(self, lease: Lease, persistence: Persistence, outcome: Outcome, *,
                ran_for: float | None = None) -> None:
        job, owner = lease.job, self._conductor.name
        room = self._room
        # Whether this job's consume may claim one job ahead (see claim_ahead_below).
        claim_ahead = (outcome.action is Action.CONSUME and self.CHAIN_CLAIMS
                       and ran_for is not None and ran_for < self._claim_ahead_below
                       and (room is None or room >= 2) and not self._stopping.is_set())
        if (claim_ahead and self._depth > 1
                and self._send_then_read(lease, persistence, outcome, room)):
            return
        ahead = self._take_ahead()  # the previous job's consume, and a job claimed ahead
        stopping = self._stopping.is_set()
        call: Callable[[], None]
        if outcome.action is Action.CONSUME and not stopping and self.CHAIN_CLAIMS:
            if claim_ahead and self._send_ahead(lease, persistence, outcome, ahead, room):
                return
            if ahead is None and (room is None or room >= 1):
                call = lambda: self._consume_and_claim(job, owner)  # noqa: E731
            else:
                call = lambda: self._jobboard.consume(job, owner)  # noqa: E731
        elif outcome.action is Action.CONSUME:
            call = lambda: self._jobboard.consume(job, owner)  # noqa: E731
        elif outcome.action is Action.TRASH:
            call = lambda: self._jobboard.trash(job, owner, reason=outcome.reason)  # noqa: E731
        elif outcome.action is Action.RELEASE:
            call = lambda: self._jobboard.release(job, owner)  # noqa: E731
        else:
            delay = (outcome.delay if outcome.delay is not None
                     else self._backoff.delay(job.attempts))
            outcome = dataclasses.replace(outcome, reason=self._abandon_reason(job, outcome))
            reason = outcome.reason
            call = lambda: self._jobboard.abandon(job, owner, delay=delay,  # noqa: E731
                                                  reason=reason)
        self._complete(lease, persistence, outcome, call)
        if stopping:
            if ahead is not None:
                self._release_unstarted(ahead[0])
            self._release_held()
        elif ahead is not None:
            self._handoff = ahead

    def _send_ahead(self, lease: Lease, persistence: Persistence, outcome: Outcome,
                    ahead: tuple[Job, float] | None, room: int | None) -> bool:
        """Consume ``lease``'s job and claim one more, without waiting: the answer is read
        when the next job ends (``_take_ahead``). The next job is the one claimed ahead
        before or, when there is none, one claimed now (and, where ``_depth`` calls are kept
        in flight, as many more as make them up); False (nothing sent) when there is no next
        job to run meanwhile, or when claiming one more could pass ``max_dispatches``."""
        with self._ahead_lock:
            held = len(self._sent) + len(self._ready) + (ahead is not None)
        if ahead is None:
            count = self._depth if room is None else min(self._depth, room - 1)
            claimed = self._claim_now(count) if count > 0 else []
            if not claimed:
                return False
            ahead = claimed[0]
            with self._ahead_lock:
                self._ready.extend(claimed[1:])
        elif room is not None and held + 1 > room:
            return False
        sent = self._send(lease, persistence, outcome)
        with self._ahead_lock:
            self._sent.append(sent)
        self._handoff = ahead
        return True

    def _claim_now(self, count: int) -> list[tuple[Job, float]]:
        """Up to ``count`` jobs claimed one after another (fewer when the board has fewer or
        fails: the synchronous path retries with back-off)."""
        claimed: list[tuple[Job, float]] = []
        while len(claimed) < count:
            claimed_at = time.monotonic()
            try:
                job = self._jobboard.claim_next(self._conductor.name, ttl=self._claim_ttl)
            except Exception as exc:
                log = logger.error if isinstance(exc, errors.BoardDataLost) else logger.debug
                log("%s: claim before consuming ahead failed: %s", self._conductor.name, exc)
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
        with self._ahead_lock:
            held = len(self._sent) + len(self._ready)
        if held == 0 or (room is not None and held + 1 > room):
            return False
        sent = self._send(lease, persistence, outcome)
        with self._ahead_lock:
            self._sent.append(sent)
            while len(self._sent) > self._depth or (self._sent and not self._ready):
                self._settle_oldest()
            self._handoff = self._ready.popleft() if self._ready else None
        return True

    def _send(self, lease: Lease, persistence: Persistence, outcome: Outcome) -> _Ahead:
        """Send the consume of ``lease``'s job, claiming one more, without waiting; the
        ``outcome`` (its reason) is emitted with ``job_consumed`` when the answer is read."""
        sent_at = time.monotonic()
        try:
            pending = self._jobboard.consume_and_claim_next_async(
                lease.job, self._conductor.name, ttl=self._claim_ttl)
        except Exception as exc:  # e.g. a closed board: an answer like the board's others
            pending = Pending.failed(exc)
        return _Ahead(pending, lease, persistence, outcome, sent_at)

    def _take_ahead(self) -> tuple[Job, float] | None:
        """Read the answers of the finishing calls in flight (emitting their jobs' events);
        the first job they (or earlier ones) claimed ahead, if any, with when it was claimed.
        Other such jobs stay ready for the next dispatches."""
        with self._ahead_lock:
            while self._sent:
                self._settle_oldest()
            return self._ready.popleft() if self._ready else None

    def _settle_oldest(self) -> None:
        """Read the oldest answer in flight; the job it claimed, if any, is ready to run.
        Called with ``_ahead_lock`` held."""
        claimed = self._settle(self._sent.popleft())
        if claimed is not None:
            self._ready.append(claimed)

    def _settle(self, ahead: _Ahead) -> tuple[Job, float] | None:
        """Read ``ahead``'s answer and emit its job's event; the job it claimed, if any."""
        claimed: list[Job | None] = [None]

        def answer() -> None:
            if not ahead.read:
                ahead.read = True
                claimed[0] = ahead.pending.result()
            else:  # the answer was lost (a transient error): consume again
                self._jobboard.consume(ahead.lease.job, self._conductor.name)

        self._complete(ahead.lease, ahead.persistence, ahead.outcome, answer)
        return None if claimed[0] is None else (claimed[0], ahead.sent_at)

    def _release_held(self, *, held_for: float = 0.0, wait: bool = True) -> None:
        """Read every answer in flight and release the jobs claimed ahead that have waited
        ``held_for`` seconds or more (all of them by default). Without ``wait``, give up at
        once when the claim loop is reading answers itself."""
        if not self._ahead_lock.acquire(blocking=wait):
            return
        try:
            now = time.monotonic()
            if held_for and not any(now - a.sent_at >= held_for for a in self._sent) \
                    and not any(now - at >= held_for for _, at in self._ready):
                return
            while self._sent:
                self._settle_oldest()
            stale = [held for held in self._ready if now - held[1] >= held_for]
            for held in stale:
                self._ready.remove(held)
        finally:
            self._ahead_lock.release()
        for job, _ in stale:
            self._release_unstarted(job)

    def _tick(self, ttl: float) -> None:
        """The renewer's periodic call: refresh the entity, and release jobs claimed ahead
        that the claim loop has not started within the hold time (the job running meanwhile
        turned out long)."""
        self._refresh_entity(ttl)
        if self._sent or self._ready:
            self._release_held(held_for=self._hold, wait=False)

    def _complete(self, lease: Lease, persistence: Persistence, outcome: Outcome,
                  call: Callable[[], None]) -> None:
        """Make the finishing board ``call`` for ``lease``'s job and emit the job's event."""
        job, owner = lease.job, self._conductor.name
        name, reason = _PAST[outcome.action], outcome.reason
        if self._tracing is not None:
            call = self._tracing.board_call(lease, outcome.action, call)
        try:
            self._call_board(call, lease)
        except errors.BoardDataLost as exc:
            # The job went with the board's data: it is neither consumed nor anyone's now.
            logger.error("%s: job %s was lost with the board's data before it could be %s: %s",
                         owner, job.uuid, _PAST[outcome.action], exc)
            self._count("board_errors")
            name, reason = "abandoned", f"board data lost: {exc}"
        except (errors.NotOwner, errors.NotFound) as exc:
            # Someone else holds the job now (our lease lapsed); they will finish it.
            logger.warning("%s: lost job %s before it could be %s%s: %s", owner, job.uuid,
                           _PAST[outcome.action], _because(reason), exc)
            if not lease.lost.is_set():
                self._count("claims_lost")
            name, reason = "abandoned", f"claim lost: {exc}"
        except Exception as exc:  # board unreachable past the lease: the claim lapses by itself
            logger.warning("%s: could not finish job %s%s (%s); its claim will lapse", owner,
                           job.uuid, _because(reason), exc)
            name, reason = "abandoned", f"board unavailable: {exc}"
        # The claim is over (or left to lapse): stop renewing it before anything else, so that
        # the claim loop, getting the job back, never takes this finished run for a live one.
        renewer = self._renewer
        if renewer is not None:
            renewer.remove(lease)
        changed = name != _PAST[outcome.action]
        self._history_of(lease).record(persistence, outcome, name if changed else None,
                                       reason if changed else None)
        self._count(name)
        if name == "trashed" and outcome.cause is Cause.CANCELLED:
            self._count("cancelled")
        self._notifier.notify(_EVENT[name], {"job": job, "conductor": self,
                                             "persistence": persistence, "reason": reason})

    def _consume_and_claim(self, job: Job, owner: str) -> None:
        """Consume ``job`` and claim the next one in one board call; the claim loop picks the
        new job up as its next dispatch (or releases it if ``stop()`` came meanwhile)."""
        claimed_at = time.monotonic()
        following = self._jobboard.consume_and_claim_next(job, owner, ttl=self._claim_ttl)
        if following is not None:
            self._handoff = (following, claimed_at)

    def _call_board(self, call: Callable[[], None], lease: Lease) -> None:
        """Make a finishing board call, retrying transient errors while the lease lasts."""
        failures = 0
        while True:
            try:
                call()
                return
            except (errors.NotOwner, errors.NotFound, errors.BoardDataLost):
                raise
            except Exception as exc:
                failures += 1
                delay = self._board_backoff.delay(failures)
                if time.monotonic() + delay >= lease.deadline:
                    raise
                self._board_failed("finishing a job", exc, failures)

    # -- entity, statistics, logging -------------------------------------------------------

    def _refresh_entity(self, ttl: float) -> None:
        now = time.monotonic()
        if now < self._next_entity_refresh:
            return
        self._next_entity_refresh = now + min(float(self.REFRESH_PERIODICITY), ttl / 3)
        try:
            self._jobboard.register_entity(self._conductor, ttl=max(ttl, 3 * self._wait_timeout))
        except Exception as exc:  # listing live conductors is informative only
            self._count("board_errors")
            logger.warning("%s: cannot register with the board: %s", self._conductor.name, exc)

    def _show_paused(self, paused: dict[str, Any] | None) -> None:
        """Publish a pause (``metadata["paused"]``: reason, jobs, until), or its end, in the
        conductor's registration on the board, where operators' tools list live conductors."""
        metadata = {k: v for k, v in self._conductor.metadata.items() if k != "paused"}
        if paused is not None:
            metadata["paused"] = paused
        self._conductor = dataclasses.replace(self._conductor, metadata=metadata)
        self._next_entity_refresh = 0.0
        self._refresh_entity(self._lease_ttl())

    def _unregister_entity(self) -> None:
        try:
            self._jobboard.unregister_entity(self._conductor)
        except Exception as exc:
            logger.warning("%s: cannot unregister from the board: %s", self._conductor.name, exc)

    def _count(self, key: str) -> None:
        with self._stats_lock:
            self._stats[key] += 1

    def _log_event(self, event_type: str, details: dict[str, Any]) -> None:
        if not self._log.isEnabledFor(logging.DEBUG):
            return
        job = details.get("job")
        self._log.debug("%s: %s %s%s", self._conductor.name, event_type,
                        getattr(job, "uuid", ""),
                        f" ({details['reason']})" if details.get("reason") else "")


_PAST = {Action.CONSUME: "consumed", Action.ABANDON: "abandoned", Action.TRASH: "trashed",
         Action.RELEASE: "abandoned"}
_EVENT = {name: f"job_{name}" for name in _PAST.values()}
#: Reasons of jobs handed back because persistence failed (``storage_errors`` metric).
_STORAGE_REASONS = (_job.STORAGE_REASON, _job.CORRUPT_REASON, errors.StorageFailure.__name__)


class _Ahead:
    """A consume sent without waiting that also claims a job ahead (``_send_ahead``)."""

    __slots__ = ("lease", "outcome", "pending", "persistence", "read", "sent_at")

    def __init__(self, pending: Pending[Job | None], lease: Lease, persistence: Persistence,
                 outcome: Outcome, sent_at: float) -> None:
        self.pending = pending
        self.lease = lease
        self.persistence = persistence
        self.outcome = outcome
        self.sent_at = sent_at
        self.read = False


class _UnknownEngine(Exception):
    """This conductor's engine kind does not exist here (the ``UnknownBackend`` is chained)."""


def _exhausted(tally: Tally) -> Outcome:
    """Trash: too many attempts, with every distinct reason collected."""
    text = tally.text()
    return Outcome(Action.TRASH, f"{_job.TOO_MANY_ATTEMPTS}: {text}" if text
                   else _job.TOO_MANY_ATTEMPTS, cause=Cause.EXHAUSTED)


def _because(reason: str | None) -> str:
    """`` (reason)`` for a log line, or nothing."""
    return f" ({reason})" if reason else ""


def _fenced_out(job: Job, exc: errors.FencedOut) -> Outcome:
    """A newer claim took the job's flow over (or ours was lost before a revert): the job is
    another conductor's now; abandoned at once and not counted against its attempts."""
    logger.warning("job %s: claim lost, its engine stopped: %s", job.uuid, exc)
    return Outcome(Action.ABANDON, f"claim lost: {exc}", delay=0.0, cause=Cause.INTERRUPTED)


def _storage_reason(reason: str | None) -> bool:
    return bool(reason) and str(reason).startswith(_job.STORAGE_REASON)


def _positive(what: str, value: float | None, default: float) -> float:
    if value is None:
        return float(default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{what} must be a number > 0, not {value!r}")
    return float(value)
