"""Engines on memory persistence: running, reverting, retrying, resuming, validating."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import pytest

import legato.engine as le
from legato import errors
from legato.engine.listeners import CaptureListener
from legato.failure import Failure
from legato.flow import (
    AlwaysRevert,
    ForEach,
    GraphFlow,
    LinearFlow,
    ParameterizedForEach,
    Task,
    Times,
    UnorderedFlow,
    task,
)
from legato.persistence.base import FlowWrites
from legato.persistence.memory import MemoryPersistence
from legato.persistence.models import (
    Claim,
    Fence,
    FlowDetail,
    LogBook,
    RetryDetail,
    TaskDetail,
    utcnow,
)
from legato.states import AtomState, EngineState, FlowState


class Recorder(Task):
    """Appends what it does to a shared journal; ``fail_on`` attempts raise."""

    def __init__(self, name: str, journal: list[Any], *, fail: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.journal = journal
        self.fail = fail

    def execute(self, **kwargs: Any) -> Any:
        self.journal.append(("execute", self.name, kwargs))
        if self.fail:
            raise ValueError(f"{self.name} failed")
        return f"result-{self.name}"

    def revert(self, result: Any, flow_failures: dict[str, Failure], **kwargs: Any) -> None:
        self.journal.append(("revert", self.name, result, sorted(flow_failures)))


def _chain(journal: list[Any], count: int, fail_at: int | None = None) -> list[Recorder]:
    tasks = []
    for i in range(1, count + 1):
        requires = [f"r{i - 1}"] if i > 1 else []
        tasks.append(Recorder(f"t{i}", journal, fail=(i == fail_at), provides=f"r{i}",
                              requires=requires))
    return tasks


def test_linear_run_passes_results_along() -> None:
    journal: list[Any] = []
    values = le.run(LinearFlow("f").add(*_chain(journal, 3)))
    assert values == {"r1": "result-t1", "r2": "result-t2", "r3": "result-t3"}
    assert [j[2] for j in journal] == [{}, {"r1": "result-t1"}, {"r2": "result-t2"}]


def test_failing_fourth_task_reverts_in_reverse_order_with_results() -> None:
    journal: list[Any] = []
    persistence = MemoryPersistence()
    engine = le.load(LinearFlow("f").add(*_chain(journal, 5, fail_at=4)),
                     persistence=persistence)
    with pytest.raises(ValueError, match="t4 failed"):
        engine.run()
    reverts = [j for j in journal if j[0] == "revert"]
    assert [r[1] for r in reverts] == ["t4", "t3", "t2", "t1"]
    assert [r[2] for r in reverts[1:]] == ["result-t3", "result-t2", "result-t1"]
    assert isinstance(reverts[0][2], Failure) and reverts[0][2].check(ValueError)
    assert all(r[3] == ["t4"] for r in reverts)
    stored = persistence.get_flow_details(engine.flow_detail.uuid)
    assert stored.state == FlowState.REVERTED
    states = {ad.name: ad.state for ad in stored}
    assert states == {"t1": AtomState.REVERTED, "t2": AtomState.REVERTED,
                      "t3": AtomState.REVERTED, "t4": AtomState.REVERTED,
                      "t5": AtomState.PENDING}
    assert stored.find_by_name("t4").failure["exc_type_names"][0] == "builtins.ValueError"


def test_times_retries_scope_then_reverts_and_persists_history() -> None:
    journal: list[Any] = []
    persistence = MemoryPersistence()
    flow = LinearFlow("f", retry=Times(3, name="retry")).add(*_chain(journal, 2, fail_at=2))
    engine = le.load(flow, persistence=persistence)
    with pytest.raises(ValueError):
        engine.run()
    assert [j[1] for j in journal if j[0] == "execute"] == ["t1", "t2"] * 3
    assert [j[1] for j in journal if j[0] == "revert"] == ["t2", "t1"] * 3
    stored = persistence.get_flow_details(engine.flow_detail.uuid)
    retry = stored.find_by_name("retry")
    assert isinstance(retry, RetryDetail)
    assert [attempt for attempt, _ in retry.results] == [1, 2, 3]
    assert all(list(failures) == ["t2"] for _, failures in retry.results)
    assert retry.state == AtomState.REVERTED
    assert stored.state == FlowState.REVERTED
    stats = engine.statistics
    assert (stats["executed"], stats["retried"], stats["reverted"]) == (9, 2, 7)


def test_retry_succeeds_on_a_later_value() -> None:
    seen: list[str] = []

    @task(provides="used")
    def connect(host: str) -> str:
        seen.append(host)
        if host != "c":
            raise ConnectionError(host)
        return host

    flow = LinearFlow("f", retry=ForEach(["a", "b", "c"], provides="host")).add(connect)
    assert le.run(flow)["used"] == "c"
    assert seen == ["a", "b", "c"]


def test_parameterized_for_each_reads_values_from_store() -> None:
    @task(provides="chosen")
    def pick(value: int) -> int:
        if value < 2:
            raise ValueError(value)
        return value

    flow = LinearFlow("f", retry=ParameterizedForEach(provides="value")).add(pick)
    assert le.run(flow, store={"values": [0, 1, 2, 3]})["chosen"] == 2


def test_nested_revert_escalates_to_outer_retry() -> None:
    attempts: list[int] = []

    @task(provides="x")
    def flaky(n: int) -> int:
        attempts.append(n)
        if n < 2:
            raise RuntimeError("not yet")
        return n

    inner = LinearFlow("inner", retry=AlwaysRevert(name="inner_retry")).add(flaky)
    outer = LinearFlow("outer", retry=Times(3, name="outer_retry", provides="n")).add(inner)
    assert le.run(outer)["x"] == 2
    assert attempts == [1, 2]


def test_revert_failure_ends_in_failure_state() -> None:
    class BadRevert(Task):
        def execute(self) -> int:
            return 1

        def revert(self, **kwargs: Any) -> None:
            raise OSError("cannot undo")

    @task
    def boom() -> None:
        raise ValueError("boom")

    engine = le.load(LinearFlow("f").add(BadRevert("bad"), boom))
    with pytest.raises(errors.WrappedFailure) as info:
        engine.run()
    assert info.value.check(ValueError) and info.value.check(OSError)
    assert engine.storage.flow_detail.state == FlowState.FAILURE
    assert engine.storage.get_atom_state("bad") == AtomState.REVERT_FAILURE


def test_validate_names_every_missing_argument() -> None:
    class Needs(Task):
        def execute(self, a: int, b: int, c: int = 0) -> None: ...

    flow = LinearFlow("f").add(Needs("one"), Needs("two", rebind={"a": "z"}))
    engine = le.load(flow, store={"b": 1})
    with pytest.raises(errors.MissingDependencies) as info:
        engine.validate()
    assert info.value.missing == {"one": ["a"], "two": ["z"]}
    assert "one needs a" in str(info.value) and "two needs z" in str(info.value)
    assert engine.storage.get_atom_state("one") == AtomState.PENDING


def test_optional_argument_used_when_available() -> None:
    @task(provides="out")
    def scaled(x: int, factor: int = 10) -> int:
        return x * factor

    assert le.run(LinearFlow("f").add(scaled), store={"x": 2})["out"] == 20
    assert le.run(LinearFlow("f").add(scaled), store={"x": 2, "factor": 3})["out"] == 6


def test_provides_tuple_and_keys_are_split() -> None:
    @task(provides=("q", "r"))
    def divide(a: int, b: int) -> tuple[int, int]:
        return divmod(a, b)

    @task(provides={"lo", "hi"})
    def bounds(q: int, r: int) -> dict[str, int]:
        return {"lo": r, "hi": q}

    values = le.run(LinearFlow("f").add(divide, bounds), store={"a": 7, "b": 2})
    assert (values["q"], values["r"], values["lo"], values["hi"]) == (3, 1, 1, 3)


def test_non_json_result_names_the_task_and_keeps_state() -> None:
    @task(provides="obj")
    def make_object() -> object:
        return object()

    persistence = MemoryPersistence()
    engine = le.load(LinearFlow("f").add(make_object), persistence=persistence)
    with pytest.raises(errors.SerializationError, match=make_object.name):
        engine.run()
    stored = persistence.get_flow_details(engine.flow_detail.uuid)
    assert stored.state == FlowState.REVERTED
    ad = stored.find_by_name(make_object.name)
    assert ad.failure is not None and "SerializationError" in ad.failure["exc_type_names"][0]


def test_progress_is_persisted_and_emitted() -> None:
    class Slow(Task):
        def execute(self) -> None:
            self.update_progress(0.5)
            self.update_progress(2.0)  # clamped

    persistence = MemoryPersistence()
    engine = le.load(LinearFlow("f").add(Slow("slow")), persistence=persistence)
    with CaptureListener(engine) as capture:
        engine.run()
    assert isinstance(capture, CaptureListener)
    assert capture.progress == [("slow", 0.5), ("slow", 1.0)]
    stored = persistence.get_flow_details(engine.flow_detail.uuid)
    assert stored.find_by_name("slow").meta["progress"] == 1.0


def test_events_in_order() -> None:
    journal: list[Any] = []
    engine = le.load(LinearFlow("f").add(*_chain(journal, 2)))
    with CaptureListener(engine) as capture:
        engine.run()
    assert isinstance(capture, CaptureListener)
    assert capture.flow_states == ["RUNNING", "SUCCESS"]
    assert capture.atom_states == [("t1", "RUNNING"), ("t1", "SUCCESS"),
                                   ("t2", "RUNNING"), ("t2", "SUCCESS")]
    success = next(d for e, d in capture.events if e == "SUCCESS" and "atom_name" in d)
    assert success["result"] == "result-t1" and success["old_state"] == AtomState.RUNNING


def test_suspend_between_yields_then_resume_skips_done_atoms() -> None:
    journal: list[Any] = []
    persistence = MemoryPersistence()
    engine = le.load(LinearFlow("f").add(*_chain(journal, 4)), persistence=persistence)
    states = []
    for state in engine.run_iter():
        states.append(state)
        if len(journal) == 2:
            engine.suspend()
    assert states[-1] == EngineState.SUSPENDED
    assert [j[1] for j in journal] == ["t1", "t2"]
    fd = persistence.get_flow_details(engine.flow_detail.uuid)
    assert fd.state == FlowState.SUSPENDED
    chain = _chain(journal, 4)
    values = le.run(LinearFlow("f").add(*chain), persistence=persistence, flow_detail=fd)
    assert [j[1] for j in journal] == ["t1", "t2", "t3", "t4"]
    assert journal[2][2] == {"r2": "result-t2"}
    assert values["r4"] == "result-t4"


def test_resume_reruns_atoms_left_running() -> None:
    journal: list[Any] = []
    persistence = MemoryPersistence()
    book = LogBook("b")
    fd = FlowDetail("f")
    book.add(fd)
    persistence.save_logbook(book)
    engine = le.load(LinearFlow("f").add(*_chain(journal, 2)), persistence=persistence,
                     flow_detail=fd)
    engine.prepare()
    ad = engine.storage.get_atom_detail("t1")
    ad.state = AtomState.RUNNING  # as if the process died mid-task
    persistence.update_atom_details(ad)
    loaded = persistence.get_flow_details(fd.uuid)
    le.run(LinearFlow("f").add(*_chain(journal, 2)), persistence=persistence,
           flow_detail=loaded)
    assert [j[1] for j in journal] == ["t1", "t2"]


def test_store_is_saved_and_restored() -> None:
    persistence = MemoryPersistence()

    @task(provides="out")
    def echo(x: int, y: int) -> list[int]:
        return [x, y]

    engine = le.load(LinearFlow("f").add(echo), persistence=persistence, store={"x": 1, "y": 2})
    engine.prepare()
    fd = persistence.get_flow_details(engine.flow_detail.uuid)
    assert fd.meta["store"] == {"x": 1, "y": 2}
    assert le.run(LinearFlow("f").add(echo), persistence=persistence, flow_detail=fd,
                  store={"y": 5})["out"] == [1, 5]


def test_prepare_writes_new_atoms_in_one_call() -> None:
    class Counting(MemoryPersistence):
        flow_writes = 0

        def _update_flow_details(self, flow_detail: FlowDetail, fence: Any) -> None:
            type(self).flow_writes += 1
            super()._update_flow_details(flow_detail, fence)

    persistence = Counting()
    engine = le.load(LinearFlow("f").add(*_chain([], 6)), persistence=persistence)
    engine.prepare()
    assert Counting.flow_writes == 1
    assert len(persistence.get_flow_details(engine.flow_detail.uuid)) == 6


def test_reset_runs_again() -> None:
    journal: list[Any] = []
    engine = le.load(LinearFlow("f").add(*_chain(journal, 2)))
    engine.run()
    engine.reset()
    assert engine.storage.get_atom_state("t1") == AtomState.PENDING
    engine.run()
    assert [j[1] for j in journal] == ["t1", "t2", "t1", "t2"]
    assert engine.statistics["runs"] == 2


def test_engine_kinds_by_name_and_url() -> None:
    flow = LinearFlow("f").add(*_chain([], 1))
    assert isinstance(le.load(flow), le.SerialEngine)
    engine = le.load(flow, engine="parallel://?max_workers=3")
    assert isinstance(engine, le.ParallelEngine) and engine.executor.capacity == 3
    with pytest.raises(errors.UnknownBackend, match="serial"):
        le.load(flow, engine="warp")


def test_parallel_engine_runs_branches_at_once() -> None:
    barrier = threading.Barrier(3, timeout=10)

    class Meet(Task):
        def execute(self) -> str:
            barrier.wait()  # only passes if all three run at the same time
            return self.name

    flow = UnorderedFlow("u").add(*(Meet(f"m{i}", provides=f"m{i}") for i in range(3)))
    assert le.run(flow, engine="parallel", max_workers=3) == {"m0": "m0", "m1": "m1",
                                                               "m2": "m2"}


def test_parallel_failures_are_wrapped() -> None:
    barrier = threading.Barrier(2, timeout=10)

    class Fail(Task):
        def execute(self) -> None:
            barrier.wait()
            raise ValueError(self.name)

    with pytest.raises(errors.WrappedFailure) as info:
        le.run(UnorderedFlow("u").add(Fail("a"), Fail("b")), engine="parallel")
    assert len(info.value) == 2


def test_graph_flow_in_parallel_respects_dependencies() -> None:
    order: list[str] = []
    lock = threading.Lock()

    def make(name: str, needs: list[str]) -> Task:
        class T(Task):
            def execute(self, **kwargs: Any) -> str:
                with lock:
                    order.append(name)
                return name
        return T(name, provides=name, requires=needs)

    flow = GraphFlow("g").add(make("d", ["b", "c"]), make("b", ["a"]), make("c", ["a"]),
                              make("a", []))
    le.run(flow, engine="parallel")
    assert order[0] == "a" and order[-1] == "d"


def test_engine_internal_storage_failure_propagates() -> None:
    class Broken(MemoryPersistence):
        def _update_atom_details(self, atom_detail: Any, fence: Any) -> None:
            raise errors.StorageFailure("down")

        def _update_many(self, writes: Any, fence: Any) -> None:
            if writes.atoms or (writes.flow is not None and writes.flow.atoms):
                raise errors.StorageFailure("down")
            super()._update_many(writes, fence)

    journal: list[Any] = []
    engine = le.load(LinearFlow("f").add(*_chain(journal, 2)),
                     persistence=Broken(retries=1, retry_delay=0.0))
    with pytest.raises(errors.StorageFailure):
        engine.run()
    assert journal == []  # nothing ran without its RUNNING state recorded


def test_engine_bug_is_an_execution_failure() -> None:
    class BrokenRetry(Times):
        def delay(self, history: Any) -> float:
            raise RuntimeError("bug in the retry")

    @task
    def boom() -> None:
        raise ValueError("boom")

    flow = LinearFlow("f", retry=BrokenRetry(2, name="r")).add(boom)
    with pytest.raises(errors.ExecutionFailure, match="bug in the retry"):
        le.run(flow)


def test_retry_value_that_is_not_json_fails_cleanly() -> None:
    class OddRetry(Times):
        def execute(self, history: Any, **kwargs: Any) -> Any:
            return object()

    @task
    def fine() -> int:
        return 1

    persistence = MemoryPersistence()
    engine = le.load(LinearFlow("f", retry=OddRetry(2, name="odd")).add(fine),
                     persistence=persistence)
    with pytest.raises(errors.SerializationError, match="'odd'"):
        engine.run()
    stored = persistence.get_flow_details(engine.flow_detail.uuid)
    assert stored.state == FlowState.REVERTED
    assert stored.find_by_name("odd").results == []


def test_suspend_from_another_thread_stops_at_the_next_boundary() -> None:
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    class Gate(Task):
        def execute(self, **kwargs: Any) -> str:
            ran.append(self.name)
            if self.name == "first":
                started.set()
                assert release.wait(10)
            return self.name

    persistence = MemoryPersistence()
    flow = LinearFlow("f").add(Gate("first", provides="a"), Gate("second", requires=["a"]))
    engine = le.load(flow, engine="parallel", persistence=persistence)
    outcome: list[Any] = []
    runner = threading.Thread(target=lambda: outcome.extend(engine.run_iter()))
    runner.start()
    assert started.wait(10)
    engine.suspend()  # from this thread, while "first" runs in the engine's pool
    release.set()
    runner.join(10)
    assert outcome[-1] == EngineState.SUSPENDED
    assert ran == ["first"]
    stored = persistence.get_flow_details(engine.flow_detail.uuid)
    assert stored.state == FlowState.SUSPENDED
    assert stored.find_by_name("first").state == AtomState.SUCCESS


def test_storage_failure_while_saving_progress_is_not_a_revert() -> None:
    class FailsOnProgress(MemoryPersistence):
        def _update_atom_details(self, atom_detail: Any, fence: Any) -> None:
            if "progress" in atom_detail.meta:
                raise errors.StorageFailure("down")
            super()._update_atom_details(atom_detail, fence)

    journal: list[Any] = []

    class Reporter(Recorder):
        def execute(self, **kwargs: Any) -> Any:
            self.update_progress(0.5)
            return super().execute(**kwargs)

    persistence = FailsOnProgress(retries=0)
    flow = LinearFlow("f").add(Recorder("t1", journal), Reporter("t2", journal))
    engine = le.load(flow, persistence=persistence)
    with pytest.raises(errors.StorageFailure):
        engine.run()
    assert [j[0] for j in journal] == ["execute"]  # t1 ran; nothing was reverted
    stored = persistence.get_flow_details(engine.flow_detail.uuid)
    assert stored.state == FlowState.RUNNING
    assert stored.find_by_name("t1").state == AtomState.SUCCESS


def test_resume_of_a_flow_that_died_while_reverting_finishes_the_revert() -> None:
    journal: list[Any] = []
    persistence = MemoryPersistence()
    engine = le.load(LinearFlow("f").add(*_chain(journal, 3)), persistence=persistence)
    engine.prepare()
    failure = Failure.from_exception(ValueError("t3 broke")).to_dict()
    for name, state, results in (("t1", AtomState.SUCCESS, "result-t1"),
                                 ("t2", AtomState.REVERTING, "result-t2"),
                                 ("t3", AtomState.REVERTED, None)):
        ad = engine.storage.get_atom_detail(name)
        ad.state, ad.results = state, results
        ad.failure = failure if name == "t3" else None
        persistence.update_atom_details(ad)
    engine.storage.save_flow_state(FlowState.REVERTING)

    resumed = le.load(LinearFlow("f").add(*_chain(journal, 3)), persistence=persistence,
                      flow_detail=persistence.get_flow_details(engine.flow_detail.uuid))
    with pytest.raises(errors.WrappedFailure) as info:
        resumed.run()
    assert info.value.check(ValueError)
    assert [(j[1], j[2]) for j in journal] == [("t2", "result-t2"), ("t1", "result-t1")]
    stored = persistence.get_flow_details(engine.flow_detail.uuid)
    assert stored.state == FlowState.REVERTED
    assert all(ad.state == AtomState.REVERTED for ad in stored)


def test_flow_state_writes_do_not_rewrite_atoms() -> None:
    writes: list[object] = []

    class Spy(MemoryPersistence):
        def _update_flow_details(self, flow_detail: FlowDetail, fence: Any) -> None:
            writes.append(len(flow_detail))
            super()._update_flow_details(flow_detail, fence)

        def _update_flow_state(self, flow_uuid: str, state: FlowState | None,
                               fence: Any) -> None:
            writes.append(state)
            super()._update_flow_state(flow_uuid, state, fence)

        def _update_many(self, batch: FlowWrites, fence: Any) -> None:
            writes.append((None if batch.flow is None else len(batch.flow), batch.state,
                           [str(ad.state) for ad in batch.atoms]))
            super()._update_many(batch, fence)

    le.run(LinearFlow("f").add(*_chain([], 3)), persistence=Spy())
    # New atoms go out once, with the RUNNING state and the first atom's start; each result
    # goes with the next start; SUCCESS writes the flow's state alone, with the last result.
    assert writes == [(3, None, []), (None, None, ["SUCCESS", "RUNNING"]),
                      (None, None, ["SUCCESS", "RUNNING"]),
                      (None, FlowState.SUCCESS, ["SUCCESS"])]


def test_a_batch_carrying_a_deferred_take_keeps_every_field_of_the_write() -> None:
    """What rides on a claim's first write is added to it; nothing the engine gave is lost."""
    batches: list[FlowWrites] = []

    class Spy(MemoryPersistence):
        def _update_many(self, batch: FlowWrites, fence: Any) -> None:
            batches.append(batch)
            super()._update_many(batch, fence)

    persistence = Spy()
    flow_detail = FlowDetail("f")
    task = TaskDetail("t")
    flow_detail.add(task)
    book = LogBook("b")
    book.add(flow_detail)
    persistence.save_logbook(book)
    fence = Fence("job", 1)
    assert persistence.take_flow(flow_detail.uuid, fence, defer=True)
    task.state = AtomState.RUNNING
    ended = Claim(job_uuid="job", fence=1, owner="me", claimed_at=utcnow(), outcome="x")
    writes = FlowWrites(flow_detail.uuid, state=FlowState.RUNNING, atoms=[task], ended=ended)
    persistence.update_many(writes, fence=fence)
    (batch,) = batches
    assert dataclasses.asdict(batch) == {**dataclasses.asdict(writes), "take": True}
    assert persistence.get_flow_details(flow_detail.uuid).fence == fence
    assert [c.outcome for c in persistence.job_history("job")] == ["x"]


