"""Tasks: atoms that do work (``execute``) and can undo it (``revert``)."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, overload

from legato.flow.atom import Atom, accepted_kwargs

__all__ = ["FunctionTask", "Task", "progress_callback", "task"]

logger = logging.getLogger(__name__)

#: Set by the engine around ``execute``/``revert``: called with the atom's progress (0..1).
#: A context variable rather than an attribute, so one task object may run in several engines.
progress_callback: contextvars.ContextVar[Callable[[float], None] | None] = (
    contextvars.ContextVar("legato_progress_callback", default=None))


class Task(Atom):
    """A unit of work. Subclass it and define ``execute``; define ``revert`` to undo it.

    ``execute``'s parameters are the task's inputs (see ``Atom``); its return value is stored
    under the names in ``provides``. Engines may run a task again after a crash (a task left
    RUNNING when its process died runs again on resume), so tasks must be idempotent. An
    exception from ``execute`` fails the task (and starts a revert), except
    ``legato.errors.StorageFailure``, which stops the engine without reverting anything.

    ``revert`` receives the same inputs as ``execute`` (those its signature accepts), plus
    ``result`` (what ``execute`` returned, or the ``Failure`` if it failed) and
    ``flow_failures`` (``{atom name: Failure}`` of the failures that caused the revert). It may
    take arguments of its own: named in its signature or in ``revert_requires``, mapped by
    ``revert_rebind`` (default: ``rebind``); they are required like execute's, and checked
    before anything runs.
    """

    _revert_engine_args = ("result", "flow_failures")

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        """Do the work; return the result (stored as JSON)."""
        raise NotImplementedError

    def revert(self, *args: Any, **kwargs: Any) -> Any:
        """Undo ``execute``. The default does nothing."""
        return None

    def update_progress(self, progress: float) -> None:
        """Report progress between 0.0 and 1.0; the engine persists it in the atom's meta.

        Outside an engine (or in a process engine's child) this only logs.
        """
        progress = min(1.0, max(0.0, float(progress)))
        callback = progress_callback.get()
        if callback is None:
            logger.debug("task %r progress %.2f (no engine listening)", self.name, progress)
            return
        callback(progress)


class FunctionTask(Task):
    """A task whose ``execute`` is a plain function (see ``task``).

    Calling the object calls the function, so decorated functions stay testable.
    """

    def __init__(self, fn: Callable[..., Any], name: str | None = None, *,
                 revert: Callable[..., Any] | None = None, provides: Any = None,
                 requires: Iterable[str] = (),
                 rebind: Mapping[str, str] | list[str] | None = None,
                 inject: Mapping[str, Any] | None = None, version: str | None = None,
                 revert_requires: Iterable[str] = (),
                 revert_rebind: Mapping[str, str] | list[str] | None = None) -> None:
        self.fn = fn
        self.revert_fn = revert
        super().__init__(name or f"{fn.__module__}.{fn.__qualname__}", provides=provides,
                         requires=requires, rebind=rebind, inject=inject, version=version,
                         revert_requires=revert_requires, revert_rebind=revert_rebind)

    def _signature_target(self) -> Callable[..., Any]:
        return self.fn

    def _revert_signature_target(self) -> Callable[..., Any] | None:
        return self.revert_fn

    def _revert_takes_named_args(self) -> bool:
        return self.revert_fn is not None

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def revert(self, *args: Any, **kwargs: Any) -> Any:
        if self.revert_fn is None:
            return None
        names = accepted_kwargs(self.revert_fn)
        if names is not None:
            kwargs = {k: v for k, v in kwargs.items() if k in names}
        return self.revert_fn(*args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        # The module attribute named like the function is usually this task (the decorator
        # replaced it), so pickle the function by reference to its module and qualname.
        state = {k: v for k, v in self.__dict__.items() if k != "fn"}
        if _resolve_function(self.fn.__module__, self.fn.__qualname__) is self.fn:
            return (_rebuild, (self.fn.__module__, self.fn.__qualname__, None, state))
        return (_rebuild, (None, None, self.fn, state))

    def copy(self, **overrides: Any) -> FunctionTask:
        """A new task for the same function, with some constructor arguments changed
        (typically ``name`` and ``rebind``, to use one function twice in a flow)."""
        params: dict[str, Any] = {
            "name": self.name, "revert": self.revert_fn, "provides": self.provides_spec,
            "inject": self.inject, "version": self.version, "rebind": self.rebind_spec,
            "requires": self.requires_spec, "revert_requires": self.revert_requires_spec,
            "revert_rebind": self.revert_rebind_spec,
        }
        params.update(overrides)
        return FunctionTask(self.fn, **params)


@overload
def task(fn: Callable[..., Any], /) -> FunctionTask: ...


@overload
def task(*, provides: Any = None, name: str | None = None,
         revert: Callable[..., Any] | None = None, requires: Iterable[str] = (),
         rebind: Mapping[str, str] | list[str] | None = None,
         inject: Mapping[str, Any] | None = None, version: str | None = None,
         revert_requires: Iterable[str] = (),
         revert_rebind: Mapping[str, str] | list[str] | None = None,
         ) -> Callable[[Callable[..., Any]], FunctionTask]: ...


def task(fn: Callable[..., Any] | None = None, /, **options: Any,
         ) -> FunctionTask | Callable[[Callable[..., Any]], FunctionTask]:
    """Turn a plain function into a ``FunctionTask``; usable bare or with options::

        @task(provides="total")
        def add(a, b):
            return a + b

    The result is a task object (add it to flows; ``add.copy(name=...)`` for a second use)
    that still calls the function when called.
    """
    if fn is not None:
        return FunctionTask(fn, **options)

    def decorate(func: Callable[..., Any]) -> FunctionTask:
        return FunctionTask(func, **options)

    return decorate


def _resolve_function(module: str, qualname: str) -> Any:
    import importlib

    try:
        target: Any = importlib.import_module(module)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError):
        return None
    return target.fn if isinstance(target, FunctionTask) else target


def _rebuild(module: str | None, qualname: str | None, fn: Callable[..., Any] | None,
             state: dict[str, Any]) -> FunctionTask:
    obj = FunctionTask.__new__(FunctionTask)
    obj.__dict__.update(state)
    obj.fn = fn if fn is not None else _resolve_function(module or "", qualname or "")
    return obj
