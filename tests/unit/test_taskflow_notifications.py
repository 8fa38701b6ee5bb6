"""Atom notifications carry TaskFlow's detail keys ("Notifications and listeners").

A task's carry ``task_name`` and ``task_uuid``, a retry's ``retry_name`` and ``retry_uuid``;
each carries ``old_state``, and the finishing states (SUCCESS, FAILURE, REVERTED,
REVERT_FAILURE) carry ``result``: the value returned, or the ``Failure``.
"""

from __future__ import annotations

from typing import Any

import pytest

import legato.engine as le
from legato.failure import Failure
from legato.flow import LinearFlow, Task, Times
from legato.notifier import ANY


class Talk(Task):
    def __init__(self, name: str, word: str, *, fail: bool = False, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.word, self.fail = word, fail

    def execute(self) -> str:
        if self.fail:
            raise ValueError(f"{self.name} cannot talk")
        return self.word

    def revert(self, **kwargs: Any) -> str:
        return f"unsaid {self.word}"


def _capture(engine: le.Engine) -> list[tuple[str, dict[str, Any]]]:
    seen: list[tuple[str, dict[str, Any]]] = []
    engine.atom_notifier.register(ANY, lambda state, details: seen.append((state, details)))
    return seen


def test_a_taskflow_task_listener_sees_task_names_and_uuids() -> None:
    engine = le.load(LinearFlow("cat-dog").add(Talk("CatTalk", "cat"), Talk("DogTalk", "dog")))
    seen = _capture(engine)
    engine.run()
    assert [(state, details["task_name"]) for state, details in seen] == [
        ("RUNNING", "CatTalk"), ("SUCCESS", "CatTalk"),
        ("RUNNING", "DogTalk"), ("SUCCESS", "DogTalk")]
    for _state, details in seen:
        assert details["task_uuid"] == engine.storage.get_atom_uuid(details["task_name"])
        assert "retry_name" not in details


def test_finishing_states_carry_the_result_and_others_do_not() -> None:
    engine = le.load(LinearFlow("f").add(Talk("t1", "cat"), Talk("t2", "dog", fail=True)))
    seen = _capture(engine)
    with pytest.raises(ValueError):
        engine.run()
    by_event = {(details["task_name"], state): details for state, details in seen}
    assert by_event[("t1", "SUCCESS")]["result"] == "cat"
    assert by_event[("t1", "SUCCESS")]["old_state"] == "RUNNING"
    assert by_event[("t1", "REVERTED")]["result"] == "unsaid cat"
    failed = by_event[("t2", "FAILURE")]["result"]
    assert isinstance(failed, Failure) and failed.check(ValueError)
    assert "result" not in by_event[("t1", "RUNNING")]
    assert "result" not in by_event[("t1", "REVERTING")]


def test_a_retry_notification_names_the_retry() -> None:
    engine = le.load(LinearFlow("f", retry=Times(2, name="r")).add(Talk("t1", "cat")))
    seen = _capture(engine)
    engine.run()
    retry_events = [(state, details) for state, details in seen if "retry_name" in details]
    assert [state for state, _ in retry_events] == ["RUNNING", "SUCCESS"]
    for _state, details in retry_events:
        assert details["retry_name"] == "r" and "task_name" not in details
        assert details["retry_uuid"] == engine.storage.get_atom_uuid("r")
    assert "result" in retry_events[1][1]