class _TakenOver(Task):
    """Runs, then lets another owner take the flow over before returning (or failing)."""

    def __init__(self, name: str, journal: list[Any], take: Any, *, fail: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.journal, self.take, self.fail = journal, take, fail

    def execute(self) -> str:
        self.journal.append(("execute", self.name))
        self.take()
        if self.fail:
            raise ValueError(f"{self.name} failed")
        return "stale"

    def revert(self, **kwargs: Any) -> None:
        self.journal.append(("revert", self.name))


@pytest.mark.parametrize("fail", [False, True])
def test_a_refused_write_stops_the_engine_and_reverts_nothing(fail: bool) -> None:
    journal: list[Any] = []
    persistence = MemoryPersistence()
    book = LogBook("b")
    flow_detail = FlowDetail("f")
    book.add(flow_detail)
    persistence.save_logbook(book)
    old, new = Fence("job", 1), Fence("job", 2)
    persistence.take_flow(flow_detail.uuid, old)
    flow = LinearFlow("f").add(
        Recorder("t1", journal, provides="r1"),
        _TakenOver("t2", journal, lambda: persistence.take_flow(flow_detail.uuid, new),
                   fail=fail),
        Recorder("t3", journal))
    engine = le.load(flow, persistence=persistence, flow_detail=flow_detail, fence=old)
    with pytest.raises(errors.FencedOut):
        engine.run()
    assert journal == [("execute", "t1", {}), ("execute", "t2")]  # no revert, no t3
    stored = persistence.get_flow_details(flow_detail.uuid)
    assert stored.state is FlowState.RUNNING  # the stale owner wrote nothing more
    assert stored.find_by_name("t2").state is AtomState.RUNNING


def test_a_failure_after_the_fence_is_lost_reverts_nothing() -> None:
    journal: list[Any] = []
    lost = threading.Event()
    persistence = MemoryPersistence()
    flow = LinearFlow("f").add(
        Recorder("t1", journal, provides="r1"),
        _TakenOver("t2", journal, lost.set, fail=True))
    engine = le.load(flow, persistence=persistence, fence_lost=lost)
    with pytest.raises(errors.FencedOut):
        engine.run()
    assert [entry[0] for entry in journal] == ["execute", "execute"]
    stored = persistence.get_flow_details(engine.flow_detail.uuid)
    assert stored.state is FlowState.RUNNING
    assert stored.find_by_name("t1").state is AtomState.SUCCESS


def test_an_engine_without_a_fence_writes_over_a_taken_flow() -> None:
    persistence = MemoryPersistence()
    engine = le.load(LinearFlow("f").add(*_chain([], 2)), persistence=persistence)
    persistence.take_flow(engine.flow_detail.uuid, Fence("job", 1))
    engine.run()
    assert persistence.get_flow_details(engine.flow_detail.uuid).state is FlowState.SUCCESS


def test_an_atom_is_not_called_once_the_claim_is_no_longer_trusted() -> None:
    journal: list[Any] = []
    persistence = MemoryPersistence()
    engine = le.load(LinearFlow("f").add(*_chain(journal, 3)), persistence=persistence)
    asked: list[str] = []

    def trusted() -> bool:  # the lease runs out once t1 has run
        asked.append("asked")
        return not journal

    engine.claim_trusted = trusted
    with pytest.raises(errors.FencedOut, match="starting atom 't2'"):
        engine.run()
    assert [entry[1] for entry in journal] == ["t1"]  # t2's start recorded, t2 not called
    stored = {ad.name: ad.state for ad in persistence.get_flow_details(
        engine.flow_detail.uuid)}
    assert stored["t1"] == AtomState.SUCCESS and stored["t2"] == AtomState.RUNNING
    assert asked == ["asked", "asked"]


def test_a_failure_is_not_reverted_once_the_claim_is_no_longer_trusted() -> None:
    journal: list[Any] = []
    engine = le.load(LinearFlow("f").add(*_chain(journal, 2, fail_at=2)),
                     persistence=MemoryPersistence())
    engine.claim_trusted = lambda: len(journal) < 2  # trusted until t2 has failed
    with pytest.raises(errors.FencedOut):
        engine.run()
    assert [entry[0] for entry in journal] == ["execute", "execute"]  # no revert called
