"""The non-blocking conductor: runs jobs on an executor, several at once."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable
from concurrent import futures
from typing import TYPE_CHECKING, Any

from legato.conductor.executor import ExecutorConductor

if TYPE_CHECKING:
    from legato.conductor._metrics import ConductorMetrics
    from legato.jobboard.base import JobBoard
    from legato.persistence.base import Persistence

__all__ = ["NonBlockingConductor"]

#: Called with this conductor (the seed's form) or with no argument (TaskFlow's own form).
ExecutorFactory = (Callable[["NonBlockingConductor"], futures.Executor]
                   | Callable[[], futures.Executor])


class NonBlockingConductor(ExecutorConductor):
    """Non-blocking conductor that processes job(s) using a thread executor.

    A custom executor factory can be provided via keyword argument ``executor_factory``; if
    provided it will be invoked at ``run()`` time with one positional argument (this conductor)
    and it must return a compatible executor which can be used to submit jobs to. A factory
    whose parameters all have defaults (or none at all, as TaskFlow's own code and tests pass
    it) is called with no argument instead: its signature decides, once, at construction. If
    None, a thread pool with ``max_simultaneous_jobs`` workers is used (unbounded jobs get the
    default pool size). Other arguments are those of ``ExecutorConductor``.

    Raises:
        ValueError: ``executor_factory`` is given but not callable.
        TypeError: ``executor_factory`` takes neither no argument nor one.
    """

    #: Default maximum number of jobs that can be in progress at the same time.
    MAX_SIMULTANEOUS_JOBS = 9

    def __init__(self, name: str, jobboard: JobBoard, persistence: Persistence | None = None,
                 engine: str | None = None, engine_options: dict[str, Any] | None = None,
                 wait_timeout: float | None = None, log: logging.Logger | None = None,
                 max_simultaneous_jobs: int = MAX_SIMULTANEOUS_JOBS,
                 executor_factory: ExecutorFactory | None = None, *,
                 allowed_factories: Iterable[str] = (), max_attempts: int = 5,
                 claim_ttl: float | None = None, backoff_base: float = 1.0,
                 backoff_max: float = 60.0, board_backoff_base: float = 0.1,
                 board_backoff_max: float = 5.0,
                 metrics: ConductorMetrics | None = None, pause_after: int = 3,
                 pause_for: float = 10.0, tracer_provider: Any = None) -> None:
        super().__init__(name, jobboard, persistence, engine, engine_options, wait_timeout, log,
                         max_simultaneous_jobs, allowed_factories=allowed_factories,
                         max_attempts=max_attempts, claim_ttl=claim_ttl,
                         backoff_base=backoff_base, backoff_max=backoff_max,
                         board_backoff_base=board_backoff_base,
                         board_backoff_max=board_backoff_max, metrics=metrics,
                         pause_after=pause_after,
                         pause_for=pause_for, tracer_provider=tracer_provider)
        if executor_factory is not None and not callable(executor_factory):
            raise ValueError(f"executor_factory must be callable, not {executor_factory!r}")
        self._custom_executor_factory = executor_factory
        self._factory_takes_conductor = (executor_factory is not None
                                         and _takes_one_argument(executor_factory))

    def _executor_factory(self) -> futures.Executor:
        factory: Any = self._custom_executor_factory
        if factory is not None:
            executor: futures.Executor = (factory(self) if self._factory_takes_conductor
                                          else factory())
            return executor
        workers = self._max_simultaneous_jobs if self._max_simultaneous_jobs > 0 else None
        return futures.ThreadPoolExecutor(max_workers=workers,
                                          thread_name_prefix=f"legato-{self.name}")


def _takes_one_argument(factory: Callable[..., Any]) -> bool:
    """True if ``factory`` needs one positional argument, False if it needs none.

    Raises:
        TypeError: it needs more, or a keyword-only one.
    """
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # no signature to read (some builtins): the seed's form
        return True
    param = inspect.Parameter
    required = [p for p in signature.parameters.values() if p.default is param.empty
                and p.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD)]
    positional = (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD)
    if not required:
        return False
    if len(required) == 1 and required[0].kind in positional:
        return True
    raise TypeError(f"executor_factory must take no argument or one (the conductor), "
                    f"not {getattr(factory, '__qualname__', factory)!r}{signature}")
