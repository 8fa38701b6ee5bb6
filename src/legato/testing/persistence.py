"""The persistence conformance suite, shipped so every backend (yours too) is held to one contract.

Use it from a test module::

    import pytest
    from legato import persistence
    from legato.testing.persistence import PersistenceConformance

    class TestMyPersistence(PersistenceConformance):
        @pytest.fixture
        def persistence(self, my_url):
            backend = persistence.connect(my_url)
            backend.upgrade()
            yield backend
            backend.close()

The ``persistence`` fixture returns an upgraded, empty backend. Every test method below checks one
promise of ``legato.persistence.base.Persistence``; a backend that fails one breaks the contract.

The acceptance helpers (``run_concurrent_upgrade``, ``run_concurrent_flows``) take a backend URL,
run real processes against one database, and raise ``AssertionError`` when the backend breaks
its promise that many processes can share it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import multiprocessing
import threading
from typing import TYPE_CHECKING, Any

import pytest

from legato import errors
from legato.persistence.base import FlowWrites, Persistence
from legato.persistence.models import (
    AtomDetail,
    Claim,
    Fence,
    FlowDetail,
    LogBook,
    RetryDetail,
    TaskDetail,
    new_uuid,
)
from legato.states import AtomState, FlowState, Intention

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.synchronize import Event

__all__ = [
    "ConcurrentFlowsResult",
    "PersistenceConformance",
    "make_book",
    "run_concurrent_flows",
    "run_concurrent_upgrade",
]

#: A value exercising what JSON can hold: unicode, nesting, None, numbers, booleans.
RICH_VALUE: dict[str, Any] = {
    "text": "déjà vu — 東京 ✓ 🎼",
    "nested": {"list": [1, 2.5, None, True, False, {"deep": ["x", {"y": []}]}], "empty": {}},
    "none": None,
    "big": 2**53,
    "negative": -17,
}

FAILURE: dict[str, Any] = {
    "version": 1,
    "exc_type_names": ["ValueError", "Exception", "BaseException"],
    "exception_str": "bad value ñ",
    "traceback_str": "Traceback (most recent call last):\n  ...\nValueError: bad value ñ\n",
    "causes": [],
}


def make_book(*, flows: int = 1, atoms: int = 3, name: str = "book") -> LogBook:
    """A logbook with ``flows`` flow details of ``atoms`` task details each."""
    book = LogBook(name, meta={"owner": "conformance", "n": flows})
    for f in range(flows):
        flow = FlowDetail(f"flow-{f}", state=FlowState.PENDING, meta={"store": {"x": f}})
        for a in range(atoms):
            flow.add(TaskDetail(f"task-{f}-{a}", meta={"index": a}))
        book.add(flow)
    return book


def _only_flow(book: LogBook) -> FlowDetail:
    (flow,) = book.flows.values()
    return flow


class PersistenceConformance:
    """Tests every persistence backend must pass. Subclass it and provide ``persistence``."""

    # -- logbooks --------------------------------------------------------------------------

    def test_save_and_get_logbook(self, persistence: Persistence) -> None:
        book = make_book(flows=2, atoms=3)
        saved = persistence.save_logbook(book)
        assert saved.updated_at is not None
        got = persistence.get_logbook(book.uuid)
        assert got == saved
        assert [f.name for f in got] == ["flow-0", "flow-1"]
        assert got.created_at == book.created_at
        assert got.created_at.tzinfo is not None and got.created_at.utcoffset() == dt.timedelta(0)

    def test_get_logbook_lazy_skips_flows(self, persistence: Persistence) -> None:
        book = make_book(flows=2)
        persistence.save_logbook(book)
        lazy = persistence.get_logbook(book.uuid, lazy=True)
        assert len(lazy) == 0
        assert (lazy.name, lazy.uuid, lazy.meta) == (book.name, book.uuid, book.meta)

    def test_models_are_copied_in_and_out(self, persistence: Persistence) -> None:
        book = make_book()
        saved = persistence.save_logbook(book)
        book.meta["changed"] = True
        saved.meta["changed"] = True
        got = persistence.get_logbook(book.uuid)
        assert "changed" not in got.meta
        got.meta["again"] = 1
        assert "again" not in persistence.get_logbook(book.uuid).meta

    def test_nested_values_are_never_shared(self, persistence: Persistence) -> None:
        """Changing, deep inside, a model given to or returned by any call leaves what is
        stored as it was."""
        book = make_book(atoms=1)
        book.meta["nested"] = {"list": [1]}
        flow = _only_flow(book)
        flow.meta["factory"] = {"name": "m:f", "args": [[1]], "kwargs": {"k": {"v": 1}}}
        atom = next(iter(flow))
        atom.results, atom.failure = {"list": [1]}, dict(FAILURE, causes=[{"x": [1]}])
        saved = persistence.save_logbook(book)

        def spoil_flow(fd: FlowDetail) -> None:
            fd.meta["factory"]["args"][0].append("spoilt")
            fd.meta["factory"]["kwargs"]["k"]["v"] = "spoilt"
            for ad in fd:
                ad.results["list"].append("spoilt")
                ad.failure["causes"][0]["x"].append("spoilt")

        def spoil(book: LogBook) -> None:
            book.meta["nested"]["list"].append("spoilt")
            for fd in book:
                spoil_flow(fd)

        expected = persistence.get_logbook(book.uuid)
        spoil(book)
        assert saved == expected  # what save_logbook returns is a copy too
        spoil(saved)
        spoil(persistence.get_logbook(book.uuid))
        assert persistence.get_logbook(book.uuid) == expected

        given = persistence.get_flow_details(flow.uuid)
        persistence.update_flow_details(given)
        spoil_flow(given)
        returned = persistence.get_atom_details(atom.uuid)
        persistence.update_atom_details(returned)
        returned.results["list"].append("spoilt")
        for got in (persistence.get_flow_details(flow.uuid), *persistence.get_flows_for_book(
                book.uuid)):
            got.meta["factory"]["args"][0].append("spoilt")
            next(iter(got)).results["list"].append("spoilt")
        for ad in (*persistence.get_atoms_for_flow(flow.uuid),
                   persistence.get_atom_details(atom.uuid)):
            ad.results["list"].append("spoilt")
        assert persistence.get_logbook(book.uuid) == expected
        assert persistence.get_atom_details(atom.uuid).results == {"list": [1]}

    def test_save_logbook_again_updates_and_adds(self, persistence: Persistence) -> None:
        book = make_book(flows=1, atoms=2)
        first = persistence.save_logbook(book)
        book.meta = {"second": "save"}
        flow = _only_flow(book)
        flow.state = FlowState.RUNNING
        flow.add(TaskDetail("late"))
        book.add(FlowDetail("flow-new"))
        persistence.save_logbook(book)
        got = persistence.get_logbook(book.uuid)
        assert got.meta == {"second": "save"}
        assert got.created_at == first.created_at
        assert [f.name for f in got] == ["flow-0", "flow-new"]
        stored = got.flows[flow.uuid]
        assert stored.state is FlowState.RUNNING
        assert [a.name for a in stored] == ["task-0-0", "task-0-1", "late"]

    def test_get_logbooks_oldest_first(self, persistence: Persistence) -> None:
        books = [make_book(name=f"book-{i}", flows=i % 2 + 1) for i in range(4)]
        for book in books:
            persistence.save_logbook(book)
        got = list(persistence.get_logbooks())
        assert [b.uuid for b in got] == [b.uuid for b in books]
        assert [len(b) for b in got] == [len(b) for b in books]
        assert [len(f) for b in got for f in b] == [3] * sum(len(b) for b in books)
        lazy = list(persistence.get_logbooks(lazy=True))
        assert [b.name for b in lazy] == [b.name for b in books]
        assert all(len(b) == 0 for b in lazy)

    def test_get_logbooks_empty(self, persistence: Persistence) -> None:
        assert list(persistence.get_logbooks()) == []

    def test_book_without_flows(self, persistence: Persistence) -> None:
        book = LogBook("empty")
        persistence.save_logbook(book)
        assert len(persistence.get_logbook(book.uuid)) == 0
        assert list(persistence.get_flows_for_book(book.uuid)) == []

    # -- round trips -----------------------------------------------------------------------

    def test_atom_details_round_trip_every_field(self, persistence: Persistence) -> None:
        book = LogBook("round trip ✓ 🎼", meta={"rich": RICH_VALUE})
        flow = FlowDetail("flöw", state=FlowState.FAILURE, meta={"rich": RICH_VALUE})
        task = TaskDetail(
            "täsk", state=AtomState.REVERT_FAILURE, intention=Intention.REVERT,
            results=RICH_VALUE, failure=FAILURE, revert_results=[1, "two", None],
            revert_failure=FAILURE, meta={"progress": 0.5, "rich": RICH_VALUE}, version="1.2")
        retry = RetryDetail(
            "retry", state=AtomState.RETRYING, intention=Intention.RETRY,
            results=[[None, {"täsk": FAILURE}], [{"value": 2}, {}]], version="0.1")
        plain = TaskDetail("plain")
        for atom in (task, retry, plain):
            flow.add(atom)
        book.add(flow)
        persistence.save_logbook(book)
        for atom in (task, retry, plain):
            got = persistence.get_atom_details(atom.uuid)
            assert got == atom
            assert type(got) is type(atom)
        assert persistence.get_flow_details(flow.uuid) == flow
        stored = persistence.get_logbook(book.uuid)
        assert stored.meta == book.meta and stored.name == book.name

    def test_none_results_and_empty_values(self, persistence: Persistence) -> None:
        book = make_book(atoms=1)
        flow = _only_flow(book)
        atom = next(iter(flow))
        atom.results, atom.meta, atom.version = None, {}, None
        flow.state = None
        persistence.save_logbook(book)
        got = persistence.get_atom_details(atom.uuid)
        assert got.results is None and got.meta == {} and got.version is None
        assert got.failure is None and got.revert_failure is None
        assert persistence.get_flow_details(flow.uuid).state is None

    def test_falsy_results_are_kept(self, persistence: Persistence) -> None:
        book = make_book(atoms=4)
        atoms = list(_only_flow(book))
        for atom, value in zip(atoms, (0, "", [], False), strict=True):
            atom.results = value
        persistence.save_logbook(book)
        for atom in atoms:
            got = persistence.get_atom_details(atom.uuid).results
            assert got == atom.results and type(got) is type(atom.results)

    def test_atoms_come_back_in_insertion_order(self, persistence: Persistence) -> None:
        book = LogBook("order")
        flow = FlowDetail("flow")
        names = ["zeta", "alpha", "mu", "beta", "omega", "delta", "a", "z", "m", "b", "y", "c"]
        for name in names:
            flow.add(TaskDetail(name, uuid=new_uuid()))
        book.add(flow)
        persistence.save_logbook(book)
        assert [a.name for a in persistence.get_atoms_for_flow(flow.uuid)] == names
        assert [a.name for a in persistence.get_flow_details(flow.uuid)] == names
        assert [a.name for a in _only_flow(persistence.get_logbook(book.uuid))] == names

    def test_get_flows_for_book(self, persistence: Persistence) -> None:
        book = make_book(flows=3, atoms=2)
        other = make_book(flows=1)
        persistence.save_logbook(book)
        persistence.save_logbook(other)
        flows = list(persistence.get_flows_for_book(book.uuid))
        assert flows == list(book.flows.values())
        lazy = list(persistence.get_flows_for_book(book.uuid, lazy=True))
        assert [f.uuid for f in lazy] == list(book.flows)
        assert all(len(f) == 0 for f in lazy)

    def test_get_flow_details_lazy(self, persistence: Persistence) -> None:
        book = make_book()
        persistence.save_logbook(book)
        flow = _only_flow(book)
        lazy = persistence.get_flow_details(flow.uuid, lazy=True)
        assert len(lazy) == 0 and lazy.meta == flow.meta and lazy.name == flow.name

    # -- updates ---------------------------------------------------------------------------

    def test_update_atom_details_writes_only_that_atom(self, persistence: Persistence) -> None:
        book = make_book(atoms=3)
        persistence.save_logbook(book)
        flow = _only_flow(book)
        first, second, _ = list(flow)
        second.state = AtomState.FAILURE  # changed locally, never written
        flow.state = FlowState.RUNNING
        first.state, first.results = AtomState.SUCCESS, {"answer": 42}
        returned = persistence.update_atom_details(first)
        assert returned == first
        assert persistence.get_atom_details(first.uuid) == first
        assert persistence.get_atom_details(second.uuid).state is AtomState.PENDING
        assert persistence.get_flow_details(flow.uuid, lazy=True).state is FlowState.PENDING

    def test_update_atom_details_twice(self, persistence: Persistence) -> None:
        book = make_book(atoms=1)
        persistence.save_logbook(book)
        atom = next(iter(_only_flow(book)))
        for state, result in ((AtomState.RUNNING, None), (AtomState.SUCCESS, "done")):
            atom.state, atom.results = state, result
            persistence.update_atom_details(atom)
        got = persistence.get_atom_details(atom.uuid)
        assert (got.state, got.results) == (AtomState.SUCCESS, "done")

    def test_update_flow_details_upserts_atoms(self, persistence: Persistence) -> None:
        book = make_book(flows=2, atoms=2)
        persistence.save_logbook(book)
        flow, other = list(book)
        existing = next(iter(flow))
        existing.state = AtomState.SUCCESS
        added = RetryDetail("added-retry", results=[[1, {}]])
        flow.add(added)
        flow.state, flow.meta = FlowState.SUCCESS, {"store": {"y": "ÿ"}}
        assert persistence.update_flow_details(flow) == flow
        got = persistence.get_flow_details(flow.uuid)
        assert got == flow
        assert [a.name for a in got] == ["task-0-0", "task-0-1", "added-retry"]
        assert persistence.get_flow_details(other.uuid) == other
        assert list(persistence.get_logbook(book.uuid)) == [flow, other]

    def test_update_flow_details_keeps_atoms_it_does_not_list(
            self, persistence: Persistence) -> None:
        book = make_book(atoms=2)
        persistence.save_logbook(book)
        flow = _only_flow(book)
        lazy = persistence.get_flow_details(flow.uuid, lazy=True)
        lazy.state = FlowState.RUNNING
        persistence.update_flow_details(lazy)
        got = persistence.get_flow_details(flow.uuid)
        assert got.state is FlowState.RUNNING
        assert [a.uuid for a in got] == list(flow.atoms)

    def test_update_flow_state_writes_only_the_state(self, persistence: Persistence) -> None:
        book = make_book(flows=2, atoms=2)
        book.flows[next(iter(book.flows))].meta = {"factory": {"name": "m:f"}}
        persistence.save_logbook(book)
        flow, other = list(book)
        persistence.update_flow_state(flow.uuid, FlowState.RUNNING)
        got = persistence.get_flow_details(flow.uuid)
        assert got.state is FlowState.RUNNING
        assert got.meta == flow.meta and list(got) == list(flow)
        assert persistence.get_flow_details(other.uuid) == other
        persistence.update_flow_state(flow.uuid, None)
        assert persistence.get_flow_details(flow.uuid, lazy=True).state is None
        with pytest.raises(errors.NotFound):
            persistence.update_flow_state("no-such-flow", FlowState.RUNNING)

    def test_concurrent_atom_updates_from_threads(self, persistence: Persistence) -> None:
        book = make_book(atoms=8)
        persistence.save_logbook(book)
        atoms = list(_only_flow(book))
        failures: list[BaseException] = []

        def work(atom: AtomDetail) -> None:
            try:
                for step in range(5):
                    atom.results = step
                    persistence.update_atom_details(atom)
            except BaseException as exc:  # reported by the assertion below
                failures.append(exc)

        threads = [threading.Thread(target=work, args=(a,)) for a in atoms]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert failures == []
        assert [a.results for a in persistence.get_atoms_for_flow(_only_flow(book).uuid)] == [4] * 8

    # -- fenced writes ---------------------------------------------------------------------

    @staticmethod
    def _fenced_writes(persistence: Persistence, flow: FlowDetail,
                       fence: Fence | None, mark: str) -> None:
        """Every engine write of ``flow``, with ``fence``, leaving ``mark`` in what it wrote."""
        atom = next(iter(flow))
        atom.state, atom.results = AtomState.SUCCESS, mark
        persistence.update_atom_details(atom, fence=fence)
        persistence.update_flow_state(flow.uuid, FlowState.RUNNING, fence=fence)
        lazy = FlowDetail(flow.name, flow.uuid, FlowState.SUSPENDED, {"mark": mark})
        persistence.update_flow_details(lazy, fence=fence)

    def test_writes_with_the_taken_fence_land(self, persistence: Persistence) -> None:
        book = make_book(atoms=2)
        persistence.save_logbook(book)
        flow = _only_flow(book)
        fence = Fence(new_uuid(), 1)
        persistence.take_flow(flow.uuid, fence)
        self._fenced_writes(persistence, flow, fence, "owner")
        got = persistence.get_flow_details(flow.uuid)
        assert (got.state, got.meta) == (FlowState.SUSPENDED, {"mark": "owner"})
        assert next(iter(got)).results == "owner"

    def test_a_newer_take_refuses_the_older_fence(self, persistence: Persistence) -> None:
        book = make_book(atoms=2)
        persistence.save_logbook(book)
        flow = _only_flow(book)
        job = new_uuid()
        persistence.take_flow(flow.uuid, Fence(job, 1))
        persistence.take_flow(flow.uuid, Fence(job, 2))
        before = persistence.get_flow_details(flow.uuid)
        atom = next(iter(flow))
        atom.state, atom.results = AtomState.SUCCESS, "stale"
        with pytest.raises(errors.FencedOut):
            persistence.update_atom_details(atom, fence=Fence(job, 1))
        with pytest.raises(errors.FencedOut):
            persistence.update_flow_state(flow.uuid, FlowState.SUCCESS, fence=Fence(job, 1))
        stale = FlowDetail(flow.name, flow.uuid, FlowState.SUCCESS, {"mark": "stale"})
        stale.add(TaskDetail("added-by-stale-owner"))
        with pytest.raises(errors.FencedOut):
            persistence.update_flow_details(stale, fence=Fence(job, 1))
        # A larger fence than the recorded one is refused as well: writes must match exactly.
        with pytest.raises(errors.FencedOut):
            persistence.update_atom_details(atom, fence=Fence(job, 3))
        assert persistence.get_flow_details(flow.uuid) == before  # nothing was written
        self._fenced_writes(persistence, flow, Fence(job, 2), "new owner")
        assert next(iter(persistence.get_flow_details(flow.uuid))).results == "new owner"

    def test_an_older_take_is_refused(self, persistence: Persistence) -> None:
        book = make_book()
        persistence.save_logbook(book)
        flow = _only_flow(book)
        job = new_uuid()
        persistence.take_flow(flow.uuid, Fence(job, 5))
        with pytest.raises(errors.FencedOut) as refused:
            persistence.take_flow(flow.uuid, Fence(job, 4))
        assert not isinstance(refused.value, errors.StorageFailure)  # never retried as outage
        persistence.take_flow(flow.uuid, Fence(job, 5))  # taking again with the same fence
        self._fenced_writes(persistence, flow, Fence(job, 5), "owner")
        with pytest.raises(errors.FencedOut):
            self._fenced_writes(persistence, flow, Fence(job, 4), "stale")

    def test_take_says_whether_the_flow_was_taken_before(
            self, persistence: Persistence) -> None:
        book = make_book(flows=2)
        persistence.save_logbook(book)
        flow, other = list(book)
        job = new_uuid()
        assert persistence.take_flow(flow.uuid, Fence(job, 1)) is True  # never taken before
        assert persistence.take_flow(flow.uuid, Fence(job, 1)) is False
        assert persistence.take_flow(flow.uuid, Fence(job, 2)) is False
        assert persistence.take_flow(flow.uuid, Fence(new_uuid(), 1)) is False
        assert persistence.take_flow(other.uuid, Fence(job, 9)) is True  # per flow
        with pytest.raises(errors.FencedOut):
            persistence.take_flow(other.uuid, Fence(job, 8))

    def test_a_take_by_another_job_wins(self, persistence: Persistence) -> None:
        book = make_book()
        persistence.save_logbook(book)
        flow = _only_flow(book)
        trashed, requeued = new_uuid(), new_uuid()
        persistence.take_flow(flow.uuid, Fence(trashed, 7))
        persistence.take_flow(flow.uuid, Fence(requeued, 1))  # a new job: fences restart
        with pytest.raises(errors.FencedOut):
            self._fenced_writes(persistence, flow, Fence(trashed, 7), "stale")
        self._fenced_writes(persistence, flow, Fence(requeued, 1), "requeued")
        assert persistence.get_flow_details(flow.uuid).meta == {"mark": "requeued"}

    def test_fenced_writes_to_a_flow_never_taken_are_refused(
            self, persistence: Persistence) -> None:
        book = make_book()
        persistence.save_logbook(book)
        flow = _only_flow(book)
        before = persistence.get_flow_details(flow.uuid)
        with pytest.raises(errors.FencedOut):
            self._fenced_writes(persistence, flow, Fence(new_uuid(), 1), "stale")
        assert persistence.get_flow_details(flow.uuid) == before

    def test_unfenced_writes_land_whatever_the_fence(self, persistence: Persistence) -> None:
        book = make_book()
        persistence.save_logbook(book)
        flow = _only_flow(book)
        persistence.take_flow(flow.uuid, Fence(new_uuid(), 3))
        self._fenced_writes(persistence, flow, None, "unfenced")
        got = persistence.get_flow_details(flow.uuid)
        assert (got.state, got.meta) == (FlowState.SUSPENDED, {"mark": "unfenced"})
        assert next(iter(got)).results == "unfenced"

    def test_saving_the_logbook_keeps_the_fence(self, persistence: Persistence) -> None:
        book = make_book()
        persistence.save_logbook(book)
        flow = _only_flow(book)
        fence = Fence(new_uuid(), 2)
        persistence.take_flow(flow.uuid, fence)
        persistence.save_logbook(persistence.get_logbook(book.uuid))
        self._fenced_writes(persistence, flow, fence, "owner")
        with pytest.raises(errors.FencedOut):
            persistence.update_flow_state(flow.uuid, FlowState.RUNNING,
                                          fence=Fence(fence.job, 1))

    def test_fenced_calls_on_unknown_ids_raise_not_found(
            self, persistence: Persistence) -> None:
        persistence.save_logbook(make_book())
        fence = Fence(new_uuid(), 1)
        with pytest.raises(errors.NotFound):
            persistence.take_flow(new_uuid(), fence)
        with pytest.raises(errors.NotFound):
            persistence.update_atom_details(TaskDetail("never-saved"), fence=fence)
        with pytest.raises(errors.NotFound):
            persistence.update_flow_state(new_uuid(), FlowState.RUNNING, fence=fence)
        with pytest.raises(errors.NotFound):
            persistence.update_flow_details(FlowDetail("never-saved"), fence=fence)

    # -- writes together (update_many) ----------------------------------------------------

    def test_update_many_lands_every_write_at_once(self, persistence: Persistence) -> None:
        book = make_book(atoms=3)
        persistence.save_logbook(book)
        flow = _only_flow(book)
        job = new_uuid()
        fence = Fence(job, 1)
        first, second, _ = list(flow)
        first.state, first.results = AtomState.SUCCESS, RICH_VALUE
        second.state = AtomState.RUNNING
        ended = self._claim(job, 1, flow, ended_at=dt.datetime(2026, 1, 2, 3, 5, tzinfo=dt.UTC),
                            outcome="consumed")
        persistence.update_many(FlowWrites(flow.uuid, state=FlowState.RUNNING,
                                           atoms=[first, second], take=True,
                                           started=self._claim(job, 1, flow), ended=ended),
                                fence=fence)
        got = persistence.get_flow_details(flow.uuid)
        assert got.state == FlowState.RUNNING and got.fence == fence
        assert got.meta == flow.meta  # a state write leaves the meta alone
        assert [(ad.state, ad.results) for ad in got] == [
            (AtomState.SUCCESS, RICH_VALUE), (AtomState.RUNNING, None),
            (AtomState.PENDING, None)]
        assert [c.outcome for c in persistence.job_history(job)] == ["consumed"]
        # The flow's row and new atoms, with the state over the row's own.
        extra = TaskDetail("extra", state=AtomState.RUNNING)
        lazy = FlowDetail(flow.name, flow.uuid, FlowState.PENDING, {"mark": 1})
        lazy.add(extra)
        persistence.update_many(FlowWrites(flow.uuid, flow=lazy, state=FlowState.SUCCESS),
                                fence=fence)
        got = persistence.get_flow_details(flow.uuid)
        assert (got.state, got.meta) == (FlowState.SUCCESS, {"mark": 1})
        assert [ad.name for ad in got][-1] == "extra" and len(got) == 4

    def test_update_many_with_a_stale_fence_writes_nothing(
            self, persistence: Persistence) -> None:
        book = make_book(atoms=2)
        persistence.save_logbook(book)
        flow = _only_flow(book)
        job = new_uuid()
        persistence.take_flow(flow.uuid, Fence(job, 2))
        before = persistence.get_flow_details(flow.uuid)
        atom = next(iter(flow))
        atom.state, atom.results = AtomState.SUCCESS, "stale"
        lazy = FlowDetail(flow.name, flow.uuid, FlowState.SUCCESS, {"mark": "stale"})
        lazy.add(TaskDetail("new-atom"))
        for stale in (Fence(job, 1), Fence(job, 3), Fence(new_uuid(), 2)):
            for writes in (FlowWrites(flow.uuid, atoms=[atom]),
                           FlowWrites(flow.uuid, state=FlowState.SUCCESS, atoms=[atom],
                                      ended=self._claim(job, 1, flow, outcome="consumed")),
                           FlowWrites(flow.uuid, flow=lazy, atoms=[atom]),
                           FlowWrites(flow.uuid, take=True, atoms=[atom],
                                      started=self._claim(job, 1, flow))):
                with pytest.raises(errors.FencedOut):
                    persistence.update_many(writes, fence=stale)
        assert persistence.get_flow_details(flow.uuid) == before
        assert persistence.job_history(job) == []

    def test_update_many_refused_by_one_write_writes_none(
            self, persistence: Persistence) -> None:
        book = make_book(atoms=1)
        persistence.save_logbook(book)
        flow = _only_flow(book)
        fence = Fence(new_uuid(), 1)
        persistence.take_flow(flow.uuid, fence)
        before = persistence.get_flow_details(flow.uuid)
        atom = next(iter(flow))
        atom.state = AtomState.SUCCESS
        for given in (fence, None):
            with pytest.raises(errors.NotFound):
                persistence.update_many(FlowWrites(
                    flow.uuid, state=FlowState.SUCCESS,
                    atoms=[atom, TaskDetail("never-saved")]), fence=given)
        assert persistence.get_flow_details(flow.uuid) == before
        with pytest.raises(errors.NotFound):
            persistence.update_many(FlowWrites(new_uuid(), state=FlowState.SUCCESS))
        with pytest.raises(ValueError, match="fence"):
            persistence.update_many(FlowWrites(flow.uuid, take=True))

    def test_a_take_in_update_many_only_takes_a_flow_never_taken(
            self, persistence: Persistence) -> None:
        book = make_book(flows=2, atoms=1)
        persistence.save_logbook(book)
        flow, other = list(book)
        job = new_uuid()
        fence = Fence(job, 1)
        start = self._claim(job, 1, flow)
        writes = FlowWrites(flow.uuid, take=True, started=start, state=FlowState.RUNNING)
        persistence.update_many(writes, fence=fence)
        persistence.update_many(writes, fence=fence)  # retried: same fence, no-op take
        assert persistence.get_flow_details(flow.uuid).fence == fence
        assert [c.fence for c in persistence.job_history(job)] == [1]
        with pytest.raises(errors.FencedOut):  # taken by another claim since it was read
            persistence.update_many(writes, fence=Fence(job, 2))
        persistence.take_flow(other.uuid, Fence(new_uuid(), 5))
        with pytest.raises(errors.FencedOut):
            persistence.update_many(FlowWrites(other.uuid, take=True), fence=fence)

    def test_update_many_then_runs_inside_and_fails_with_the_writes(
            self, persistence: Persistence) -> None:
        """``FlowWrites.then`` (another component's writes in the same database) runs once,
        inside the transaction, after the writes; an error from it writes nothing, and a
        refused write never calls it. A backend with no ``database`` refuses it."""
        book = make_book(atoms=1)
        persistence.save_logbook(book)
        flow = _only_flow(book)
        job = new_uuid()
        fence = Fence(job, 1)
        persistence.take_flow(flow.uuid, fence)
        before = persistence.get_flow_details(flow.uuid)
        calls: list[Any] = []

        def failing(handle: Any) -> None:
            calls.append(handle)
            raise errors.FencedOut("the other component refused")

        atom = next(iter(flow))
        atom.state = AtomState.SUCCESS
        writes = FlowWrites(flow.uuid, state=FlowState.SUCCESS, atoms=[atom],
                            ended=self._claim(job, 1, flow, outcome="consumed"), then=failing)
        if persistence.database is None:
            with pytest.raises(ValueError, match="shared database"):
                persistence.update_many(writes, fence=fence)
            assert persistence.get_flow_details(flow.uuid) == before
            return
        with pytest.raises(errors.FencedOut, match="other component"):
            persistence.update_many(writes, fence=fence)
        assert len(calls) == 1 and calls[0] is not None
        assert persistence.get_flow_details(flow.uuid) == before
        assert persistence.job_history(job) == []
        with pytest.raises(errors.FencedOut):  # refused before ``then``: never called
            persistence.update_many(writes, fence=Fence(job, 2))
        assert len(calls) == 1
        persistence.update_many(dataclasses.replace(writes, then=calls.append), fence=fence)
        assert len(calls) == 2
        got = persistence.get_flow_details(flow.uuid)
        assert got.state == FlowState.SUCCESS and [ad.state for ad in got] == [AtomState.SUCCESS]
        assert [c.outcome for c in persistence.job_history(job)] == ["consumed"]

    def test_a_deferred_take_rides_on_the_first_fenced_write(
            self, persistence: Persistence) -> None:
        book = make_book(atoms=2)
        persistence.save_logbook(book)
        flow = _only_flow(book)
        job = new_uuid()
        fence = Fence(job, 1)
        assert persistence.get_flow_details(flow.uuid).fence is None
        assert persistence.take_flow(flow.uuid, fence, claim=self._claim(job, 1, flow),
                                     defer=True) is True
        assert persistence.get_flow_details(flow.uuid).fence is None  # nothing written yet
        assert persistence.job_history(job) == []
        atom = next(iter(flow))
        atom.state = AtomState.RUNNING
        persistence.update_atom_details(atom, fence=fence)
        got = persistence.get_flow_details(flow.uuid)
        assert got.fence == fence and next(iter(got)).state == AtomState.RUNNING
        assert [c.fence for c in persistence.job_history(job)] == [1]
        # A stale claim deferring its take too is refused at its first write.
        stale = new_uuid()
        persistence.take_flow(flow.uuid, Fence(stale, 1), defer=True)
        with pytest.raises(errors.FencedOut):
            persistence.update_flow_state(flow.uuid, FlowState.SUCCESS, fence=Fence(stale, 1))
        persistence.forget_claim(flow.uuid, Fence(stale, 1))
        assert persistence.get_flow_details(flow.uuid).state == FlowState.PENDING

    # -- not found -------------------------------------------------------------------------

    @pytest.mark.parametrize("getter", [
        "get_logbook", "get_flow_details", "get_atom_details", "get_flows_for_book",
        "get_atoms_for_flow", "destroy_logbook",
    ])
    def test_unknown_ids_raise_not_found(self, persistence: Persistence, getter: str) -> None:
        persistence.save_logbook(make_book())
        with pytest.raises(errors.NotFound):
            getattr(persistence, getter)(new_uuid())

    def test_update_unsaved_atom_raises_not_found(self, persistence: Persistence) -> None:
        persistence.save_logbook(make_book())
        with pytest.raises(errors.NotFound):
            persistence.update_atom_details(TaskDetail("never-saved"))

    def test_update_unsaved_flow_raises_not_found(self, persistence: Persistence) -> None:
        persistence.save_logbook(make_book())
        flow = FlowDetail("never-saved")
        flow.add(TaskDetail("orphan"))
        with pytest.raises(errors.NotFound):
            persistence.update_flow_details(flow)
        with pytest.raises(errors.NotFound):
            persistence.get_atom_details(next(iter(flow)).uuid)

    # -- deletion --------------------------------------------------------------------------

    def test_destroy_logbook_cascades(self, persistence: Persistence) -> None:
        book = make_book(flows=2, atoms=2)
        keep = make_book(flows=1, atoms=1)
        persistence.save_logbook(book)
        persistence.save_logbook(keep)
        persistence.destroy_logbook(book.uuid)
        with pytest.raises(errors.NotFound):
            persistence.get_logbook(book.uuid)
        for flow in book:
            with pytest.raises(errors.NotFound):
                persistence.get_flow_details(flow.uuid)
            for atom in flow:
                with pytest.raises(errors.NotFound):
                    persistence.get_atom_details(atom.uuid)
        assert persistence.get_logbook(keep.uuid).flows == keep.flows
        assert [b.uuid for b in persistence.get_logbooks()] == [keep.uuid]
        with pytest.raises(errors.NotFound):
            persistence.destroy_logbook(book.uuid)

    def test_destroyed_logbook_can_be_saved_again(self, persistence: Persistence) -> None:
        book = make_book()
        persistence.save_logbook(book)
        persistence.destroy_logbook(book.uuid)
        persistence.save_logbook(book)
        assert persistence.get_logbook(book.uuid).flows == book.flows

    def test_clear_all(self, persistence: Persistence) -> None:
        books = [make_book(flows=2) for _ in range(3)]
        for book in books:
            persistence.save_logbook(book)
        persistence.clear_all()
        assert list(persistence.get_logbooks()) == []
        flow = next(iter(books[0]))
        with pytest.raises(errors.NotFound):
            persistence.get_flow_details(flow.uuid)
        with pytest.raises(errors.NotFound):
            persistence.get_atom_details(next(iter(flow)).uuid)
        persistence.save_logbook(books[0])  # still usable afterwards
        assert len(list(persistence.get_logbooks())) == 1

    # -- serialisation ---------------------------------------------------------------------

    def test_non_json_result_names_the_atom(self, persistence: Persistence) -> None:
        book = make_book(atoms=1)
        persistence.save_logbook(book)
        atom = next(iter(_only_flow(book)))
        atom.results = {"when": object()}
        with pytest.raises(errors.SerializationError, match="task-0-0"):
            persistence.update_atom_details(atom)
        assert persistence.get_atom_details(atom.uuid).results is None

    def test_non_json_value_in_save_logbook_writes_nothing(
            self, persistence: Persistence) -> None:
        book = make_book(atoms=2)
        list(_only_flow(book))[1].meta["bad"] = {1, 2}
        with pytest.raises(errors.SerializationError, match="task-0-1"):
            persistence.save_logbook(book)
        with pytest.raises(errors.NotFound):
            persistence.get_logbook(book.uuid)

    def test_nan_is_refused(self, persistence: Persistence) -> None:
        book = make_book(atoms=1)
        persistence.save_logbook(book)
        atom = next(iter(_only_flow(book)))
        atom.results = float("nan")
        with pytest.raises(errors.SerializationError, match="task-0-0"):
            persistence.update_atom_details(atom)

    def test_non_json_flow_meta_in_update_flow_details(self, persistence: Persistence) -> None:
        book = make_book()
        persistence.save_logbook(book)
        flow = _only_flow(book)
        flow.meta["bad"] = object()
        with pytest.raises(errors.SerializationError, match="flow-0"):
            persistence.update_flow_details(flow)

    # -- job history -----------------------------------------------------------------------

    @staticmethod
    def _claim(job: str, fence: int, flow: FlowDetail | None = None, *,
               at: dt.datetime | None = None, **ended: Any) -> Claim:
        at = at or dt.datetime(2026, 1, 2, 3, 4, 5, 6000 + fence, tzinfo=dt.UTC)
        return Claim(job_uuid=job, fence=fence, owner=f"c{fence}@host", claimed_at=at,
                     job_name="job-name", book_uuid=None,
                     flow_uuid=flow.uuid if flow is not None else None, **ended)

    def test_a_take_records_the_claim_start(self, persistence: Persistence) -> None:
        book = make_book()
        persistence.save_logbook(book)
        flow = _only_flow(book)
        job = new_uuid()
        start = self._claim(job, 1, flow)
        persistence.take_flow(flow.uuid, Fence(job, 1), claim=start)
        assert persistence.job_history(job) == [start]
        # A retried take keeps the claim recorded once, and never overwrites its end.
        ended = self._claim(job, 1, flow, ended_at=start.claimed_at, outcome="abandoned",
                            reason="r", flow_state="SUSPENDED", atoms=["a", "b"])
        persistence.record_claim(ended)
        persistence.take_flow(flow.uuid, Fence(job, 1), claim=start)
        assert persistence.job_history(job) == [ended]
        second = self._claim(job, 2, flow)  # a take replacing a fence records it too
        persistence.take_flow(flow.uuid, Fence(job, 2), claim=second)
        assert persistence.job_history(job) == [ended, second]
        # A take replacing a fence ends the job's earlier claims recorded with no end (their
        # conductor died): as lost claims, ending when the new claim began.
        third = self._claim(job, 3, flow)
        persistence.take_flow(flow.uuid, Fence(job, 3), claim=third)
        lost = persistence.job_history(job)[1]
        assert (lost.fence, lost.outcome, lost.ended_at) == (2, "lost claim", third.claimed_at)
        assert lost.reason is not None and "without an outcome" in lost.reason
        assert persistence.job_history(job)[0] == ended  # an ended claim is left alone

    def test_a_refused_take_records_no_claim(self, persistence: Persistence) -> None:
        book = make_book()
        persistence.save_logbook(book)
        flow = _only_flow(book)
        job = new_uuid()
        persistence.take_flow(flow.uuid, Fence(job, 3))
        with pytest.raises(errors.FencedOut):
            persistence.take_flow(flow.uuid, Fence(job, 2), claim=self._claim(job, 2, flow))
        with pytest.raises(errors.NotFound):
            persistence.take_flow(new_uuid(), Fence(job, 4), claim=self._claim(job, 4))
        assert persistence.job_history(job) == []

    def test_record_claim_adds_then_replaces_by_job_and_fence(
            self, persistence: Persistence) -> None:
        job, other = new_uuid(), new_uuid()
        first = self._claim(job, 1, outcome="lost claim", reason="claim lost: x",
                            ended_at=dt.datetime(2026, 1, 2, 4, tzinfo=dt.UTC))
        persistence.record_claim(self._claim(job, 2))
        persistence.record_claim(first)
        persistence.record_claim(self._claim(other, 1))
        done = self._claim(job, 2, outcome="consumed", flow_state="SUCCESS", atoms=["t"],
                           ended_at=dt.datetime(2026, 1, 2, 5, tzinfo=dt.UTC))
        persistence.record_claim(done)
        assert persistence.job_history(job) == [first, done]  # ordered by fence
        assert persistence.job_history(new_uuid()) == []
        assert [c.to_dict()["outcome"] for c in persistence.job_history(other)] == [None]

    def test_find_jobs_and_logbooks_by_prefix(self, persistence: Persistence) -> None:
        jobs = ["abc00000-0000-4000-8000-000000000001", "abc00000-0000-4000-8000-000000000002",
                "abd00000-0000-4000-8000-000000000003"]
        for job in jobs:
            persistence.record_claim(self._claim(job, 1))
            persistence.record_claim(self._claim(job, 2))
        assert persistence.find_jobs("ab") == sorted(jobs)
        assert persistence.find_jobs("ABC") == jobs[:2]
        assert persistence.find_jobs("abd00000-0000-4000-8000-000000000003") == jobs[2:]
        assert persistence.find_jobs("ab", limit=1) in (jobs[:1], jobs[1:2], jobs[2:])
        assert persistence.find_jobs("ff") == []
        assert persistence.find_jobs("a%") == []  # not a uuid prefix: matches nothing
        assert persistence.find_jobs("a_c") == []
        book = make_book()
        persistence.save_logbook(book)
        found = persistence.find_logbooks(book.uuid[:6])
        assert [b.uuid for b in found] == [book.uuid]
        assert persistence.find_logbooks("%") == []

    def test_list_flows_summarises_state_job_error_attempts(
            self, persistence: Persistence) -> None:
        failed, ok, never = make_book(name="f"), make_book(name="o"), make_book(name="n")
        _only_flow(failed).meta["factory"] = {"name": "app:etl"}
        for book in (failed, ok, never):
            persistence.save_logbook(book)
        failed_flow, ok_flow = _only_flow(failed), _only_flow(ok)
        persistence.update_flow_state(failed_flow.uuid, FlowState.REVERTED)
        persistence.update_flow_state(ok_flow.uuid, FlowState.SUCCESS)
        job = new_uuid()
        t0 = dt.datetime(2026, 1, 2, 3, tzinfo=dt.UTC)
        persistence.record_claim(self._claim(
            job, 1, failed_flow, at=t0, ended_at=t0 + dt.timedelta(seconds=1),
            outcome="abandoned", reason="ExecutionFailure: boom"))
        persistence.record_claim(self._claim(
            job, 2, failed_flow, at=t0 + dt.timedelta(seconds=2),
            ended_at=t0 + dt.timedelta(seconds=5), outcome="consumed",
            reason="flow failed: ValueError: bad", flow_state="REVERTED"))
        persistence.record_claim(self._claim(
            new_uuid(), 1, ok_flow, at=t0, ended_at=t0 + dt.timedelta(hours=2),
            outcome="consumed", flow_state="SUCCESS"))
        everything = persistence.list_flows()
        assert [s.flow_uuid for s in everything] == [
            _only_flow(never).uuid, ok_flow.uuid, failed_flow.uuid]  # newest first
        (reverted,) = persistence.list_flows(state="REVERTED")
        assert (reverted.job_uuid, reverted.attempts, reverted.error, reverted.factory,
                reverted.duration) == (job, 2, "flow failed: ValueError: bad", "app:etl", 5.0)
        assert [s.flow_uuid for s in persistence.list_flows(state=FlowState.PENDING)] == [
            _only_flow(never).uuid]
        assert [s.flow_uuid for s in persistence.list_flows(
            since=t0 + dt.timedelta(hours=1))] == [ok_flow.uuid]
        assert [s.flow_uuid for s in persistence.list_flows(factory="app:etl")] == [
            failed_flow.uuid]
        assert len(persistence.list_flows(limit=2)) == 2
        # A recorded error on the flow (a validation failure) wins over claim reasons.
        persistence.update_flow_details(FlowDetail(
            failed_flow.name, failed_flow.uuid, FlowState.FAILURE,
            {"error": "MissingDependencies: x"}))
        (failure,) = persistence.list_flows(state="FAILURE")
        assert failure.error == "MissingDependencies: x"
        with pytest.raises(ValueError):
            persistence.list_flows(state="NOPE")

    def test_list_flows_of_a_factory_finds_them_behind_newer_flows_of_others(
            self, persistence: Persistence) -> None:
        wanted = []
        for i in range(3):
            book = make_book(name=f"etl-{i}")
            _only_flow(book).meta["factory"] = {"name": "app:etl"}
            persistence.save_logbook(book)
            wanted.append(_only_flow(book).uuid)
        for i in range(12):  # newer flows of another factory, more than limit * 4
            book = make_book(name=f"report-{i}")
            _only_flow(book).meta["factory"] = {"name": "app:report"}
            persistence.save_logbook(book)
        found = persistence.list_flows(factory="app:etl", limit=2)
        assert [s.flow_uuid for s in found] == [wanted[2], wanted[1]]
        assert [s.flow_uuid for s in persistence.list_flows(factory="app:etl", limit=5)] == [
            wanted[2], wanted[1], wanted[0]]
        assert persistence.list_flows(factory="app:none") == []
        with pytest.raises(ValueError, match="limit"):
            persistence.list_flows(limit=0)

    def test_claim_counts_since(self, persistence: Persistence) -> None:
        t0 = dt.datetime(2026, 1, 2, 3, tzinfo=dt.UTC)
        ends = [("consumed", "SUCCESS", 10), ("consumed", "REVERTED", 20),
                ("trashed", None, 30), ("abandoned", "SUSPENDED", 40),
                ("consumed", "SUCCESS", -10)]
        for i, (outcome, state, secs) in enumerate(ends):
            persistence.record_claim(self._claim(
                new_uuid(), i + 1, at=t0 - dt.timedelta(hours=1),
                ended_at=t0 + dt.timedelta(seconds=secs), outcome=outcome, flow_state=state))
        persistence.record_claim(self._claim(new_uuid(), 9, at=t0))  # still running
        counts = persistence.claim_counts(t0)
        assert counts == {"finished": 3, "failed": 2, "consumed": 2, "trashed": 1,
                          "abandoned": 1}
        assert persistence.claim_counts(t0 + dt.timedelta(seconds=25))["finished"] == 1

    def test_clear_all_clears_the_history(self, persistence: Persistence) -> None:
        job = new_uuid()
        persistence.record_claim(self._claim(job, 1))
        persistence.clear_all()
        assert persistence.job_history(job) == []

    # -- lifecycle -------------------------------------------------------------------------

    def test_upgrade_is_idempotent(self, persistence: Persistence) -> None:
        book = make_book()
        persistence.save_logbook(book)
        persistence.upgrade()
        persistence.upgrade()
        persistence.validate()
        assert persistence.get_logbook(book.uuid).flows == book.flows


# -- acceptance helpers: many processes, one database ----------------------------------------

#: The module-level tasks of the flows ``run_concurrent_flows`` runs (spawned processes import
#: them by name). With input ``x`` a flow stores a = x + 1, b = 2a, c = b - 3.
def _step_a(x: int) -> int:
    return x + 1


def _step_b(a: int) -> int:
    return a * 2


def _step_c(b: int) -> int:
    return b - 3


def expected_results(x: int) -> dict[str, int]:
    """The atom results a ``run_concurrent_flows`` flow with input ``x`` must store."""
    a = x + 1
    return {"step_a": a, "step_b": a * 2, "step_c": a * 2 - 3}


class _RetryCounter(logging.Handler):
    """Counts the base class's "storage operation failed ... retry" warnings."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _report(conn: Connection, body: Any) -> None:
    try:
        conn.send(("ok", body()))
    except BaseException as exc:  # reported to the parent, which fails the test
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def upgrade_worker(url: str, start: Event, conn: Connection) -> None:
    """Subprocess body of ``run_concurrent_upgrade``."""
    from legato import persistence

    def body() -> None:
        backend = persistence.connect(url)
        try:
            if not start.wait(60):
                raise TimeoutError("never told to start")
            backend.upgrade()
            backend.validate()
        finally:
            backend.close()

    _report(conn, body)


def flows_worker(url: str, worker: int, flows: int, start: Event, conn: Connection) -> None:
    """Subprocess body of ``run_concurrent_flows``: run ``flows`` small linear flows."""
    from legato import engine, persistence
    from legato.flow import FunctionTask, LinearFlow

    counter = _RetryCounter()
    logging.getLogger("legato.persistence").addHandler(counter)

    def body() -> tuple[list[tuple[str, int]], list[str]]:
        backend = persistence.connect(url)
        runs: list[tuple[str, int]] = []
        try:
            if not start.wait(60):
                raise TimeoutError("never told to start")
            for i in range(flows):
                x = worker * 100_000 + i
                flow = LinearFlow(f"w{worker}-f{i}").add(
                    FunctionTask(_step_a, name="step_a", provides="a"),
                    FunctionTask(_step_b, name="step_b", provides="b"),
                    FunctionTask(_step_c, name="step_c", provides="c"))
                loaded = engine.load(flow, store={"x": x}, persistence=backend)
                loaded.run()
                runs.append((loaded.flow_detail.uuid, x))
        finally:
            backend.close()
        return runs, counter.messages

    _report(conn, body)


def _in_processes(target: Any, args: list[tuple[Any, ...]], timeout: float) -> list[Any]:
    """Run ``target(*args[i], start, conn)`` in spawned processes released together."""
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    pipes, procs = [], []
    for arg in args:
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=target, args=(*arg, start, child))
        proc.start()
        child.close()
        pipes.append(parent)
        procs.append(proc)
    start.set()
    results: list[Any] = []
    failures: list[str] = []
    try:
        for parent, proc in zip(pipes, procs, strict=True):
            if not parent.poll(timeout):
                failures.append(f"process {proc.pid} did not answer within {timeout}s")
                continue
            try:
                status, value = parent.recv()
            except EOFError:
                failures.append(f"process {proc.pid} died")
                continue
            (results if status == "ok" else failures).append(value)
    finally:
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
    assert not failures, f"{len(failures)} of {len(procs)} processes failed: {failures}"
    return results


