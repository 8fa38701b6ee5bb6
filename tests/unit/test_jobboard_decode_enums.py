"""``decode_record`` checks a record's state and priority by lookup, refusing what is not one."""

from __future__ import annotations

from typing import Any

import pytest

from legato import errors
from legato.jobboard.base import decode_record
from legato.states import JobPriority, JobState


def _record(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"uuid": "u1", "name": "n", "details": {}, "created_on": 1.0,
                              "book_uuid": None, "book_name": None,
                              "sequence": 1, "attempts": 0, "fence": 0, "priority": 0,
                              "state": "UNCLAIMED"}
    record.update(changes)
    return record


@pytest.mark.parametrize("state", list(JobState))
def test_every_state_decodes_to_its_member(state: JobState) -> None:
    assert decode_record(_record(state=str(state))).state is state
    assert decode_record(_record(state=state)).state is state


@pytest.mark.parametrize("priority", [int(p) for p in JobPriority])
def test_every_priority_decodes(priority: int) -> None:
    assert decode_record(_record(priority=priority)).priority == priority


@pytest.mark.parametrize("state", ["BOGUS", "unclaimed", 3, None, ["UNCLAIMED"]])
def test_a_state_that_is_none_is_garbage(state: Any) -> None:
    with pytest.raises(errors.GarbageRecord):
        decode_record(_record(state=state))


@pytest.mark.parametrize("priority", [3, -3, 99])
def test_a_priority_that_is_none_is_garbage(priority: int) -> None:
    with pytest.raises(errors.GarbageRecord, match=str(priority)):
        decode_record(_record(priority=priority))
