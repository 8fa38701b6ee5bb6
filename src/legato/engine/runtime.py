"""One run of a compiled flow: scheduling, completion, retries and reverts.

The scheduler runs in the engine's calling thread. Each atom's state change is written to
persistence (``Storage.save``) before the scheduler moves on; task methods run in the executor.

A refused write (``FencedOut``) ends the run where it happens, and a run whose claim is known
lost (``RunContext.fence_lost``) never starts or continues a revert: the flow's recorded state is
left for its new owner, whose writes are the only ones that land.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn

from legato import errors
from legato.failure import Failure
from legato.flow.atom import accepted_kwargs, extract_result
from legato.flow.retry import Decision, History, Retry
from legato.persistence.models import AtomDetail
from legato.states import AtomState, EngineState, FlowState, Intention

if TYPE_CHECKING:
    from legato.engine.compiler import CompiledAtom, CompiledFlow, Scope
    from legato.engine.executors import Executor
    from legato.engine.storage import Storage

__all__ = ["RunContext", "Runtime"]

logger = logging.getLogger(__name__)

_DONE = (AtomState.SUCCESS, AtomState.IGNORE)
_TO_REVERT = frozenset({AtomState.SUCCESS, AtomState.FAILURE, AtomState.REVERTING,
                        AtomState.REVERT_FAILURE, AtomState.RUNNING, AtomState.RETRYING})
_EXECUTE, _REVERT = "execute", "revert"
#: The end states' names, as an ``atom_timer`` gets them (an enum's ``value`` is a property).
_ENDED_SUCCESS, _ENDED_FAILURE = AtomState.SUCCESS.value, AtomState.FAILURE.value
_ENDED_REVERTED, _ENDED_REVERT_FAILURE = (AtomState.REVERTED.value,
                                          AtomState.REVERT_FAILURE.value)


class RunContext(NamedTuple):
    """What one run needs from its engine, and no more (a named tuple: built once per run,
    cheaper than a frozen dataclass's field-by-field ``object.__setattr__``).

    Attributes:
        storage: where every state change is written.
        compiled: the compiled flow.
        executor: runs the atoms' methods (started and shut down by the engine).
        suspend_event: set to stop at the next atom boundary.
        fence_lost: set once the engine's claim is known lost (no revert starts or goes on).
        emit_flow: called with the new and the old flow state after each change is saved.
        emit_atom: called with an atom's detail, its old state and any ``result=``/``failure=``
            after each change is saved.
        progress_callback: returns the callback an atom reports its progress to.
        defer_reverts: when every retry up to the top says REVERT, revert the whole flow
            (TaskFlow's ``defer_reverts``); otherwise only the innermost failed scope is
            reverted and the flow ends REVERTED with the rest of it as it stands.
        record_durations: stamp how long each atom's execute (revert) call took in its
            ``meta["duration"]`` (``meta["revert_duration"]``), float seconds, in the write
            that records the atom's end state (no write of its own).
        atom_timer: called with each atom's end state (``SUCCESS``, ``FAILURE``, ``REVERTED``,
            ``REVERT_FAILURE``) and the seconds its execute (revert) call took, once that end
            state is recorded (saved, or due with the next write); never for an atom whose
            end state could not be recorded.
        claim_trusted: when set, asked after an atom's RUNNING (REVERTING) state is recorded
            and right before its execute (revert) call starts: False means the claim behind
            the engine's fence can no longer be relied on (its lease ran out while this
            process was paused, say), so the call is not made and the run raises
            ``FencedOut`` (the flow is left to the claim's next owner).
    """

    storage: Storage
    compiled: CompiledFlow
    executor: Executor
    suspend_event: threading.Event
    fence_lost: threading.Event
    emit_flow: Callable[[FlowState, FlowState | None], None]
    emit_atom: Callable[..., None]
    progress_callback: Callable[[AtomDetail], Callable[[float], None]]
    defer_reverts: bool = False
    record_durations: bool = False
    atom_timer: Callable[[str, float], None] | None = None
    claim_trusted: Callable[[], bool] | None = None


class Runtime:
    """Runs one flow to an outcome; ``run()`` is a generator of ``EngineState`` values."""

    def __init__(self, context: RunContext, details: list[AtomDetail]) -> None:
        self.context = context
        self.storage = context.storage
        self.compiled = context.compiled
        self.atoms = self.compiled.atoms
        self.details = details
        self.values: list[Any] = [self.storage.atom_result(ad) for ad in details]
        self.executor = context.executor
        self.suspend_event: threading.Event = context.suspend_event
        self.failures: dict[int, Failure] = {}
        self.inflight: dict[int, str] = {}
        self.waiting: list[int] = []
        self.ready: list[int] = []
        self.revert_failures: dict[int, Failure] = {}
        #: failures of scopes reverted on their own (no ``defer_reverts``): the run goes on
        #: without them and ends REVERTED, raising them
        self.given_up: dict[int, Failure] = {}
        #: atoms whose call never started (e.g. could not be pickled): nothing to revert
        self.not_started: set[int] = set()
        #: set when the run ends by raising the atoms' own failures (not an engine problem)
        self.reraising = False
        #: counters, added to the engine's statistics
        self.counts = {"executed": 0, "reverted": 0, "retried": 0}
        #: ``time.perf_counter()`` when each running atom's call began (``record_durations``
        #: or an ``atom_timer``)
        self._timer = context.atom_timer
        self._trusted = context.claim_trusted
        self._began: dict[str, float] | None = (
            {} if context.record_durations or self._timer is not None else None)
        self._stamps = context.record_durations

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> Iterator[EngineState]:
        """Run to an outcome, yielding engine states; raise the tasks' failure if reverted."""
        if self.storage.flow_detail.state == FlowState.REVERTING:
            # A previous run died while reverting: finish the revert.
            self.failures = self._stored_failures()
            yield from self._finish_revert(None)
            return
        self._set_flow_state(FlowState.RUNNING, defer=True)  # written with what follows
        self._compute_ready()
        while True:
            if self.failures and not self.inflight:
                yield EngineState.ANALYZING
                if not self._handle_failures():
                    yield from self._finish_revert(None)
                    return
                continue
            stopping = self.suspend_event.is_set()
            if not self.failures and not stopping and self.ready:
                self._schedule()
                yield EngineState.SCHEDULING
            if not self.inflight:
                if stopping and self.ready:
                    self._set_flow_state(FlowState.SUSPENDED)
                    yield EngineState.SUSPENDED
                    return
                if not self.ready and not self.failures:
                    if self.given_up:
                        yield from self._end_given_up()
                        return
                    self._set_flow_state(FlowState.SUCCESS)
                    yield EngineState.SUCCESS
                    return
                continue
            self.storage.flush()  # nothing deferred waits on running atoms
            yield EngineState.WAITING
            for index, ok, value in self.executor.wait():
                self._complete(index, ok, value)

    def _set_flow_state(self, state: FlowState, *, defer: bool = False) -> None:
        fd = self.storage.flow_detail
        old = fd.state
        self.storage.save_flow_state(state, defer=defer,
                                     then=functools.partial(self.context.emit_flow, state, old))

    # -- scheduling ------------------------------------------------------------------------

    def _compute_ready(self) -> None:
        details = self.details
        self.waiting = [0] * len(self.atoms)
        ready = []
        for ca in self.atoms:
            if details[ca.index].state in _DONE:
                continue
            count = sum(1 for p in ca.preds if details[p].state not in _DONE)
            self.waiting[ca.index] = count
            if count == 0:
                ready.append(ca.index)
        ready.reverse()  # popped from the end: run order first
        self.ready = ready

    def _schedule(self) -> None:
        capacity = self.executor.capacity
        while self.ready and len(self.inflight) < capacity:
            if self.inflight and self.suspend_event.is_set():
                return
            self._start(self.ready.pop())

    def _kwargs(self, ca: CompiledAtom) -> dict[str, Any]:
        kwargs = dict(ca.atom.injected_args)
        values = self.values
        store = self.storage.store
        for arg, (provider, key) in ca.sources.items():
            kwargs[arg] = store[key] if provider is None else extract_result(values[provider], key)
        for arg, (provider, key) in ca.optional.items():
            if provider is None:
                if key in store:
                    kwargs[arg] = store[key]
            elif self.details[provider].state == AtomState.SUCCESS:
                kwargs[arg] = extract_result(values[provider], key)
        return kwargs

    def _start(self, index: int) -> None:
        ca = self.atoms[index]
        ad = self.details[index]
        old = ad.state
        if ca.is_retry and old == AtomState.REVERTED:
            ad.results = []  # a reverted controller starts afresh (TaskFlow cleans it up)
        ad.state = AtomState.RUNNING
        ad.intention = Intention.EXECUTE
        ad.failure = None
        self.storage.save(ad)
        self.context.emit_atom(ad, old)
        kwargs = self._kwargs(ca)
        if ca.is_retry:
            kwargs["history"] = self._history(ad)
        self.inflight[index] = _EXECUTE
        self.counts["executed"] += 1
        self._begin(ad)
        if self._trusted is not None:
            self._check_claim(f"starting atom {ca.name!r}")
        self.executor.submit(index, ca.atom.execute, (), kwargs,  # type: ignore[attr-defined]
                             progress=self.context.progress_callback(ad),
                             label=f"atom {ca.name!r}")

    def _complete(self, index: int, ok: bool, value: Any) -> None:
        self.inflight.pop(index, None)
        ca = self.atoms[index]
        ad = self.details[index]
        if not ok and isinstance(value, errors.StorageFailure | errors.StorageCorrupted
                                          | errors.FencedOut):
            # Persistence failed under the task (saving its progress, or the task's own use
            # of it), its file is damaged, or it refused the claim's fence: not a task
            # failure, so never a reason to revert.
            raise value
        if ok:
            try:
                self._record_success(ca, ad, value)
                return
            except errors.SerializationError as exc:
                # The result cannot be stored: the atom failed, and says why.
                value = exc
        self._record_failure(ca, ad, value)

    def _record_success(self, ca: CompiledAtom, ad: AtomDetail, value: Any) -> None:
        old, previous = ad.state, ad.results
        self._stamp(ad, "duration")
        ad.state = AtomState.SUCCESS
        ad.results = [*(previous or []), [value, {}]] if ca.is_retry else value
        emit = self.context.emit_atom
        try:
            # Written with the next write (the next atom's start, the flow's end state...):
            # nothing runs before it lands.
            self.storage.save(ad, defer=True, then=functools.partial(emit, ad, old, result=value))
        except errors.SerializationError:
            ad.state, ad.results = old, previous  # never keep what could not be stored
            raise
        self._timed(ad, _ENDED_SUCCESS)
        self.values[ca.index] = value
        waiting = self.waiting
        for succ in ca.succs:
            waiting[succ] -= 1
            if waiting[succ] == 0:
                self.ready.append(succ)
        if len(ca.succs) > 1:
            self.ready.sort(reverse=True)

    def _record_failure(self, ca: CompiledAtom, ad: AtomDetail, exc: BaseException) -> None:
        failure = Failure.from_exception(exc)
        if getattr(exc, "not_started", False):
            self.not_started.add(ca.index)
        old = ad.state
        self._stamp(ad, "duration")
        ad.state = AtomState.FAILURE
        ad.results = ad.results if ca.is_retry else None
        ad.failure = failure.to_dict()
        self.storage.save(ad)
        self._timed(ad, _ENDED_FAILURE)
        self.failures[ca.index] = failure
        self.context.emit_atom(ad, old, failure=failure)

    # -- failures --------------------------------------------------------------------------

    def _stored_failures(self) -> dict[int, Failure]:
        found = {}
        for ad, ca in zip(self.details, self.atoms, strict=True):
            if ad.failure is not None:
                found[ca.index] = Failure.from_dict(ad.failure)
        return found

    def _failed_scope(self) -> Scope | None:
        chains = []
        for index in self.failures:
            chain = []
            scope = self.atoms[index].scope
            while scope is not None:
                chain.append(scope)
                scope = scope.parent
            chains.append(chain[::-1])
        common: Scope | None = None
        for level in zip(*chains, strict=False):
            if any(s is not level[0] for s in level):
                break
            common = level[0]
        return common

    def _check_claim(self, doing: str) -> None:
        """Raise ``FencedOut`` if the engine's claim is known lost, or no longer trusted
        (``RunContext.claim_trusted``): no atom is started and nothing is reverted then."""
        if self.context.fence_lost.is_set() or (
                self._trusted is not None and not self._trusted()):
            raise errors.FencedOut(f"flow {self.storage.flow_detail.name!r}: the claim was lost; "
                                   f"not {doing} (the flow is left to its new owner)")

    def _handle_failures(self) -> bool:
        """Follow the retries' decisions, as TaskFlow does; True if the run goes on (a retry, or
        a scope reverted on its own), False if the whole flow must be reverted.

        The innermost failed scope's retry decides first; REVERT asks the enclosing retry, up
        to the top. A RETRY on the way retries that scope, a REVERT_ALL reverts everything. If
        all said REVERT: with ``defer_reverts`` the whole flow is reverted, otherwise only the
        innermost scope (TaskFlow's default) and the flow ends REVERTED once nothing else runs.
        """
        self._check_claim("handling the failure")
        failed = self._failed_scope()
        scope = failed
        while scope is not None:
            decision = self._decide(scope)
            if decision == Decision.REVERT_ALL:
                return False
            if decision == Decision.RETRY:
                self._revert_many(scope.members)
                if self.revert_failures:
                    return False
                self._retry(scope)
                return True
            scope = scope.parent
        if (failed is None or self.context.defer_reverts
                or len(failed.members) + 1 == len(self.atoms)):
            return False  # the scope is the whole flow: revert it the durable way
        return self._give_up(failed)

    def _give_up(self, scope: Scope) -> bool:
        """Revert ``scope`` and its retry only; the rest of the flow runs on without it."""
        inside = {scope.retry, *scope.members}
        self._revert_many(sorted(inside))
        if self.revert_failures:
            return False
        for index in [i for i in self.failures if i in inside]:
            self.given_up[index] = self.failures.pop(index)
        self.ready = [i for i in self.ready if i not in inside]
        return True

    def _end_given_up(self) -> Iterator[EngineState]:
        self._set_flow_state(FlowState.REVERTED)
        yield EngineState.REVERTED
        self._reraise([*self.given_up.values()])

    def _history(self, ad: AtomDetail) -> History:
        own = Failure.from_dict(ad.failure) if ad.failure is not None else None
        return History([(result, {n: Failure.from_dict(f) for n, f in failures.items()})
                        for result, failures in (ad.results or [])], failure=own)

    def _outcome_name(self, index: int, scope: Scope) -> str:
        """The name ``scope``'s history records a failure of atom ``index`` under: the atom's,
        or the nested retry's it came up through (as TaskFlow records it)."""
        name = self.atoms[index].name
        inner = self.atoms[index].scope
        while inner is not None and inner is not scope and index != scope.retry:
            name = self.atoms[inner.retry].name
            inner = inner.parent
        return name

    def _decide(self, scope: Scope) -> Decision:
        ca = self.atoms[scope.retry]
        ad = self.details[scope.retry]
        if not ad.results:
            ad.results = [[None, {}]]
        for index, failure in self.failures.items():
            if index in scope.members or index == scope.retry:
                ad.results[-1][1][self._outcome_name(index, scope)] = failure.to_dict()
        self.storage.save(ad)
        retry: Retry = ca.atom  # type: ignore[assignment]
        try:
            kwargs = self._kwargs(ca)
            kwargs["history"] = self._history(ad)
            decision = Decision(retry.on_failure(**_accepted(type(retry).on_failure, kwargs)))
        except Exception:
            logger.exception("retry %r failed to decide; reverting its scope", ca.name)
            decision = Decision.REVERT
        logger.debug("retry %r decided %s", ca.name, decision)
        return decision

    def _retry(self, scope: Scope) -> None:
        """Mark the retry RETRYING and reset its scope's atoms to PENDING, in one write (so a
        run killed here resumes the scope from the start), then announce each change."""
        ca = self.atoms[scope.retry]
        ad = self.details[scope.retry]
        old = ad.state
        ad.state = AtomState.RETRYING
        ad.intention = Intention.RETRY
        self.counts["retried"] += 1
        emit = self.context.emit_atom
        save = self.storage.save
        save(ad, defer=True, then=functools.partial(emit, ad, old))
        for index in scope.members:
            member = self.details[index]
            if member.state != AtomState.PENDING:
                save(member, defer=True, then=self._reset_pending(index))
            self.failures.pop(index, None)
            self.given_up.pop(index, None)
        self.storage.flush()
        delay = ca.atom.delay(self._history(ad))  # type: ignore[attr-defined]
        if delay > 0:
            self.suspend_event.wait(delay)
        self._compute_ready()

    def _reset_pending(self, index: int) -> Callable[[], None]:
        """Reset atom ``index`` to PENDING (a nested retry forgets its history, as a reverted
        TaskFlow retry does); return what announces it once written."""
        ad = self.details[index]
        old = ad.state
        ad.state = AtomState.PENDING
        ad.intention = Intention.EXECUTE
        ad.results = [] if self.atoms[index].is_retry else None
        ad.failure = ad.revert_results = ad.revert_failure = None
        self.values[index] = None
        return functools.partial(self.context.emit_atom, ad, old)

    def _revert_many(self, indexes: list[int]) -> None:
        """Revert the given atoms that ran, newest first, one at a time."""
        flow_failures = {self.atoms[i].name: f for i, f in self.failures.items()}
        for index in sorted(indexes, reverse=True):
            if self.details[index].state not in _TO_REVERT:
                continue
            self._check_claim("reverting")
            self._revert_one(index, flow_failures)
            if self.revert_failures:
                return

    def _revert_one(self, index: int, flow_failures: dict[str, Failure]) -> None:
        ca = self.atoms[index]
        ad = self.details[index]
        was_success = ad.state in (AtomState.SUCCESS, AtomState.REVERTING,
                                   AtomState.REVERT_FAILURE) and ad.failure is None
        old = ad.state
        ad.state = AtomState.REVERTING
        ad.intention = Intention.REVERT
        self.storage.save(ad)
        self.context.emit_atom(ad, old)
        self.counts["reverted"] += 1
        self._begin(ad)
        if index in self.not_started:
            self._record_revert(ad, True, None)
            return
        kwargs = self._kwargs_for_revert(ca)
        if ca.is_retry:
            kwargs["history"] = self._history(ad)
        else:
            kwargs["result"] = self.values[index] if was_success else (
                self.failures.get(index) or Failure.from_dict(ad.failure or {}))
        kwargs["flow_failures"] = flow_failures
        method = ca.atom.revert  # type: ignore[attr-defined]
        self.executor.submit(index, method, (), _accepted(method.__func__, kwargs),
                             progress=self.context.progress_callback(ad),
                             label=f"atom {ca.name!r}")
        for _, ok, value in self.executor.wait():
            self._record_revert(ad, ok, value)

    def _begin(self, ad: AtomDetail) -> None:
        """Note when ``ad``'s call begins (``record_durations`` or an ``atom_timer``)."""
        if self._began is not None:
            self._began[ad.uuid] = time.perf_counter()

    def _stamp(self, ad: AtomDetail, key: str) -> None:
        """Put how long ``ad``'s call took in ``ad.meta[key]``, before the write that records
        its end state (``record_durations``)."""
        if self._stamps and self._began is not None:
            began = self._began.get(ad.uuid)
            if began is not None:
                ad.meta[key] = time.perf_counter() - began

    def _timed(self, ad: AtomDetail, state: str) -> None:
        """``ad``'s end ``state`` (its name) is recorded: its call is over (tell the
        ``atom_timer``)."""
        if self._began is not None:
            began = self._began.pop(ad.uuid, None)
            if began is not None and self._timer is not None:
                self._timer(state, time.perf_counter() - began)

    def _kwargs_for_revert(self, ca: CompiledAtom) -> dict[str, Any]:
        try:
            kwargs = self._kwargs(ca)
        except (KeyError, LookupError, TypeError):
            kwargs = dict(ca.atom.injected_args)
        if ca.revert_sources or ca.revert_optional or ca.atom.revert_injected_args:
            kwargs.update(ca.atom.revert_injected_args)
            kwargs.update(self._revert_args(ca))
        return kwargs

    def _revert_args(self, ca: CompiledAtom) -> dict[str, Any]:
        """``revert``'s own arguments (validated before the run: those from the store are
        there; those from an atom that did not succeed are left out)."""
        found: dict[str, Any] = {}
        store = self.storage.store
        for sources in (ca.revert_sources, ca.revert_optional):
            for arg, (provider, key) in sources.items():
                if provider is None:
                    if key in store:
                        found[arg] = store[key]
                elif self.details[provider].state == AtomState.SUCCESS:
                    found[arg] = extract_result(self.values[provider], key)
        return found

    def _record_revert(self, ad: AtomDetail, ok: bool, value: Any) -> None:
        old = ad.state
        self._stamp(ad, "revert_duration")
        if ok:
            ad.state = AtomState.REVERTED
            ad.revert_results = value
            ad.revert_failure = None
            try:
                self.storage.save(ad)
                self._timed(ad, _ENDED_REVERTED)
                self.context.emit_atom(ad, old, result=value)
                return
            except errors.SerializationError as exc:
                value = exc
        failure = Failure.from_exception(value)
        ad.state = AtomState.REVERT_FAILURE
        ad.revert_results = None
        ad.revert_failure = failure.to_dict()
        self.storage.save(ad)
        self._timed(ad, _ENDED_REVERT_FAILURE)
        self.revert_failures[self.compiled.by_name[ad.name].index] = failure
        self.context.emit_atom(ad, old, failure=failure)

    def _finish_revert(self, _: None) -> Iterator[EngineState]:
        """Revert everything still to revert, record the outcome and raise the failures."""
        self._check_claim("reverting")
        if not self.revert_failures:
            self._set_flow_state(FlowState.REVERTING)
            yield EngineState.ANALYZING
            self._revert_many([ca.index for ca in self.atoms])
        if self.revert_failures:
            self._set_flow_state(FlowState.FAILURE)
            yield EngineState.FAILURE
        else:
            self._set_flow_state(FlowState.REVERTED)
            yield EngineState.REVERTED
        self._reraise([*self.given_up.values(), *self.failures.values(),
                       *self.revert_failures.values()])

    def _reraise(self, failures: list[Failure]) -> NoReturn:
        self.reraising = True
        if len(failures) == 1:
            failures[0].reraise()
        raise errors.WrappedFailure(failures)


def _accepted(fn: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    names = accepted_kwargs(fn)
    if names is None:
        return kwargs
    return {k: v for k, v in kwargs.items() if k in names}
