"""Stock listeners: logging, printing, timing (persisted) and capture."""

from __future__ import annotations

import contextlib
import io
import logging

import pytest

import legato.engine as le
from legato.engine.listeners import (
    CaptureListener,
    LoggingListener,
    PrintingListener,
    TimingListener,
)
from legato.flow import LinearFlow, task
from legato.persistence.memory import MemoryPersistence


@task(provides="a")
def first() -> int:
    return 1


@task
def broken(a: int) -> None:
    raise RuntimeError("nope")


def test_timing_listener_persists_durations() -> None:
    persistence = MemoryPersistence()
    engine = le.load(LinearFlow("f").add(first, broken), persistence=persistence)
    with TimingListener(engine), pytest.raises(RuntimeError):
        engine.run()
    stored = persistence.get_flow_details(engine.flow_detail.uuid)
    meta = stored.find_by_name(first.name).meta
    assert meta["duration"] >= 0.0 and meta["revert_duration"] >= 0.0
    assert stored.find_by_name(broken.name).meta["duration"] >= 0.0


def test_logging_listener_logs_failures_as_warnings(caplog: pytest.LogCaptureFixture) -> None:
    engine = le.load(LinearFlow("f").add(first, broken))
    caplog.set_level(logging.DEBUG, logger="legato.engine")
    with LoggingListener(engine), pytest.raises(RuntimeError):
        engine.run()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("-> FAILURE" in m and "nope" in m for m in warnings)
    assert any("flow 'f' -> REVERTED" in r.getMessage() for r in caplog.records)


def test_printing_listener_and_deregistration() -> None:
    stream = io.StringIO()
    engine = le.load(LinearFlow("f").add(first))
    with PrintingListener(engine, stream=stream):
        engine.run()
    assert f"atom '{first.name}' -> SUCCESS" in stream.getvalue()
    assert len(engine.notifier) == 0 and len(engine.atom_notifier) == 0


def test_capture_listener_payloads() -> None:
    engine = le.load(LinearFlow("f").add(first, broken))
    capture = CaptureListener(engine)
    capture.register()
    with pytest.raises(RuntimeError):
        engine.run()
    capture.deregister()
    assert capture.flow_states == ["RUNNING", "REVERTING", "REVERTED"]
    failure_event = next(d for e, d in capture.events if e == "FAILURE")
    assert failure_event["atom_name"] == broken.name
    assert failure_event["failure"].check(RuntimeError)
    assert (broken.name, "REVERTED") in capture.atom_states


class _CountingPersistence(MemoryPersistence):
    """Memory persistence counting the engine's writes (one per transaction)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def update_atom_details(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.writes += 1
        return super().update_atom_details(*args, **kwargs)

    def update_flow_details(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.writes += 1
        return super().update_flow_details(*args, **kwargs)

    def update_flow_state(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.writes += 1
        return super().update_flow_state(*args, **kwargs)

    def update_many(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.writes += 1
        return super().update_many(*args, **kwargs)


@task(provides="b")
def second(a: int) -> int:
    return a + 1


@pytest.mark.parametrize("fails", [False, True], ids=["success", "revert"])
def test_timing_costs_no_write_of_its_own(fails: bool) -> None:
    # Durations are stamped into the atom's meta by the engine, in the write that records the
    # atom's end state: a timed run makes exactly the writes of an untimed one.
    writes = []
    for timed in (False, True):
        persistence = _CountingPersistence()
        flow = LinearFlow("f").add(first, broken if fails else second)
        engine = le.load(flow, persistence=persistence)
        with TimingListener(engine) if timed else contextlib.nullcontext():
            if fails:
                with pytest.raises(RuntimeError):
                    engine.run()
            else:
                engine.run()
        writes.append(persistence.writes)
        stored = persistence.get_flow_details(engine.flow_detail.uuid)
        meta = stored.find_by_name(first.name).meta
        assert ("duration" in meta) is timed
        assert ("revert_duration" in meta) is (timed and fails)
    assert writes[0] == writes[1]


def test_atom_timer_gets_each_end_state_and_its_call_time_and_stores_nothing() -> None:
    persistence = MemoryPersistence()
    engine = le.load(LinearFlow("f").add(first, broken), persistence=persistence)
    timed: list[tuple[str, float]] = []
    engine.atom_timer = lambda state, seconds: timed.append((state, seconds))
    with pytest.raises(RuntimeError):
        engine.run()
    assert [state for state, _ in timed] == ["SUCCESS", "FAILURE", "REVERTED", "REVERTED"]
    assert all(seconds >= 0.0 for _, seconds in timed)
    stored = persistence.get_flow_details(engine.flow_detail.uuid)
    assert all("duration" not in ad.meta and "revert_duration" not in ad.meta
               for ad in stored)
