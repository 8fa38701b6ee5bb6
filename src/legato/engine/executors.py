"""Where atoms' ``execute``/``revert`` calls run: the calling thread, a thread pool or a process
pool. The engine's scheduler always runs in the calling thread and talks to an executor through
``submit`` and ``wait``; only the atom's own method runs elsewhere.
"""

from __future__ import annotations

import concurrent.futures as cf
import pickle
from collections.abc import Callable
from typing import Any

from legato import errors
from legato.flow.task import progress_callback

__all__ = ["Executor", "ProcessExecutor", "SerialExecutor", "ThreadExecutor"]

#: (key, succeeded, result or exception)
Outcome = tuple[Any, bool, Any]
ProgressFn = Callable[[float], None] | None


def call_atom(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
              progress: ProgressFn) -> Any:
    """Call an atom's method with the engine's progress callback in place."""
    if progress is None:
        return fn(*args, **kwargs)
    token = progress_callback.set(progress)
    try:
        return fn(*args, **kwargs)
    finally:
        progress_callback.reset(token)


class Executor:
    """Runs calls and reports their outcomes. Not thread-safe: one scheduler thread uses it."""

    #: How many calls may run at once.
    capacity = 1

    def start(self) -> None:
        """Acquire resources (pools) before a run."""

    def submit(self, key: Any, fn: Callable[..., Any], args: tuple[Any, ...],
               kwargs: dict[str, Any], *, progress: ProgressFn = None,
               label: str = "") -> None:
        raise NotImplementedError

    def wait(self) -> list[Outcome]:
        """Block until at least one submitted call finished; return every finished one."""
        raise NotImplementedError

    def shutdown(self) -> None:
        """Wait for calls still running and release resources."""


class SerialExecutor(Executor):
    """Runs each call at once, in the calling thread."""

    def __init__(self) -> None:
        self._done: list[Outcome] = []

    def submit(self, key: Any, fn: Callable[..., Any], args: tuple[Any, ...],
               kwargs: dict[str, Any], *, progress: ProgressFn = None,
               label: str = "") -> None:
        try:
            self._done.append((key, True, call_atom(fn, args, kwargs, progress)))
        except Exception as exc:
            self._done.append((key, False, exc))

    def wait(self) -> list[Outcome]:
        done, self._done = self._done, []
        return done


class ThreadExecutor(Executor):
    """Runs calls in a thread pool of ``max_workers`` threads."""

    def __init__(self, max_workers: int | None = None) -> None:
        self.capacity = max_workers or 8
        self._pool: cf.Executor | None = None
        self._futures: dict[cf.Future[Any], Any] = {}

    def start(self) -> None:
        if self._pool is None:
            self._pool = self._make_pool()

    def _make_pool(self) -> cf.Executor:
        return cf.ThreadPoolExecutor(max_workers=self.capacity,
                                     thread_name_prefix="legato-engine")

    def submit(self, key: Any, fn: Callable[..., Any], args: tuple[Any, ...],
               kwargs: dict[str, Any], *, progress: ProgressFn = None,
               label: str = "") -> None:
        self.start()
        assert self._pool is not None
        future = self._pool.submit(call_atom, fn, args, kwargs, progress)
        self._futures[future] = key

    def wait(self) -> list[Outcome]:
        if not self._futures:
            return []
        done, _ = cf.wait(self._futures, return_when=cf.FIRST_COMPLETED)
        outcomes: list[Outcome] = []
        for future in done:
            key = self._futures.pop(future)
            exc = future.exception()
            outcomes.append((key, exc is None, exc if exc is not None else future.result()))
        return outcomes

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._futures.clear()


def _child_call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                label: str) -> Any:
    result = fn(*args, **kwargs)
    try:
        pickle.dumps(result)
    except Exception as exc:
        raise errors.SerializationError(
            f"{label}: its result cannot be pickled back from the process engine's worker: "
            f"{exc}") from None
    return result


class ProcessExecutor(ThreadExecutor):
    """Runs calls in a pool of ``max_workers`` processes.

    Only the atom's method runs in the child: the atom, its arguments and its result must
    pickle (a ``SerializationError`` naming the atom says when they do not). Progress reported
    from the child is not forwarded.
    """

    def _make_pool(self) -> cf.Executor:
        return cf.ProcessPoolExecutor(max_workers=self.capacity)

    def submit(self, key: Any, fn: Callable[..., Any], args: tuple[Any, ...],
               kwargs: dict[str, Any], *, progress: ProgressFn = None,
               label: str = "") -> None:
        self.start()
        assert self._pool is not None
        try:
            pickle.dumps((fn, args, kwargs))
        except Exception as exc:
            failed: cf.Future[Any] = cf.Future()
            error = errors.SerializationError(
                f"{label}: the atom or its arguments cannot be pickled for the process "
                f"engine: {exc}")
            error.__cause__ = exc
            error.not_started = True  # type: ignore[attr-defined]
            failed.set_exception(error)
            self._futures[failed] = key
            return
        self._futures[self._pool.submit(_child_call, fn, args, kwargs, label)] = key
