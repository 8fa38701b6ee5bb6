"""The executor conductor: a claim loop that hands each claimed job to an executor.

Per job: rebuild the flow through the factory policy, build the engine, compile, prepare,
validate and run it (suspending at the next atom boundary on ``stop()`` or a lost claim), then
consume, abandon (with back-off) or trash the job. See ``ExecutorConductor`` for the outcome table.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
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
from legato.conductor._joined import JoinedConsume
from legato.conductor._renewal import Lease, Renewer
from legato.conductor._tracing import JobTracing
from legato.conductor.base import Conductor
from legato.jobboard.base import Job, JobBoard
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
    ``ExecutionFailure``/``StorageFailure`` while the flow runs (every    abandon, back-off delay
    failure of that kind), engine suspended, transient error building
    the engine
    ``StorageFailure`` before the flow starts (loading the book, taking   release (uncounted);
    the flow, preparing the engine): persistence is down for this         the conductor waits
    conductor, the job is fine                                            with back-off
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

    A storage outage before the flow starts never trashes a job: the job is released, so its
    ``attempts`` do not grow however often it happens, and the conductor waits
    (``backoff_base`` doubling up to ``backoff_max``) before claiming again. Damaged storage
    is no outage: waiting does not mend it, and abandoning job after job on it would only
    burn their attempts, so the conductor stops. Claims are renewed in the background about
    every TTL/3; when renewal fails the job's engine suspends at its next atom boundary and
    the job is not consumed. Jobboard errors never end ``run()``: they are logged, counted in
    ``statistics`` and retried with back-off.

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

    Subclasses may finish jobs their own way (``BlockingConductor`` claims the next job as it
    consumes one): they override ``_finish`` and the claim loop's hooks ``_start_claims``,
    ``_claimed_ahead``, ``_dispatched``, ``_release_ahead`` and ``_end_claims``.
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
                 metrics: ConductorMetrics | None = None, pause_after: int = 3,
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
        # Why persistence was unreachable for a job since the claim loop last waited (None:
        # it was not), and such waits in a row (``_wait_out_storage``).
        self._storage_down: str | None = None
        self._storage_waits = 0
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
        self._engine_found = False  # the engine kind's plugin loaded once (``_build_engine``)

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
        period = self._start_claims(ttl)
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
                if (not self._wait_for_slot() or not self._pause_if_misconfigured()
                        or not self._wait_out_storage()):
                    break
                lease, failures = self._claim_next(ttl, renewer, failures)
                if lease is not None:
                    dispatched += 1
                    self._dispatched(None if limit is None else limit - dispatched)
                    self._submit(executor, lease, persistence, renewer)
            self._wait_for_all()
        finally:
            self._end_claims()  # jobs claimed as run() ended are handed straight back
            executor.shutdown(wait=True)
            renewer.stop()
            self._unregister_entity()
            if tracing is not None:
                self._notifier.deregister("running_start", tracing.running)

    # -- hooks for conductors that claim ahead (``BlockingConductor``) --------------------

    def _start_claims(self, ttl: float) -> float:
        """Called by the claim loop as ``run()`` starts; the renewer's period in seconds."""
        return ttl / 6

    def _claimed_ahead(self) -> tuple[Job, float] | None:
        """A job claimed already for the next dispatch, with when its claim was sent."""
        return None

    def _dispatched(self, room: int | None) -> None:
        """A job was dispatched; ``room`` more may be claimed in this ``run()`` (None: no
        limit)."""

    def _release_ahead(self) -> None:
        """Hand back every job claimed and not started (the conductor pauses)."""

    def _end_claims(self) -> None:
        """``run()`` is ending: hand back every job claimed and not started."""

    def _tick(self, ttl: float) -> None:
        """The renewer's periodic call (on its thread): refresh the entity."""
        self._refresh_entity(ttl)

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
        handoff = self._claimed_ahead()
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
        if not self._pause_after or self._misses < self._pause_after:  # read without the lock
            return not self._stopping.is_set()
        with self._stats_lock:
            if self._misses < self._pause_after:
                return not self._stopping.is_set()
            misses, last, self._misses = self._misses, self._last_miss, 0
            self._pauses += 1
            self._stats["paused"] += 1
            delay = self._pause_backoff.delay(self._pauses)
        self._release_ahead()
        logger.error("%s: PAUSED: could not build %d jobs in a row and none ran; this conductor "
                     "looks misconfigured (the jobs stay on the board for others); last: %s; "
                     "claiming again in %.0fs", self._conductor.name, misses, last, delay)
        self._show_paused({"reason": redact(str(last))[:500], "jobs": misses,
                           "until": time.time() + delay})
        if self._stopping.wait(delay):
            return False
        self._show_paused(None)
        return True

    def _wait_out_storage(self) -> bool:
        """Persistence could not be reached for a job since the last claim: hand back the
        jobs claimed ahead and wait before claiming again (``backoff_base``, doubling while
        it stays down, at most ``backoff_max``): the jobs were released uncounted, so this
        wait, not theirs, spaces the tries. False once stopping."""
        if self._storage_down is None:  # the usual case, read without the lock
            return not self._stopping.is_set()
        with self._stats_lock:
            reason, self._storage_down = self._storage_down, None
            if reason is None:
                return not self._stopping.is_set()
            self._storage_waits += 1
            delay = self._backoff.delay(self._storage_waits)
        self._release_ahead()
        logger.warning("%s: persistence unavailable (%s); claiming again in %.2fs",
                       self._conductor.name, reason, delay)
        self._stopping.wait(delay)
        return not self._stopping.is_set()

    def _note_outcome(self, outcome: Outcome) -> None:
        """Count jobs that could not run here in a row (for ``_pause_if_misconfigured``) and
        note a persistence outage (for ``_wait_out_storage``)."""
        with self._stats_lock:
            if outcome.cause is Cause.STORAGE:
                self._storage_down = outcome.reason
                return
            self._storage_waits = 0
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
            if outcome.storage_error:
                self._metrics.storage_errors.inc()

    def _outcome_of(self, lease: Lease, persistence: Persistence) -> Outcome:
        job = lease.job
        if lease.cancelled is not None:  # cancelled while an earlier claim ran
            return Outcome(Action.TRASH, lease.cancelled, cause=Cause.CANCELLED)
        if job.attempts > self._max_attempts:
            return _job.exhausted(Tally.of(job.reason))
        history = self._history_of(lease)
        if self._jobboard.shares_database(persistence):
            history.joined = self._joined_consume(lease)
        try:
            engine = self._build_engine(job, persistence, lost=lease.lost, history=history)
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
            return _job.storage_down(exc)
        except errors.StorageCorrupted as exc:
            return self._corrupted(exc)
        except Exception as exc:  # e.g. the factory raised: maybe transient, so retry it
            return Outcome(Action.ABANDON, f"cannot build the engine: {exc!r}",
                           cause=Cause.FAILED)
        # No atom is called once the lease cannot be relied on (a pause past it between
        # recording an atom's start and calling it, say): its next owner runs it.
        engine.claim_trusted = lease.trusted
        return self._drive(lease, engine)

    def _joined_consume(self, lease: Lease) -> JoinedConsume:
        """The consume of ``lease``'s job to run with its flow's SUCCESS (``_joined``)."""
        renewer = self._renewer

        def committed() -> None:  # consumed: nothing left to renew
            if renewer is not None:
                renewer.remove(lease)

        return JoinedConsume(self._jobboard, lease.job, self._conductor.name,
                             claim_next=self._claims_with_consume(), ttl=self._claim_ttl,
                             committed=committed)

    def _claims_with_consume(self) -> Callable[[], bool] | None:
        """Hook: asked in the transaction that consumes a job with its flow's end, whether to
        claim the next job there too (None: never)."""
        return None

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
        if not self._engine_found:  # once found, a plugin stays loaded
            try:
                engine_mod.engine_class(kind)
            except (errors.UnknownBackend, errors.MissingDriver) as exc:
                raise _UnknownEngine from exc
            self._engine_found = True
        engine = engine_mod.load_from_detail(
            flow_detail, store=_job.merged_store(job, flow_detail),
            engine=self._engine or "serial", persistence=persistence, policy=self._policy,
            **{**self._engine_options, "fence": fence, "fence_lost": lost})
        if history is not None:
            history.flow_detail = engine.flow_detail
        return engine

    def _emitter(self) -> Callable[[str, dict[str, Any]], None]:
        """What emits a job's events: to the notifier's listeners, and to the debug log when
        it is on (asked once per job, not once per event)."""
        notifier = self._notifier
        if not self._log.isEnabledFor(logging.DEBUG):
            return notifier.notify if notifier else _ignore

        def emit(event_type: str, details: dict[str, Any]) -> None:
            notifier.notify(event_type, details)
            self._log_event(event_type, details)
        return emit

    def _drive(self, lease: Lease, engine: Any) -> Outcome:
        emit = self._emitter()
        quiet = emit is _ignore  # nobody listens: no payload, no calls (most jobs)
        payload = {} if quiet else {"job": lease.job, "engine": engine, "conductor": self}
        try:
            if quiet:
                engine.compile()
                engine.prepare()
                engine.validate()
            else:
                emit("compilation_start", payload)
                engine.compile()
                emit("compilation_end", payload)
                emit("preparation_start", payload)
                engine.prepare()
                emit("preparation_end", payload)
                emit("validation_start", payload)
                engine.validate()
                emit("validation_end", payload)
        except errors.MissingDependencies as exc:
            return self._invalid(lease, engine, exc)
        except errors.FencedOut as exc:
            return _fenced_out(lease.job, exc)
        except errors.StorageFailure as exc:
            return _job.storage_down(exc)
        except errors.StorageCorrupted as exc:
            return self._corrupted(exc)
        except Exception as exc:  # compilation or preparation failed: retried, then trashed
            return Outcome(Action.ABANDON, f"cannot prepare the flow: {exc!r}",
                           cause=Cause.FAILED)
        if not quiet:
            emit("running_start", payload)
        failure: Exception | None = None
        try:
            self._run_engine(engine, lease)
        except Exception as exc:
            failure = exc
        if not quiet:
            emit("running_end", payload)
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
            return _job.storage_down(failure)
        fd.state, fd.meta = failed.state, failed.meta
        return Outcome(Action.CONSUME, reason)

    def _run_engine(self, engine: Any, lease: Lease) -> None:
        # ``lease.trusted()`` spelled out: this runs at every atom boundary. The deadline is
        # read each time (the renewer moves it). After a suspend the run goes on to its end.
        stopping, lost, monotonic = self._stopping.is_set, lease.lost.is_set, time.monotonic
        states = engine.run_iter()
        for _state in states:
            if (stopping() or lost() or monotonic() >= lease.deadline
                    or lease.cancelled is not None):
                engine.suspend()
                break
        for _state in states:
            pass

    def _judge(self, engine: Any, lease: Lease, failure: Exception | None) -> Outcome:
        if isinstance(failure, errors.FencedOut):
            return _fenced_out(lease.job, failure)
        if failure is not None:
            corrupt = _job.found(failure, errors.StorageCorrupted)
            if corrupt is not None:
                return self._corrupted(corrupt)
            if _job.is_no_consume(failure, self.NO_CONSUME_EXCEPTIONS):
                storage = _job.found(failure, errors.StorageFailure) is not None
                return Outcome(Action.ABANDON, f"{type(failure).__name__}: {failure}",
                               cause=Cause.STORAGE_MID_RUN if storage else Cause.FAILED)
            return Outcome(Action.CONSUME, f"flow failed: {type(failure).__name__}: {failure}")
        if engine.flow_detail.state is not FlowState.SUSPENDED:
            return _job.CONSUMED
        if not lease.trusted():  # a cancel mark stays on the job for its next claim
            return Outcome(Action.ABANDON, "claim lost", delay=0.0, cause=Cause.LOST)
        if lease.cancelled is not None:
            return Outcome(Action.TRASH, lease.cancelled, cause=Cause.CANCELLED)
        if self._stopping.is_set():
            return Outcome(Action.ABANDON, "conductor stopping", delay=0.0,
                           cause=Cause.STOPPED)
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
            return _job.exhausted(tally)
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
        """Finish ``lease``'s job as ``outcome`` says (``ran_for``: seconds its run took, or
        None when it never ran) and emit its event."""
        del ran_for
        outcome, call = self._finishing_call(lease, outcome)
        self._complete(lease, persistence, outcome, call)

    def _joined(self, lease: Lease) -> JoinedConsume | None:
        """The consume that rode with the flow's SUCCESS, if it committed."""
        history: ClaimLog | None = lease.history
        joined = None if history is None else history.joined
        return joined if joined is not None and joined.done else None

    def _finishing_call(self, lease: Lease,
                        outcome: Outcome) -> tuple[Outcome, Callable[[], None]]:
        """The board call that finishes ``lease``'s job as ``outcome`` says, and the outcome
        with the reason that call stores (an abandon's carries the job's tally). A job
        consumed with its flow's SUCCESS is consumed whatever came after: only the board's
        announcement is left."""
        job, owner = lease.job, self._conductor.name
        if self._joined(lease) is not None:
            return _job.CONSUMED, functools.partial(self._jobboard.consumed, job)
        if outcome.action is Action.CONSUME:
            return outcome, functools.partial(self._jobboard.consume, job, owner)
        if outcome.action is Action.TRASH:
            return outcome, functools.partial(self._jobboard.trash, job, owner,
                                              reason=outcome.reason)
        if outcome.action is Action.RELEASE:
            return outcome, functools.partial(self._jobboard.release, job, owner)
        delay = outcome.delay if outcome.delay is not None else self._backoff.delay(job.attempts)
        outcome = dataclasses.replace(outcome, reason=self._abandon_reason(job, outcome))
        return outcome, functools.partial(self._jobboard.abandon, job, owner, delay=delay,
                                          reason=outcome.reason)

    def _complete(self, lease: Lease, persistence: Persistence, outcome: Outcome,
                  call: Callable[[], None]) -> None:
        """Make the finishing board ``call`` for ``lease``'s job and emit the job's event."""
        job, owner = lease.job, self._conductor.name
        ended = outcome  # how the claim ended: the outcome, unless the board call failed
        if self._tracing is not None:
            call = self._tracing.board_call(lease, outcome.action, call)
        try:
            self._call_board(call, lease)
        except errors.BoardDataLost as exc:
            # The job went with the board's data: it is neither consumed nor anyone's now.
            logger.error("%s: job %s was lost with the board's data before it could be %s: %s",
                         owner, job.uuid, _PAST[outcome.action], exc)
            self._count("board_errors")
            ended = Outcome(Action.ABANDON, f"board data lost: {exc}", cause=Cause.INTERRUPTED)
        except (errors.NotOwner, errors.NotFound) as exc:
            # Someone else holds the job now (our lease lapsed); they will finish it.
            logger.warning("%s: lost job %s before it could be %s%s: %s", owner, job.uuid,
                           _PAST[outcome.action], _because(outcome.reason), exc)
            if not lease.lost.is_set():
                self._count("claims_lost")
            ended = Outcome(Action.ABANDON, f"claim lost: {exc}", cause=Cause.LOST)
        except Exception as exc:  # board unreachable past the lease: the claim lapses by itself
            logger.warning("%s: could not finish job %s%s (%s); its claim will lapse", owner,
                           job.uuid, _because(outcome.reason), exc)
            ended = Outcome(Action.ABANDON, f"board unavailable: {exc}",
                            cause=Cause.INTERRUPTED)
        # The claim is over (or left to lapse): stop renewing it before anything else, so that
        # the claim loop, getting the job back, never takes this finished run for a live one.
        renewer = self._renewer
        if renewer is not None:
            renewer.remove(lease)
        self._history_of(lease).record(persistence, ended)
        name = _PAST[ended.action]
        self._count(name)
        if ended.cause is Cause.CANCELLED:
            self._count("cancelled")
        emit = self._emitter()
        if emit is not _ignore:
            emit(_EVENT[name], {"job": job, "conductor": self, "persistence": persistence,
                                "reason": ended.reason})

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
        job = details.get("job")
        self._log.debug("%s: %s %s%s", self._conductor.name, event_type,
                        getattr(job, "uuid", ""),
                        f" ({details['reason']})" if details.get("reason") else "")


_PAST = {Action.CONSUME: "consumed", Action.ABANDON: "abandoned", Action.TRASH: "trashed",
         Action.RELEASE: "abandoned"}
_EVENT = {name: f"job_{name}" for name in _PAST.values()}


def _ignore(_event_type: str, _details: dict[str, Any]) -> None:
    """Emits nothing: no listener, no debug log."""


class _UnknownEngine(Exception):
    """This conductor's engine kind does not exist here (the ``UnknownBackend`` is chained)."""


def _because(reason: str | None) -> str:
    """`` (reason)`` for a log line, or nothing."""
    return f" ({reason})" if reason else ""



def _fenced_out(job: Job, exc: errors.FencedOut) -> Outcome:
    """A newer claim took the job's flow over (or ours was lost before a revert): the job is
    another conductor's now; abandoned at once and not counted against its attempts."""
    logger.warning("job %s: claim lost, its engine stopped: %s", job.uuid, exc)
    return Outcome(Action.ABANDON, f"claim lost: {exc}", delay=0.0, cause=Cause.LOST)

def _positive(what: str, value: float | None, default: float) -> float:
    if value is None:
        return float(default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{what} must be a number > 0, not {value!r}")
    return float(value)
