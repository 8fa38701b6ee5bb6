"""The blocking conductor: runs each job in the thread that called ``run()``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent import futures
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from legato.conductor.executor import ExecutorConductor

if TYPE_CHECKING:
    from legato.conductor._metrics import ConductorMetrics
    from legato.jobboard.base import JobBoard
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
    call that consumes a job also claims the next one; while jobs are short (under
    ``claim_ahead_below`` seconds) it is sent without waiting and claims one job ahead, so the
    board works while the next job runs. Arguments are those of ``ExecutorConductor``.
    """

    #: Default maximum number of jobs that can be in progress at the same time.
    MAX_SIMULTANEOUS_JOBS = 1

    #: Consuming a job claims the next one in the same board call: it runs at once, here.
    CHAIN_CLAIMS = True

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
                         claim_ahead_below=claim_ahead_below, pause_after=pause_after,
                         pause_for=pause_for, tracer_provider=tracer_provider)

    def _executor_factory(self) -> futures.Executor:
        return _InlineExecutor()
