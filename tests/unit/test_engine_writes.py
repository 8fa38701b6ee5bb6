"""The engine's write path: values checked once, nothing riding on most writes, no empty
flushes."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from legato import errors
from legato.persistence.base import FlowWrites, check_atom_json
from legato.persistence.memory import MemoryPersistence
from legato.persistence.models import Claim, Fence, FlowDetail, TaskDetail
from legato.states import AtomState, FlowState
from legato.testing.persistence import make_book

_AT = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def _saved(persistence: MemoryPersistence, atoms: int = 2) -> FlowDetail:
    book = make_book(atoms=atoms)
    persistence.save_logbook(book)
    (flow,) = book.flows.values()
    return flow


# -- check_atom_json -----------------------------------------------------------------------


@pytest.mark.parametrize("results", [None, "text", 12, True, 10**40])
def test_plain_values_pass_the_check(results: Any) -> None:
    check_atom_json(TaskDetail("t", results=results))


@pytest.mark.parametrize("change", [
    {"results": float("nan")},
    {"results": float("inf")},
    {"results": {"when": object()}},
    {"meta": set()},  # empty, yet no JSON object
    {"meta": {"bad": object()}},
    {"failure": {"bad": object()}},
    {"revert_results": object()},
    {"revert_failure": {"bad": {1, 2}}},
])
def test_anything_else_is_encoded_and_refused_when_not_json(change: dict[str, Any]) -> None:
    ad = TaskDetail("the-atom")
    for field, value in change.items():
        setattr(ad, field, value)
    with pytest.raises(errors.SerializationError, match="the-atom"):
        check_atom_json(ad)


def test_a_float_result_that_is_json_passes() -> None:
    check_atom_json(TaskDetail("t", results=1.5, meta={"duration": 0.25}))


# -- update_many(checked=) -----------------------------------------------------------------


def test_update_many_checks_atoms_unless_told_they_were_checked() -> None:
    persistence = MemoryPersistence()
    flow = _saved(persistence)
    good, bad = list(flow)
    bad.results = {"when": object()}
    with pytest.raises(errors.SerializationError, match=bad.name):
        persistence.update_many(FlowWrites(flow.uuid, atoms=[bad]))
    good.state = AtomState.SUCCESS
    good.results = 7
    persistence.update_many(FlowWrites(flow.uuid, atoms=[good]), checked=True)
    assert persistence.get_atom_details(good.uuid).results == 7


def test_update_many_checks_the_flow_meta_even_when_atoms_were_checked() -> None:
    persistence = MemoryPersistence()
    flow = _saved(persistence)
    lazy = FlowDetail(flow.name, flow.uuid, FlowState.RUNNING, {"bad": object()})
    with pytest.raises(errors.SerializationError, match=flow.name):
        persistence.update_many(FlowWrites(flow.uuid, flow=lazy), checked=True)
    assert persistence.get_flow_details(flow.uuid).state == FlowState.PENDING


# -- what rides on a claim's writes --------------------------------------------------------


class _Ending:
    def __init__(self) -> None:
        self.asked: list[FlowState] = []
        self.recorded: list[Claim] = []

    def end_with(self, state: FlowState) -> Claim | None:
        self.asked.append(state)
        return Claim("job", 1, "me", _AT, outcome="consumed", flow_state=str(state))

    def in_transaction(self, state: FlowState) -> None:
        return None

    def ended(self, claim: Claim) -> None:
        self.recorded.append(claim)


def _taken_with_ending() -> tuple[MemoryPersistence, FlowDetail, Fence, _Ending]:
    """A saved flow taken by job ``job``'s claim 1, its claim's end given as ``_Ending``."""
    persistence = MemoryPersistence()
    flow = _saved(persistence)
    fence = Fence("job", 1)
    ending = _Ending()
    persistence.take_flow(flow.uuid, fence, claim=Claim("job", 1, "me", _AT), ending=ending)
    return persistence, flow, fence, ending


def test_an_atom_write_carries_no_claim_end_and_the_end_state_does() -> None:
    persistence, flow, fence, ending = _taken_with_ending()
    first = next(iter(flow))
    first.state = AtomState.SUCCESS
    persistence.update_many(FlowWrites(flow.uuid, state=FlowState.RUNNING, atoms=[first]),
                            fence=fence)
    assert ending.asked == [] and ending.recorded == []
    assert persistence.job_history("job")[0].outcome is None
    persistence.update_many(FlowWrites(flow.uuid, state=FlowState.SUCCESS), fence=fence)
    assert ending.asked == [FlowState.SUCCESS]
    assert [c.outcome for c in ending.recorded] == ["consumed"]
    assert persistence.job_history("job")[0].outcome == "consumed"


def test_an_end_given_with_the_write_is_reported_to_the_claims_ending() -> None:
    persistence, flow, fence, ending = _taken_with_ending()
    ended = Claim("job", 1, "me", _AT, ended_at=_AT, outcome="stopped")
    persistence.update_many(FlowWrites(flow.uuid, state=FlowState.SUSPENDED, ended=ended),
                            fence=fence)
    assert ending.asked == [] and [c.outcome for c in ending.recorded] == ["stopped"]
    assert persistence.job_history("job")[0].outcome == "stopped"


def test_a_deferred_take_rides_on_the_first_atom_write_only() -> None:
    persistence = MemoryPersistence()
    flow = _saved(persistence)
    fence = Fence("job", 1)
    persistence.take_flow(flow.uuid, fence, claim=Claim("job", 1, "me", _AT), defer=True)
    assert persistence.get_flow_details(flow.uuid).fence is None
    first, second = list(flow)
    first.state = AtomState.RUNNING
    persistence.update_many(FlowWrites(flow.uuid, atoms=[first]), fence=fence)
    assert persistence.get_flow_details(flow.uuid).fence == fence
    assert [c.fence for c in persistence.job_history("job")] == [1]
    persistence.take_flow(flow.uuid, Fence("job", 2))  # a newer claim took it over
    second.state = AtomState.RUNNING
    with pytest.raises(errors.FencedOut):
        persistence.update_many(FlowWrites(flow.uuid, atoms=[second]), fence=fence)
    assert persistence.get_atom_details(second.uuid).state == AtomState.PENDING


# -- Storage -------------------------------------------------------------------------------


class _Counting(MemoryPersistence):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def _update_many(self, writes: FlowWrites, fence: Fence | None) -> None:
        self.writes += 1
        super()._update_many(writes, fence)

    def _update_atom_details(self, atom_detail: Any, fence: Fence | None) -> None:
        self.writes += 1
        super()._update_atom_details(atom_detail, fence)


def test_a_direct_atom_write_is_checked_and_a_refusal_keeps_what_is_due() -> None:
    from legato.engine.storage import Storage

    persistence = _Counting()
    flow = _saved(persistence)
    storage = Storage(persistence, persistence.get_flow_details(flow.uuid))
    first, second = list(storage.flow_detail)
    first.state, first.results = AtomState.SUCCESS, {"n": 1}
    storage.save(first, defer=True)
    second.state, second.results = AtomState.RUNNING, {"when": object()}
    with pytest.raises(errors.SerializationError, match=second.name):
        storage.save(second)
    assert persistence.writes == 0
    assert persistence.get_atom_details(first.uuid).state == AtomState.PENDING
    storage.flush()  # the deferred result is still due
    assert persistence.writes == 1
    assert persistence.get_atom_details(first.uuid).results == {"n": 1}


def test_a_flush_with_nothing_due_writes_nothing() -> None:
    from legato.engine.storage import Storage

    persistence = _Counting()
    flow = _saved(persistence)
    storage = Storage(persistence, persistence.get_flow_details(flow.uuid))
    storage.flush()
    assert persistence.writes == 0
    first = next(iter(storage.flow_detail))
    first.state = AtomState.SUCCESS
    storage.save(first, defer=True)
    storage.flush()
    storage.flush()
    assert persistence.writes == 1
