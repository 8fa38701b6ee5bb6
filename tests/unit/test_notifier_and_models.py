"""The notifier's cached listener lists, and JSON copies of stored values."""

from __future__ import annotations

import collections
import uuid
from typing import Any

from legato.notifier import ANY, Notifier
from legato.persistence.models import TaskDetail, copy_json, new_uuid


def test_listeners_registered_or_removed_after_an_emit_take_effect() -> None:
    notifier = Notifier()
    seen: list[tuple[str, str]] = []

    def first(event: str, details: dict[str, Any]) -> None:
        seen.append(("first", event))

    def every(event: str, details: dict[str, Any]) -> None:
        seen.append(("every", event))

    notifier.register("a", first)
    notifier.notify("a", {})
    notifier.register(ANY, every)  # after "a" was emitted once: must not be missed
    notifier.notify("a", {})
    notifier.notify("b", {})
    assert notifier.deregister("a", first)
    notifier.notify("a", {})
    assert seen == [("first", "a"), ("first", "a"), ("every", "a"), ("every", "b"),
                    ("every", "a")]
    assert not notifier.deregister("a", first)


def test_a_failing_listener_does_not_stop_the_others() -> None:
    notifier = Notifier()
    seen: list[str] = []

    def broken(event: str, details: dict[str, Any]) -> None:
        raise RuntimeError("listener bug")

    notifier.register("a", broken)
    notifier.register("a", lambda event, details: seen.append(event))
    notifier.notify("a", {})
    assert seen == ["a"]


def test_copy_json_is_deep_and_keeps_types() -> None:
    value = {"a": [1, 2.5, {"b": None, "c": "text"}], "d": True, "e": {"f": [[]]}}
    copied = copy_json(value)
    assert copied == value
    copied["a"][2]["b"] = "changed"
    copied["e"]["f"][0].append(1)
    assert value["a"][2]["b"] is None and value["e"]["f"] == [[]]
    ordered = collections.OrderedDict(x=[1])  # a dict subclass: copied deeply all the same
    again = copy_json({"o": ordered})
    again["o"]["x"].append(2)
    assert ordered["x"] == [1]
    assert copy_json(7) == 7 and copy_json(None) is None


def test_length_and_truth_follow_registrations() -> None:
    notifier = Notifier()
    assert not notifier and len(notifier) == 0

    def listener(event: str, details: dict[str, Any]) -> None:
        pass

    notifier.register("a", listener)
    notifier.register(ANY, listener)
    assert notifier and len(notifier) == 2
    assert notifier.deregister("a", listener)
    assert not notifier.deregister("a", listener)  # not there any more: the count stays
    assert notifier and len(notifier) == 1
    assert notifier.deregister(ANY, listener)
    assert not notifier and len(notifier) == 0


def test_atom_detail_copies_share_no_value() -> None:
    fields = ("results", "failure", "revert_results", "revert_failure", "meta")
    original = TaskDetail("a", **{f: {"list": [f]} for f in fields})
    copied = original.copy()
    assert copied == original and type(copied) is TaskDetail
    for field in fields:
        getattr(copied, field)["list"].append("changed")
    assert all(getattr(original, f) == {"list": [f]} for f in fields)
    scalars = TaskDetail("b", results=3, revert_results="text")
    assert scalars.copy() == scalars


def test_new_uuid_is_a_random_version_4_uuid_in_canonical_text() -> None:
    values = {new_uuid() for _ in range(200)}
    assert len(values) == 200
    for value in values:
        parsed = uuid.UUID(value)
        assert str(parsed) == value
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
