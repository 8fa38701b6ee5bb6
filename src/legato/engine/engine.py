"""Engines: compile a flow, record every step in persistence, run it to an outcome.

Three kinds ship (plugins of the ``legato.engines`` entry point group): ``SerialEngine`` runs
tasks in the calling thread, ``ParallelEngine`` in a thread pool, ``ProcessEngine`` in a process
pool. They differ only in their executor.

Events. ``engine.notifier`` emits the flow's new state (a ``FlowState`` value) with
``{"flow_name", "flow_uuid", "old_state", "engine"}``. ``engine.atom_notifier`` emits an atom's
new state (an ``AtomState`` value) with ``{"atom_name", "atom_uuid", "flow_name", "flow_uuid",
"old_state", "engine"}``, TaskFlow's ``"task_name"``/``"task_uuid"`` (a retry's:
``"retry_name"``/``"retry_uuid"``), plus ``"result"`` on SUCCESS and REVERTED and both
``"failure"`` and ``"result"`` (the same ``Failure``) on FAILURE and REVERT_FAILURE; and
``"PROGRESS"`` with ``{"atom_name", "atom_uuid", "flow_uuid", "progress", "engine"}``.
Listeners run in the engine's thread.

Durability: each change is written before the engine moves on: an atom's result at the latest
with the next atom's start or the flow's end state, in one transaction (``Storage``), so nothing
runs before the results it follows are recorded. A task left RUNNING by a crash (or whose result
was not written yet) runs again when the flow resumes, so tasks must be idempotent
(at-least-once execution).

Fencing: an engine given a ``fence`` (a conductor's claim, recorded on the flow detail with
``Persistence.take_flow``) makes every write conditional on it. Once a write is refused
(``FencedOut``: a newer claim took the flow over), or once ``fence_lost`` is set, the engine
stops at once and never reverts anything: what is recorded belongs to the new owner.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from legato import errors, notifier
from legato.engine import executors
from legato.engine.compiler import CompiledFlow, compile_flow
from legato.engine.runtime import RunContext, Runtime
from legato.engine.storage import Storage
from legato.flow.patterns import Flow
from legato.persistence.base import Persistence
from legato.persistence.models import AtomDetail, Fence, FlowDetail
from legato.states import AtomState, EngineState, FlowState

__all__ = ["Engine", "ParallelEngine", "ProcessEngine", "SerialEngine"]

logger = logging.getLogger(__name__)

PROGRESS = "PROGRESS"


class Engine:
    """Runs one flow, recording its progress in one flow detail. Use ``legato.engine.load``.

    Args:
        flow: the flow to run.
        flow_detail: where its progress is recorded (saved in ``persistence`` already).
        persistence: the backend to write to.
        store: inputs for the flow, merged over ``flow_detail.meta["store"]``.
        fence: the claim every write is conditional on (taken with ``Persistence.take_flow``
            before the flow detail was read); None writes unconditionally.
        fence_lost: set by the caller once the claim behind ``fence`` is known lost: from then
            on the engine never starts or continues a revert (it raises ``FencedOut``), and
            the caller should ``suspend()`` it.
        defer_reverts: TaskFlow's option of that name (a bool, or a string such as ``"true"``
            from a URL or a configuration file). When a subflow's retry gives up (REVERT) and
            every enclosing retry says REVERT too: True reverts the whole flow; False (the
            default, as in TaskFlow) reverts only that subflow, and the flow ends REVERTED
            with its other atoms as they stand.

    Attributes:
        record_durations: when True as a run starts, each atom's ``meta["duration"]``
            (``meta["revert_duration"]``) gets how long its execute (revert) call took, float
            seconds, in the write that records its end state: timing costs no write
            (``TimingListener`` turns it on).
        atom_timer: when set as a run starts, called with each atom's end state and how long
            its execute (revert) call took, float seconds, as that end state is recorded (a
            conductor's metrics time atoms with it: no event is built for them).
        claim_trusted: when set as a run starts, asked right before each atom's execute
            (revert) call, after its start is recorded: False stops the run with
            ``FencedOut`` and the call is not made. A conductor sets it to its lease's check
            (not lost, deadline not passed), so a process paused past its lease between
            recording an atom's start and calling it does not run the atom after the job's
            next owner did.
    """

    kind: ClassVar[str] = "serial"

    def __init__(self, flow: Flow, *, flow_detail: FlowDetail, persistence: Persistence,
                 store: dict[str, Any] | None = None, fence: Fence | None = None,
                 fence_lost: threading.Event | None = None,
                 defer_reverts: bool | int | str = False, **options: Any) -> None:
        if options:
            raise TypeError(f"{self.kind} engine: unknown options {sorted(options)}")
        self.defer_reverts = _as_bool("defer_reverts", defer_reverts)
        self.flow = flow
        self.flow_detail = flow_detail
        self.persistence = persistence
        self.fence_lost = fence_lost if fence_lost is not None else threading.Event()
        self.storage = Storage(persistence, flow_detail, store, fence=fence)
        self.notifier = notifier.Notifier()
        self.atom_notifier = notifier.Notifier()
        self.suspend_event = threading.Event()
        self.executor = self._make_executor()
        self._compiled: CompiledFlow | None = None
        self._details: list[AtomDetail] | None = None
        self._validated = False
        self._stats: dict[str, Any] = {"runs": 0}
        self.record_durations = False
        self.atom_timer: Callable[[str, float], None] | None = None
        self.claim_trusted: Callable[[], bool] | None = None

    def _make_executor(self) -> executors.Executor:
        return executors.SerialExecutor()

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def compiled(self) -> CompiledFlow:
        """The compiled flow (compiling on first use)."""
        if self._compiled is None:
            self.compile()
        assert self._compiled is not None
        return self._compiled

    def compile(self) -> None:
        """Compile the flow. Idempotent.

        Raises:
            CompilationError: duplicate names; ``DependencyFailure`` (one) for a cycle.
            AmbiguousDependency: several providers for one consumer's argument.
        """
        if self._compiled is None:
            started = time.perf_counter()
            self._compiled = compile_flow(self.flow)
            self._stats["compile_s"] = time.perf_counter() - started

    def prepare(self) -> None:
        """Create (or load) every atom's detail; new ones are saved in one write (with a
        ``fence``: with the run's first write, the flow's RUNNING). Idempotent."""
        self._prepare(write=self.storage.fence is None)

    def _prepare(self, *, write: bool) -> None:
        if self._details is None:
            self._details = self.storage.prepare(self.compiled, write=write)
        elif write:
            self.storage.flush()

    def validate(self) -> None:
        """Check every argument of every atom still to run can be found, and every argument
        of its own that an atom's ``revert`` takes.

        Raises:
            MissingDependencies: naming every missing argument of every atom.
        """
        self._validate(write=self.storage.fence is None)

    def _validate(self, *, write: bool) -> None:
        self._prepare(write=write)
        assert self._details is not None
        missing: dict[str, list[str]] = {}
        store = self.storage.store
        for ca, ad in zip(self.compiled.atoms, self._details, strict=True):
            names: set[str] = set()
            if ca.sources and ad.state != AtomState.SUCCESS:
                names = {key for provider, key in ca.sources.values()
                         if provider is None and key not in store}
            if ca.revert_sources:  # a succeeded atom may still have to revert
                names.update(key for provider, key in ca.revert_sources.values()
                             if provider is None and key not in store)
            if names:
                missing[ca.name] = sorted(names)
        if missing:
            raise errors.MissingDependencies(missing)
        self._validated = True

    def run(self) -> None:
        """Run the flow to an outcome (see ``run_iter``)."""
        for _ in self.run_iter():
            pass

    def run_iter(self) -> Iterator[EngineState]:
        """Run the flow, yielding ``EngineState`` values between steps.

        The caller may call ``suspend()`` between yields and must keep iterating until the
        generator ends. The last state is SUCCESS, REVERTED, FAILURE or SUSPENDED; after
        REVERTED or FAILURE the generator raises the failed task's exception (one failure) or a
        ``WrappedFailure`` (several).

        Raises:
            StorageFailure: persistence failed (the flow is left to resume later).
            FencedOut: a newer claim took the flow detail over, or ``fence_lost`` was set
                before a revert (nothing more was written; the flow is the new owner's).
            ExecutionFailure: the engine itself failed (not a task).
            MissingDependencies: see ``validate``.
        """
        # Atoms created here are saved with the RUNNING state, in one write.
        self._validate(write=False)
        assert self._details is not None
        runtime = Runtime(self._run_context(), self._details)
        started = time.perf_counter()
        self._stats["runs"] += 1
        self.executor.start()
        try:
            yield from runtime.run()
        except (errors.LegatoError, GeneratorExit):
            raise
        except Exception as exc:
            if runtime.reraising:
                raise
            raise errors.ExecutionFailure(f"engine for flow {self.flow.name!r} failed: "
                                          f"{exc!r}") from exc
        finally:
            self.executor.shutdown()
            self._stats["run_s"] = time.perf_counter() - started
            for key, count in runtime.counts.items():
                self._stats[key] = self._stats.get(key, 0) + count
            self.suspend_event.clear()

    def _run_context(self) -> RunContext:
        return RunContext(storage=self.storage, compiled=self.compiled, executor=self.executor,
                          suspend_event=self.suspend_event, fence_lost=self.fence_lost,
                          emit_flow=self.emit_flow, emit_atom=self.emit_atom,
                          progress_callback=self.progress_callback,
                          defer_reverts=self.defer_reverts,
                          record_durations=self.record_durations,
                          atom_timer=self.atom_timer, claim_trusted=self.claim_trusted)

    def suspend(self) -> None:
        """Ask a running engine to stop at the next atom boundary (thread-safe).

        Atoms already running finish and are recorded; then the flow is SUSPENDED.
        """
        self.suspend_event.set()

    def reset(self) -> None:
        """Forget every atom's outcome (all PENDING) so the flow can run from the start."""
        self.prepare()
        assert self._details is not None
        for ad in self._details:
            ad.state = AtomState.PENDING
            ad.results = [] if ad.KIND == "retry" else None
            ad.failure = ad.revert_results = ad.revert_failure = None
            self.storage.save(ad)
        self.storage.save_flow_state(FlowState.PENDING)

    @property
    def statistics(self) -> dict[str, Any]:
        """Counters and timings of this engine: ``runs``, ``executed`` (atom executions),
        ``reverted``, ``retried`` (scope retries), ``compile_s`` and ``run_s`` (last run)."""
        return dict(self._stats)

    # -- events ----------------------------------------------------------------------------

    def emit_flow(self, state: FlowState, old: FlowState | None) -> None:
        if self.notifier:
            self.notifier.notify(str(state), {
                "flow_name": self.flow_detail.name, "flow_uuid": self.flow_detail.uuid,
                "old_state": old, "engine": self})

    def emit_atom(self, ad: AtomDetail, old: AtomState, **extra: Any) -> None:
        if self.atom_notifier:  # the details are built only when someone listens
            name, uuid = ad.name, ad.uuid
            details = {"atom_name": name, "atom_uuid": uuid,
                       "flow_name": self.flow_detail.name, "flow_uuid": self.flow_detail.uuid,
                       "old_state": old, "engine": self}
            # TaskFlow's keys, so its listeners work unchanged: the kind's name and uuid,
            # and ``result`` on the finishing states (a failure's is the ``Failure``).
            if ad.KIND == "retry":
                details["retry_name"], details["retry_uuid"] = name, uuid
            else:
                details["task_name"], details["task_uuid"] = name, uuid
            details.update(extra)
            if "failure" in extra:
                details["result"] = extra["failure"]
            self.atom_notifier.notify(str(ad.state), details)

    def progress_callback(self, ad: AtomDetail) -> Callable[[float], None]:
        """A callback persisting ``ad``'s progress (``meta["progress"]``) and emitting it."""
        def report(progress: float) -> None:
            ad.meta["progress"] = progress
            self.storage.save_progress(ad)
            if self.atom_notifier:
                self.atom_notifier.notify(PROGRESS, {
                    "atom_name": ad.name, "atom_uuid": ad.uuid,
                    "flow_uuid": self.flow_detail.uuid, "progress": progress, "engine": self})
        return report

    def __repr__(self) -> str:
        return f"<{type(self).__name__} flow={self.flow.name!r} detail={self.flow_detail.uuid}>"


_TRUE = frozenset({"1", "true", "yes", "on", "y", "t"})
_FALSE = frozenset({"0", "false", "no", "off", "n", "f", ""})


def _as_bool(name: str, value: bool | int | str) -> bool:
    """An option's boolean value, from a bool, 0/1 or a string (a URL's query)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"{name} must be a boolean, not {value!r}")


class SerialEngine(Engine):
    """Runs every task in the calling thread, one at a time."""

    kind = "serial"


class ParallelEngine(Engine):
    """Runs independent tasks at once in a thread pool.

    Args:
        max_workers: threads in the pool (default 8).
    """

    kind = "parallel"

    def __init__(self, flow: Flow, *, max_workers: int | None = None, **kwargs: Any) -> None:
        self.max_workers = int(max_workers) if max_workers else None
        super().__init__(flow, **kwargs)

    def _make_executor(self) -> executors.Executor:
        return executors.ThreadExecutor(self.max_workers)


class ProcessEngine(ParallelEngine):
    """Runs tasks' ``execute``/``revert`` in a process pool (for CPU-bound tasks).

    Tasks, their arguments and their results must pickle; a ``SerializationError`` naming the
    task says when they do not. Progress reported in the child process is not forwarded.

    Args:
        max_workers: processes in the pool (default 8).
    """

    kind = "process"

    def _make_executor(self) -> executors.Executor:
        return executors.ProcessExecutor(self.max_workers)
