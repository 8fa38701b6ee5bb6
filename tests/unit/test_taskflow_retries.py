"""Retry controllers behave as TaskFlow documents them ("Atoms, tasks and retries", "Engines").

One test per behaviour: PENDING resets before a scope runs again, ``history`` given by keyword
with TaskFlow's ``History`` accessors, a nested controller's history after its parent retries,
``Times(0)`` and empty ``ForEach``, and the ``defer_reverts`` engine option.
"""

from __future__ import annotations

from typing import Any

import pytest

import legato.engine as le
from legato import errors
from legato.engine.listeners import CaptureListener
from legato.failure import Failure
from legato.flow import (
    AlwaysRevert,
    ForEach,
    History,
    LinearFlow,
    ParameterizedForEach,
    Retry,
    Task,
    Times,
    UnorderedFlow,
)
from legato.flow.retry import Decision
from legato.persistence.memory import MemoryPersistence
from legato.persistence.models import RetryDetail
from legato.states import AtomState, FlowState


class Flaky(Task):
    """Fails while ``failures_left`` is positive; records every call in ``calls``."""

    def __init__(self, name: str, calls: list[str], *, failures: int = 0,
                 **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.calls = calls
        self.failures_left = failures

    def execute(self) -> str:
        self.calls.append(self.name)
        if self.failures_left > 0:
            self.failures_left -= 1
            raise RuntimeError(f"{self.name} failed")
        return self.name

    def revert(self, **kwargs: Any) -> None:
        self.calls.append(f"revert {self.name}")


def _states(capture: CaptureListener, name: str) -> list[str]:
    return [state for atom, state in capture.atom_states if atom == name]


# -- 1. RETRY resets the scope to PENDING, durably, and says so ----------------------------------


def test_retry_resets_every_atom_of_its_scope_to_pending_before_running_it_again() -> None:
    calls: list[str] = []
    persistence = MemoryPersistence()
    flow = LinearFlow("f", retry=Times(2, name="r")).add(
        Flaky("t1", calls), Flaky("t2", calls, failures=1))
    engine = le.load(flow, persistence=persistence)
    stored_at_pending: dict[str, AtomState] = {}

    def on_atom(event: str, details: dict[str, Any]) -> None:
        if event == AtomState.PENDING:  # what persistence holds when listeners hear it
            stored = persistence.get_flow_details(engine.flow_detail.uuid)
            stored_at_pending[details["atom_name"]] = stored.find_by_name(
                details["atom_name"]).state

    engine.atom_notifier.register("*", on_atom)
    with CaptureListener(engine) as capture:
        engine.run()
    assert _states(capture, "t1") == ["RUNNING", "SUCCESS", "REVERTING", "REVERTED", "PENDING",
                                      "RUNNING", "SUCCESS"]
    assert _states(capture, "t2") == ["RUNNING", "FAILURE", "REVERTING", "REVERTED", "PENDING",
                                      "RUNNING", "SUCCESS"]
    order = capture.atom_states
    retrying = order.index(("r", "RETRYING"))
    rerun = order.index(("r", "RUNNING"), retrying)
    assert retrying < order.index(("t1", "PENDING")) < rerun
    assert retrying < order.index(("t2", "PENDING")) < rerun
    assert stored_at_pending == {"t1": AtomState.PENDING, "t2": AtomState.PENDING}
    assert calls == ["t1", "t2", "revert t2", "revert t1", "t1", "t2"]


def test_a_run_killed_after_the_pending_reset_resumes_the_retried_scope() -> None:
    class Dies(MemoryPersistence):
        """Refuses every write once ``dead`` is set (the process is gone)."""

        dead = False

        def _update_atom_details(self, atom_detail: Any, fence: Any) -> None:
            if self.dead:
                raise errors.StorageFailure("killed")
            super()._update_atom_details(atom_detail, fence)

        def _update_many(self, writes: Any, fence: Any) -> None:
            if self.dead:
                raise errors.StorageFailure("killed")
            super()._update_many(writes, fence)

    calls: list[str] = []
    persistence = Dies(retries=1, retry_delay=0.0)

    def build() -> LinearFlow:
        return LinearFlow("f", retry=Times(3, name="r", provides="attempt")).add(
            Flaky("t1", calls), Flaky("t2", calls, failures=1 if not calls else 0))

    engine = le.load(build(), persistence=persistence)

    def kill(event: str, details: dict[str, Any]) -> None:
        if event == AtomState.PENDING:
            persistence.dead = True

    engine.atom_notifier.register("*", kill)
    with pytest.raises(errors.StorageFailure):
        engine.run()
    persistence.dead = False
    stored = persistence.get_flow_details(engine.flow_detail.uuid)
    assert {ad.name: ad.state for ad in stored} == {
        "r": AtomState.RETRYING, "t1": AtomState.PENDING, "t2": AtomState.PENDING}
    retry = stored.find_by_name("r")
    assert isinstance(retry, RetryDetail) and list(retry.results[0][1]) == ["t2"]

    resumed = le.load(build(), persistence=persistence, flow_detail=stored)
    assert resumed.storage.flow_detail.state == FlowState.RUNNING
    resumed.run()
    final = persistence.get_flow_details(engine.flow_detail.uuid)
    assert final.state == FlowState.SUCCESS
    retry = final.find_by_name("r")
    assert isinstance(retry, RetryDetail)
    assert [attempt for attempt, _ in retry.results] == [1, 2]
    assert calls == ["t1", "t2", "revert t2", "revert t1", "t1", "t2"]


# -- 2. history is a keyword argument; History has TaskFlow's accessors -------------------------


def test_controllers_written_with_kwargs_only_or_history_first_both_work() -> None:
    seen: list[tuple[str, int]] = []

    class KwargsOnly(Retry):
        def execute(self, **kwargs: Any) -> int:
            seen.append(("execute", len(kwargs["history"])))
            return len(kwargs["history"]) + 1

        def on_failure(self, **kwargs: Any) -> Decision:
            seen.append(("on_failure", len(kwargs["history"])))
            return Decision.RETRY if len(kwargs["history"]) < 2 else Decision.REVERT

        def revert(self, **kwargs: Any) -> None:
            seen.append(("revert", len(kwargs["history"])))

    class HistoryFirst(Retry):
        def execute(self, history: History, **kwargs: Any) -> int:
            seen.append(("execute2", len(history)))
            return 7

        def on_failure(self, history: History, **kwargs: Any) -> Decision:
            return Decision.REVERT

    calls: list[str] = []
    flow = LinearFlow("f", retry=KwargsOnly(name="r")).add(Flaky("t", calls, failures=5))
    with pytest.raises(RuntimeError, match="t failed"):
        le.run(flow)
    assert seen == [("execute", 0), ("on_failure", 1), ("execute", 1), ("on_failure", 2),
                    ("revert", 2)]
    assert le.run(LinearFlow("g", retry=HistoryFirst(name="h", provides="v")).add(
        Flaky("u", calls)))["v"] == 7
    assert seen[-1] == ("execute2", 0)


def test_history_offers_taskflows_accessors() -> None:
    timeout = Failure.from_exception(TimeoutError("slow"))
    refused = Failure.from_exception(ConnectionRefusedError("no"))
    own = Failure.from_exception(KeyError("retry broke"))
    history = History([("a", {"t1": timeout}), ("b", {"t1": refused, "t2": timeout})],
                      failure=own)
    assert len(history) == 2
    assert [provided for provided, _ in history] == ["a", "b"]
    assert list(history.provided_iter()) == ["a", "b"]
    assert list(history.outcomes_iter()) == [("t1", timeout), ("t1", refused), ("t2", timeout)]
    assert list(history.outcomes_iter(index=0)) == [("t1", timeout)]
    assert history[1] == ("b", {"t1": refused, "t2": timeout})
    assert history.failure is own
    assert history.caused_by(ConnectionError)
    assert not history.caused_by(ConnectionError, index=0)
    assert not history.caused_by(KeyError)
    assert history.caused_by(KeyError, include_retry=True)
    assert History().failure is None and list(History().outcomes_iter()) == []


def test_the_engine_gives_a_history_whose_outcomes_name_the_failed_atoms() -> None:
    decided: list[list[tuple[str, bool]]] = []

    class Checks(Retry):
        def execute(self, history: History) -> int:
            return len(history) + 1

        def on_failure(self, history: History) -> Decision:
            decided.append([(name, failure.check(RuntimeError) is not None)
                            for name, failure in history.outcomes_iter(index=-1)])
            return Decision.RETRY if not history.caused_by(KeyError) else Decision.REVERT

    calls: list[str] = []
    flow = LinearFlow("f", retry=Checks(name="r")).add(Flaky("t", calls, failures=1))
    le.run(flow)
    assert decided == [[("t", True)]]


# -- 3. a nested controller's history when its parent retries -----------------------------------


def test_a_nested_retry_starts_afresh_when_its_parent_retries_its_scope() -> None:
    # TaskFlow reverts the nested controller with the rest of the parent's scope, and a
    # reverted controller's history is cleaned up: the parent's next attempt gives the nested
    # controller its full allowance again.
    seen: list[int] = []

    class Counting(Times):
        def execute(self, history: History, **kwargs: Any) -> int:
            seen.append(len(history))
            return super().execute(history=history, **kwargs)

    calls: list[str] = []
    inner = LinearFlow("inner", retry=Counting(2, name="inner_r", provides="inner_n")).add(
        Flaky("t", calls, failures=2))
    outer = LinearFlow("outer", retry=Times(2, name="outer_r", provides="outer_n")).add(inner)
    persistence = MemoryPersistence()
    engine = le.load(outer, persistence=persistence)
    engine.run()
    assert seen == [0, 1, 0]
    assert engine.storage.fetch("inner_n") == 1
    stored = persistence.get_flow_details(engine.flow_detail.uuid)
    outer_r = stored.find_by_name("outer_r")
    assert isinstance(outer_r, RetryDetail)
    # The parent hears of the failure through its nested controller, as in TaskFlow.
    assert [list(failures) for _, failures in outer_r.results] == [["inner_r"], []]


# -- 4. Times(0), empty ForEach -------------------------------------------------------------------


def test_times_zero_is_allowed_and_never_retries() -> None:
    calls: list[str] = []
    flow = LinearFlow("f", retry=Times(0, name="r")).add(Flaky("t", calls, failures=3))
    with pytest.raises(RuntimeError, match="t failed"):
        le.run(flow)
    assert calls == ["t", "revert t"]
    with pytest.raises(ValueError, match="attempts"):
        Times(-1)


@pytest.mark.parametrize("kind", ["ForEach", "ParameterizedForEach"])
def test_an_empty_for_each_builds_and_fails_at_run_time(kind: str) -> None:
    retry: Retry = (ForEach([], name="each") if kind == "ForEach"
                    else ParameterizedForEach(name="each"))
    calls: list[str] = []
    flow = LinearFlow("f", retry=retry).add(Flaky("t", calls))
    with pytest.raises(errors.NotFound,
                       match=r"^No elements left in collection of iterable retry controller "
                             r"each$"):
        le.run(flow, store={"values": []})
    assert calls == []


# -- 5. defer_reverts -----------------------------------------------------------------------------


def _subflow_gives_up(calls: list[str]) -> LinearFlow:
    return LinearFlow("outer").add(
        Flaky("t1", calls),
        LinearFlow("sub", retry=Times(1, name="r")).add(Flaky("t2", calls),
                                                        Flaky("t3", calls, failures=1)),
        Flaky("t4", calls))


def test_by_default_a_subflow_that_gives_up_reverts_only_itself() -> None:
    calls: list[str] = []
    persistence = MemoryPersistence()
    engine = le.load(_subflow_gives_up(calls), persistence=persistence)
    with pytest.raises(RuntimeError, match="t3 failed"):
        engine.run()
    assert calls == ["t1", "t2", "t3", "revert t3", "revert t2"]
    stored = persistence.get_flow_details(engine.flow_detail.uuid)
    assert stored.state == FlowState.REVERTED
    assert {ad.name: ad.state for ad in stored} == {
        "t1": AtomState.SUCCESS, "r": AtomState.REVERTED, "t2": AtomState.REVERTED,
        "t3": AtomState.REVERTED, "t4": AtomState.PENDING}


def test_a_subflow_reverted_on_its_own_lets_independent_atoms_run_then_ends_reverted() -> None:
    calls: list[str] = []
    flow = UnorderedFlow("u").add(
        LinearFlow("sub", retry=AlwaysRevert(name="r")).add(Flaky("t1", calls, failures=1)),
        Flaky("t2", calls))
    engine = le.load(flow)
    with CaptureListener(engine) as capture, pytest.raises(RuntimeError, match="t1 failed"):
        engine.run()
    assert calls == ["t1", "revert t1", "t2"]
    assert capture.flow_states[-1] == FlowState.REVERTED
    assert engine.storage.get_atom_state("t2") == AtomState.SUCCESS


@pytest.mark.parametrize("how", ["keyword", "url", "string"])
def test_defer_reverts_lets_the_parent_decide_and_reverts_the_whole_flow(how: str) -> None:
    calls: list[str] = []
    persistence = MemoryPersistence()
    if how == "keyword":
        engine = le.load(_subflow_gives_up(calls), persistence=persistence, defer_reverts=True)
    elif how == "url":
        engine = le.load(_subflow_gives_up(calls), persistence=persistence,
                         engine="serial://?defer_reverts=true")
    else:  # an engine_options dict from a configuration file
        engine = le.load(_subflow_gives_up(calls), persistence=persistence,
                         **{"defer_reverts": "True"})
    with pytest.raises(RuntimeError, match="t3 failed"):
        engine.run()
    assert calls == ["t1", "t2", "t3", "revert t3", "revert t2", "revert t1"]
    stored = persistence.get_flow_details(engine.flow_detail.uuid)
    assert stored.state == FlowState.REVERTED
    assert stored.find_by_name("t1").state == AtomState.REVERTED


def test_a_bad_defer_reverts_value_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match=r"^defer_reverts must be a boolean, not 'maybe'$"):
        le.load(_subflow_gives_up([]), defer_reverts="maybe")