def run_concurrent_upgrade(url: str, *, processes: int = 4, timeout: float = 60.0) -> None:
    """``processes`` processes call ``upgrade()`` then ``validate()`` on ``url`` at once;
    every one must succeed."""
    _in_processes(upgrade_worker, [(url,)] * processes, timeout)


@dataclasses.dataclass
class ConcurrentFlowsResult:
    """What ``run_concurrent_flows`` saw.

    Attributes:
        flows: how many flows ran and were checked.
        retries: the storage retries the processes logged (each a ``StorageFailure`` that a
            retry hid, such as SQLite's "database is locked").
    """

    flows: int
    retries: list[str]


def run_concurrent_flows(url: str, *, processes: int = 4, flows: int = 50,
                         timeout: float = 90.0) -> ConcurrentFlowsResult:
    """``processes`` processes each run ``flows`` three-task linear flows through the serial
    engine, all recording into ``url`` at once (upgraded beforehand). Then every flow detail
    must be SUCCESS with each atom SUCCESS and holding its right result."""
    from legato import persistence

    results = _in_processes(flows_worker, [(url, w, flows) for w in range(processes)], timeout)
    runs = [run for worker_runs, _ in results for run in worker_runs]
    retries = [message for _, messages in results for message in messages]
    assert len(runs) == processes * flows, len(runs)
    checker = persistence.connect(url)
    try:
        for flow_uuid, x in runs:
            stored = checker.get_flow_details(flow_uuid)
            assert stored.state is FlowState.SUCCESS, (stored.name, stored.state)
            got = {ad.name: (ad.state, ad.results) for ad in stored}
            want = {name: (AtomState.SUCCESS, value)
                    for name, value in expected_results(x).items()}
            assert got == want, (stored.name, got, want)
    finally:
        checker.close()
    return ConcurrentFlowsResult(flows=len(runs), retries=retries)
