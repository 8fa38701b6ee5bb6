"""``engine.storage`` offers TaskFlow's public Storage methods, with TaskFlow's semantics.

Written from TaskFlow's documentation of ``taskflow.storage.Storage`` ("Persistence"): every
write goes to persistence before the call returns, through the engine's own fenced path.
"""

from __future__ import annotations

from typing import Any

import pytest

import legato.engine as le
from legato import errors
from legato.engine.engine import Engine
from legato.failure import Failure
from legato.flow import LinearFlow, Task, Times
from legato.persistence.memory import MemoryPersistence
from legato.persistence.models import Fence, FlowDetail, LogBook
from legato.states import AtomState, FlowState, Intention


class Give(Task):
    """Returns ``value``; fails when ``fail`` is set."""

    def __init__(self, name: str, value: Any = None, *, fail: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.value, self.fail = value, fail

    def execute(self, **kwargs: Any) -> Any:
        if self.fail:
            raise ValueError(f"{self.name} failed")
        return self.value

    def revert(self, **kwargs: Any) -> Any:
        return f"undone-{self.name}"


class BadRevert(Give):
    def revert(self, **kwargs: Any) -> Any:
        raise KeyError("cannot undo")


class Add(Task):
    def execute(self, x: int, y: int) -> int:
        return x + y


def _engine(*atoms: Any, store: dict[str, Any] | None = None,
            persistence: MemoryPersistence | None = None, fence: Fence | None = None,
            retry: Times | None = None) -> Engine:
    persistence = persistence or MemoryPersistence()
    flow_detail = FlowDetail("f")
    book = LogBook("b")
    book.add(flow_detail)
    persistence.save_logbook(book)
    if fence is not None:
        persistence.take_flow(flow_detail.uuid, fence)
    return le.load(LinearFlow("f", retry=retry).add(*atoms), store=store, persistence=persistence,
                   flow_detail=flow_detail, fence=fence)


def _stored(engine: Engine) -> FlowDetail:
    return engine.persistence.get_flow_details(engine.flow_detail.uuid)


def test_fetch_returns_a_provided_value_or_raises_not_found() -> None:
    engine = _engine(Give("t1", (1, 2), provides=("a", "b")), store={"x": 5})
    engine.run()
    assert engine.storage.fetch("b") == 2
    assert engine.storage.fetch("x") == 5
    with pytest.raises(errors.NotFound, match="'nothing'"):
        engine.storage.fetch("nothing")
    assert engine.storage.fetch("a", many_handler=lambda values: ("all", values)) == ("all", [1])


def test_fetch_all_lists_the_values_of_a_name_with_several_providers() -> None:
    engine = _engine(Give("t1", 1, provides="a"), Give("t2", 2, provides="a"),
                     Give("t3", 3, provides="c"), store={"x": 5})
    engine.run()
    everything = engine.storage.fetch_all()
    assert everything["c"] == 3 and everything["x"] == 5
    assert sorted(everything["a"]) == [1, 2]
    assert engine.storage.fetch_all(many_handler=max)["a"] == 2


def test_fetch_mapped_args_maps_argument_names_to_stored_names() -> None:
    engine = _engine(Give("t1", 4, provides="four"), store={"three": 3})
    engine.run()
    storage = engine.storage
    assert storage.fetch_mapped_args({"x": "four", "y": "three"}) == {"x": 4, "y": 3}
    assert storage.fetch_mapped_args({"x": "four", "z": "absent"},
                                     optional_args={"z"}) == {"x": 4}
    with pytest.raises(errors.NotFound, match="'absent'"):
        storage.fetch_mapped_args({"z": "absent"})


def test_fetch_mapped_args_for_an_atom_sees_its_injected_values_first() -> None:
    engine = _engine(Give("t1", 4, provides="x"), Add("add", inject={"y": 10}))
    engine.run()
    assert engine.storage.fetch_mapped_args({"x": "x", "y": "y"}, atom_name="add") == {
        "x": 4, "y": 10}


def test_save_records_a_result_durably_and_the_flow_skips_that_atom() -> None:
    journal: list[str] = []

    class Noted(Give):
        def execute(self, **kwargs: Any) -> Any:
            journal.append(self.name)
            return super().execute()

    engine = _engine(Noted("t1", 1, provides="x"), Add("add", inject={"y": 1}))
    engine.prepare()
    engine.storage.save("t1", 41)
    stored = _stored(engine).find_by_name("t1")
    assert stored is not None
    assert (stored.state, stored.results) == (AtomState.SUCCESS, 41)
    engine.run()
    assert journal == []
    assert engine.storage.get_execute_result("add") == 42


def test_save_a_failure_and_a_revert_result() -> None:
    engine = _engine(Give("t1", 1))
    engine.prepare()
    storage = engine.storage
    storage.save("t1", Failure.from_exception(ValueError("boom")), AtomState.FAILURE)
    assert storage.get_atom_state("t1") is AtomState.FAILURE
    assert storage.get_execute_failures()["t1"].check(ValueError)
    assert _stored(engine).find_by_name("t1").failure is not None  # type: ignore[union-attr]
    storage.save("t1", "undone", AtomState.REVERTED)
    assert storage.get_revert_result("t1") == "undone"
    assert _stored(engine).find_by_name("t1").revert_results == "undone"  # type: ignore[union-attr]


def test_save_to_a_retry_adds_to_its_history() -> None:
    engine = _engine(Give("t1"), retry=Times(3, name="r"))
    engine.prepare()
    engine.storage.save("r", "first")
    engine.storage.save("r", "second")
    assert engine.storage.get_execute_result("r") == "second"
    stored = _stored(engine).find_by_name("r")
    assert stored is not None and [r for r, _ in stored.results] == ["first", "second"]


def test_inject_is_durable_and_transient_injection_is_not() -> None:
    persistence = MemoryPersistence()
    engine = _engine(Add("add", provides="sum"), persistence=persistence)
    engine.storage.inject({"x": 1})
    engine.storage.inject({"y": 2}, transient=True)
    assert _stored(engine).meta["store"] == {"x": 1}
    engine.run()
    assert engine.storage.fetch("sum") == 3
    assert engine.storage.fetch("y") == 2
    again = le.load(LinearFlow("f").add(Add("add", provides="sum")), persistence=persistence,
                    flow_detail=_stored(engine))
    assert again.storage.fetch("x") == 1
    with pytest.raises(errors.NotFound):
        again.storage.fetch("y")


def test_a_transient_value_is_not_stored_with_the_engines_inputs() -> None:
    engine = _engine(Add("add", provides="sum"), store={"x": 1})
    engine.storage.inject({"y": 2}, transient=True)
    engine.run()
    assert engine.storage.fetch("sum") == 3
    assert _stored(engine).meta["store"] == {"x": 1}


def test_atom_state_and_intention_round_trip_through_persistence() -> None:
    engine = _engine(Give("t1"), Give("t2"))
    engine.prepare()
    storage = engine.storage
    storage.set_atom_state("t1", AtomState.IGNORE)
    storage.set_atom_intention("t2", Intention.REVERT)
    assert storage.get_atom_state("t1") is AtomState.IGNORE
    assert storage.get_atom_intention("t2") is Intention.REVERT
    assert storage.get_atoms_states(["t1", "t2"]) == {
        "t1": (AtomState.IGNORE, Intention.EXECUTE), "t2": (AtomState.PENDING, Intention.REVERT)}
    stored = _stored(engine)
    assert stored.find_by_name("t1").state is AtomState.IGNORE  # type: ignore[union-attr]
    assert stored.find_by_name("t2").intention is Intention.REVERT  # type: ignore[union-attr]
    with pytest.raises(errors.NotFound, match="'t9'"):
        storage.get_atom_state("t9")
    with pytest.raises(ValueError, match="'SLEEPING'"):
        storage.set_atom_state("t1", "SLEEPING")  # type: ignore[arg-type]


def test_flow_state_round_trips_and_defaults_to_pending() -> None:
    engine = _engine(Give("t1"))
    assert engine.storage.get_flow_state() is FlowState.PENDING
    engine.storage.set_flow_state(FlowState.SUSPENDED)
    assert engine.storage.get_flow_state() is FlowState.SUSPENDED
    assert _stored(engine).state is FlowState.SUSPENDED


def test_revert_results_and_failures_after_a_reverted_run() -> None:
    engine = _engine(Give("t1", 1), Give("t2", fail=True))
    with pytest.raises(ValueError):
        engine.run()
    storage = engine.storage
    assert storage.get_revert_result("t1") == "undone-t1"
    assert list(storage.get_execute_failures()) == ["t2"]
    assert storage.get_revert_failures() == {}
    with pytest.raises(errors.NotFound):
        storage.get_execute_result("t1")  # reverted: its result is no longer there


def test_revert_failures_are_reported() -> None:
    engine = _engine(BadRevert("t1", 1), Give("t2", fail=True))
    with pytest.raises(errors.WrappedFailure):
        engine.run()
    failures = engine.storage.get_revert_failures()
    assert list(failures) == ["t1"] and failures["t1"].check(KeyError)
    assert isinstance(engine.storage.get_revert_result("t1"), Failure)


def test_reset_forgets_an_atoms_outcome() -> None:
    engine = _engine(Give("t1", 1, provides="a"))
    engine.run()
    engine.storage.reset("t1")
    assert engine.storage.get_atom_state("t1") is AtomState.PENDING
    stored = _stored(engine).find_by_name("t1")
    assert stored is not None and (stored.state, stored.results) == (AtomState.PENDING, None)
    with pytest.raises(errors.NotFound):
        engine.storage.fetch("a")


def test_ensure_atom_creates_a_detail_once_and_returns_its_uuid() -> None:
    engine = _engine(Give("t1"))
    first = engine.storage.ensure_atom(Give("extra", provides="e"))
    assert engine.storage.ensure_atoms([Give("extra"), Give("t1")])[0] == first
    assert _stored(engine).find_by_name("extra") is not None
    engine.storage.save("extra", 7)
    assert engine.storage.fetch("e") == 7
    with pytest.raises(ValueError, match="'extra'"):
        engine.storage.ensure_atom(Times(2, name="extra"))  # already a task


def test_a_stale_owners_storage_writes_are_refused() -> None:
    persistence = MemoryPersistence()
    old, new = Fence("job", 1), Fence("job", 2)
    engine = _engine(Give("t1", 1), persistence=persistence, fence=old)
    engine.prepare()
    engine.storage.flush()
    persistence.take_flow(engine.flow_detail.uuid, new)
    storage = engine.storage
    with pytest.raises(errors.FencedOut):
        storage.save("t1", 5)
    with pytest.raises(errors.FencedOut):
        storage.set_atom_state("t1", AtomState.IGNORE)
    with pytest.raises(errors.FencedOut):
        storage.inject({"x": 1})
    with pytest.raises(errors.FencedOut):
        storage.set_flow_state(FlowState.SUCCESS)
    with pytest.raises(errors.FencedOut):
        storage.reset("t1", AtomState.IGNORE)
    stored = _stored(engine)
    t1 = stored.find_by_name("t1")
    assert t1 is not None and (t1.state, t1.results) == (AtomState.PENDING, None)
    assert "x" not in (stored.meta.get("store") or {}) and stored.state is not FlowState.SUCCESS
    assert storage.get_atom_state("t1") is AtomState.PENDING  # nothing applied in memory

