"""The blocking conductor: runs each job in the thread that called ``run()``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent import futures
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from legato.conductor._ahead import ClaimAhead
from legato.conductor.executor import ExecutorConductor

if TYPE_CHECKING:
    from legato.conductor._job import Outcome
    from legato.conductor._metrics import ConductorMetrics
    from legato.conductor._renewal import Lease, Renewer
    from legato.jobboard.base import Job, JobBoard
    from legato.persistence.base import Persistence

__all__ = ["BlockingConductor"]

P = ParamSpec("P")
T = TypeVar("T")


class _InlineExecutor(futures.Executor):
    """Runs each submitted call at once, in the submitting thread.

    ``KeyboardInterrupt``/``SystemExit`` propagate to the caller of ``run()`` instead of being
    parked in a future nobody reads.
    """

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> futures.Future[T]:
        future: futures.Future[T] = futures.Future()
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:  # handed to the future, as a thread pool would
            future.set_exception(exc)
        else:
            future.set_result(result)
        return future


class BlockingConductor(ExecutorConductor):
    """Blocking conductor that processes job(s) in a blocking manner.

    Each claimed job runs to its end (or suspension) in the thread that called ``run()``. The
    call that consumes a job also claims the next one (one round trip instead of two); while
    jobs are short it is sent without waiting and claims one job ahead, so the board works
    while the next job runs (``legato.conductor._ahead.ClaimAhead``). Arguments are those of
    ``ExecutorConductor``, and:

    Args:
        claim_ahead_below: on boards that answer later (``Capabilities.sends_without_waiting``:
            Redis, ZooKeeper): after a job that took less than this many seconds, the call
            that consumes it also claims the job after next, and its answer is read when the
            next job ends. So the conductor holds one job it has not started yet (two on
            boards with ``Capabilities.pipelined_sends``, one more for each further call a
            board gathers into one request: three on ZooKeeper), for about one short job's
            time each (``CLAIM_AHEAD_HOLD`` at most, then it is released uncounted), and
            ``job_consumed`` for a job (with its reason, e.g. a validation failure's) comes
            when the following job (or one of the next two or three) ends.
            ``CLAIM_AHEAD_BELOW`` when None; 0 turns claiming ahead off.
    """

    #: Default maximum number of jobs that can be in progress at the same time.
    MAX_SIMULTANEOUS_JOBS = 1

    #: After a job that ran for less than this many seconds, the conductor claims one job
    #: ahead (see ``claim_ahead_below``); 0 never does.
    CLAIM_AHEAD_BELOW = 0.05

    #: A job claimed ahead that has not started after this many seconds (at most a quarter of
    #: the claim TTL) is handed back to the board with ``JobBoard.release``.
    CLAIM_AHEAD_HOLD = 0.5

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
        super().__init__(name, jobboard, persistence, engine, engine_options, wait_timeout, log,
                         max_simultaneous_jobs, allowed_factories=allowed_factories,
                         max_attempts=max_attempts, claim_ttl=claim_ttl,
                         backoff_base=backoff_base, backoff_max=backoff_max,
                         board_backoff_base=board_backoff_base,
                         board_backoff_max=board_backoff_max, metrics=metrics,
                         pause_after=pause_after, pause_for=pause_for,
                         tracer_provider=tracer_provider)
        if claim_ahead_below is None:
            claim_ahead_below = self.CLAIM_AHEAD_BELOW
        if (isinstance(claim_ahead_below, bool) or not isinstance(claim_ahead_below, int | float)
                or not claim_ahead_below >= 0):
            raise ValueError(f"claim_ahead_below must be a number >= 0, not "
                             f"{claim_ahead_below!r}")
        self._ahead = ClaimAhead(jobboard, self._conductor.name, claim_ttl=self._claim_ttl,
                                 below=float(claim_ahead_below), hold=self.CLAIM_AHEAD_HOLD,
                                 complete=self._complete, release=self._release_unstarted,
                                 stopping=self._stopping)

    def _executor_factory(self) -> futures.Executor:
        return _InlineExecutor()

    def _wait_for_slot(self) -> bool:
        """Jobs run inline, on this very thread: when the claim loop asks, none is running,
        so there is always a slot (whatever ``max_simultaneous_jobs`` says)."""
        return not self._stopping.is_set()

    def _submit(self, executor: futures.Executor, lease: Lease, persistence: Persistence,
                renewer: Renewer) -> None:
        """Run the job here and now, in the claim loop's thread: nothing else runs jobs, so
        there is no future to make, no slot to wait for and nobody to notify (the executor
        the base class would submit to runs calls inline anyway)."""
        del executor
        self._inflight = 1  # only this thread writes it; ``jobs_in_flight`` reads it
        try:
            self._process(lease, persistence)
        finally:
            renewer.remove(lease)
            self._inflight = 0

    # -- the claim loop's hooks: jobs are claimed ahead (see ``ClaimAhead`` for threads) ----

    def _start_claims(self, ttl: float) -> float:
        self._ahead.start(ttl)
        # Wake often enough to hand back a job claimed ahead within its hold time.
        return min(ttl / 6, self._ahead.hold / 2) if self._ahead.below else ttl / 6

    def _claimed_ahead(self) -> tuple[Job, float] | None:
        return self._ahead.take()

    def _dispatched(self, room: int | None) -> None:
        self._ahead.dispatched(room)

    def _release_ahead(self) -> None:
        self._ahead.release_all()

    def _end_claims(self) -> None:
        self._ahead.stop()

    def _tick(self, ttl: float) -> None:
        super()._tick(ttl)
        self._ahead.release_stale()

    def _finish(self, lease: Lease, persistence: Persistence, outcome: Outcome, *,
                ran_for: float | None = None) -> None:
        outcome, call = self._finishing_call(lease, outcome)
        joined = self._joined(lease)
        if joined is not None:
            self._ahead.finish_consumed(lease, persistence, outcome, call, joined.following)
            return
        self._ahead.finish(lease, persistence, outcome, call, ran_for=ran_for)

    def _claims_with_consume(self) -> Callable[[], bool] | None:
        return self._ahead.wants_next
