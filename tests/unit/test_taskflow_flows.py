"""Flows and arguments as TaskFlow documents them ("Patterns", "Arguments and results").

Each test is written from TaskFlow's documented behaviour: a flow's ``requires`` per pattern,
``revert_requires``/``revert_rebind``, ``inject`` keyed by the name an atom reads, and graph
flows refusing a dependency cycle as soon as the atom or link closing it is added.
"""

from __future__ import annotations

from typing import Any

import pytest

import legato
import legato.engine as le
from legato import errors
from legato.engine.compiler import compile_flow
from legato.flow import (
    AlwaysRevert,
    GraphFlow,
    History,
    LinearFlow,
    Task,
    UnorderedFlow,
    task,
)
from legato.taskflow import exceptions as tf_exceptions


class NeedsX(Task):
    def execute(self, x: int) -> int:
        return x


class One(Task):
    def execute(self) -> int:
        return 1


class Boom(Task):
    def execute(self) -> None:
        raise ValueError("boom")


# -- Flow.requires per pattern -----------------------------------------------------------------


def test_flow_requires_follows_the_pattern_and_nested_flows_compose() -> None:
    # The issue's two examples: an unordered flow's atoms cannot feed each other, and an atom
    # that provides what it needs still needs it.
    assert UnorderedFlow("uf").add(One("t1", provides="x"), NeedsX("t2")).requires == {"x"}
    assert LinearFlow("lf").add(NeedsX("t", provides="x")).requires == {"x"}
    # Linear: only earlier atoms count; graph: only what an edge brings.
    assert LinearFlow("lf").add(One("p", provides="x"), NeedsX("t")).requires == frozenset()
    assert GraphFlow("g").add(NeedsX("t"), One("p", provides="x")).requires == frozenset()
    # Nested: an unordered subflow after a provider is satisfied; before it, it is not; a
    # graph holding the unordered flow and a provider draws the edge.
    inner = UnorderedFlow("u").add(One("a", provides="y"), NeedsX("b"))
    assert LinearFlow("f").add(One("p", provides="x"), inner).requires == frozenset()
    inner2 = UnorderedFlow("u2").add(NeedsX("c"))
    assert LinearFlow("f2").add(inner2, One("q", provides="x")).requires == {"x"}
    inner3 = UnorderedFlow("u3").add(NeedsX("d"))
    assert GraphFlow("g2").add(inner3, One("r", provides="x")).requires == frozenset()


def test_unordered_flow_reads_what_it_requires_from_the_store() -> None:
    flow = UnorderedFlow("uf").add(One("t1", provides="x"), NeedsX("t2", provides="out"))
    with pytest.raises(errors.MissingDependencies, match="t2 needs x"):
        le.load(flow).validate()
    assert le.run(flow, store={"x": 5})["out"] == 5


def test_missing_dependencies_is_a_dependency_failure_as_in_taskflow() -> None:
    # TaskFlow: class MissingDependencies(DependencyFailure); code catching the broader
    # error (``except exceptions.DependencyFailure``) must catch a missing input too.
    flow = LinearFlow("f").add(NeedsX("t"))
    with pytest.raises(errors.DependencyFailure, match="t needs x"):
        le.load(flow).validate()
    assert issubclass(tf_exceptions.MissingDependencies, tf_exceptions.DependencyFailure)


# -- revert_requires / revert_rebind -----------------------------------------------------------


class Undoable(Task):
    """Reverts with an argument of its own, ``token``, that ``execute`` does not take."""

    def __init__(self, name: str, journal: list[Any], **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.journal = journal

    def execute(self, a: int) -> int:
        self.journal.append(("execute", self.name, a))
        return a

    def revert(self, token: str, result: Any, flow_failures: dict[str, Any],
               **kwargs: Any) -> None:
        self.journal.append(("revert", self.name, token, result, sorted(flow_failures), kwargs))


def test_revert_takes_its_own_arguments_checked_before_anything_runs() -> None:
    journal: list[Any] = []
    flow = LinearFlow("f").add(Undoable("u", journal), Boom("boom"))
    # revert's own argument counts in what the atom (and so the flow) requires.
    assert flow.requires == {"a", "token"}
    with pytest.raises(errors.MissingDependencies, match="u needs token"):
        le.run(flow, store={"a": 1})
    assert journal == []  # nothing ran
    with pytest.raises(ValueError, match="boom"):
        le.run(flow, store={"a": 1, "token": "t-1"})
    assert journal == [("execute", "u", 1), ("revert", "u", "t-1", 1, ["boom"], {"a": 1})]


def test_revert_rebind_and_revert_requires() -> None:
    journal: list[Any] = []
    undo = Undoable("u", journal, revert_rebind={"token": "undo_token"},
                    revert_requires=["extra"])
    assert undo.requires == {"a", "undo_token", "extra"}
    flow = LinearFlow("f").add(undo, Boom("boom"))
    with pytest.raises(errors.MissingDependencies, match="u needs extra, undo_token"):
        le.run(flow, store={"a": 1, "token": "ignored"})
    with pytest.raises(ValueError, match="boom"):
        le.run(flow, store={"a": 2, "undo_token": "t-2", "extra": "e"})
    assert journal[-1] == ("revert", "u", "t-2", 2, ["boom"], {"a": 2, "extra": "e"})


def test_revert_rebind_defaults_to_rebind_and_functions_take_it_too() -> None:
    seen: list[Any] = []

    def undo(x: int, result: Any) -> None:
        seen.append((x, result))

    @task(revert=undo, rebind={"x": "y"}, provides="r")
    def double(x: int) -> int:
        return 2 * x

    # revert's ``x`` is read as ``y``, like execute's.
    assert double.requires == {"y"}
    with pytest.raises(ValueError, match="boom"):
        le.run(LinearFlow("f").add(double, Boom("boom")), store={"y": 4})
    assert seen == [(4, 8)]
    # With a revert_rebind of its own, revert reads another name.
    seen.clear()
    other = double.copy(name="other", revert_rebind={"x": "z"})
    assert other.requires == {"y", "z"}
    with pytest.raises(ValueError, match="boom"):
        le.run(LinearFlow("f").add(other, Boom("boom")), store={"y": 4, "z": 9})
    assert seen == [(9, 8)]


def test_a_retry_reverts_with_arguments_of_its_own() -> None:
    seen: list[Any] = []

    class Noting(AlwaysRevert):
        def revert(self, history: History, why: str, **kwargs: Any) -> None:
            seen.append((len(history), why))

    flow = LinearFlow("f", retry=Noting(name="r")).add(Boom("boom"))
    with pytest.raises(errors.MissingDependencies, match="r needs why"):
        le.run(flow)
    with pytest.raises(ValueError, match="boom"):
        le.run(flow, store={"why": "because"})
    assert seen == [(1, "because")]


# -- inject keyed by the name read -------------------------------------------------------------


def test_inject_is_keyed_by_the_name_read_after_rebinding() -> None:
    # TaskFlow's atoms read injected values under the mapped (stored) name.
    by_stored = NeedsX("t", rebind={"x": "y"}, inject={"y": 5}, provides="out")
    assert by_stored.requires == frozenset()
    assert le.run(LinearFlow("f").add(by_stored))["out"] == 5
    # Keyed by the parameter's name, it is not what the atom reads: it reads ``y``.
    by_param = NeedsX("t", rebind={"x": "y"}, inject={"x": 5}, provides="out")
    assert by_param.requires == {"y"}
    assert le.run(LinearFlow("f").add(by_param), store={"y": 7})["out"] == 7
    # Without a rebind the two names are one.
    plain = NeedsX("t", inject={"x": 3}, provides="out")
    assert plain.requires == frozenset()
    assert le.run(LinearFlow("f").add(plain))["out"] == 3


def test_injected_names_the_atom_does_not_read_are_not_passed() -> None:
    class TakesAll(Task):
        def execute(self, **kwargs: Any) -> list[str]:
            return sorted(kwargs)

    got = TakesAll("t", requires=["a"], inject={"a": 1, "unread": 2}, provides="keys")
    assert le.run(LinearFlow("f").add(got))["keys"] == ["a"]


# -- graph cycles at add/link time -------------------------------------------------------------


class P(Task):
    def execute(self, y: int) -> int:
        return y


def test_graph_add_refuses_the_atom_closing_a_cycle() -> None:
    assert issubclass(errors.DependencyFailure, errors.LegatoError)
    assert legato.DependencyFailure is errors.DependencyFailure
    flow = GraphFlow("g").add(P("p", provides="x"))
    with pytest.raises(errors.DependencyFailure, match="cycle"):
        flow.add(NeedsX("q", provides="y"))
    assert [child.name for child in flow] == ["p"]  # the flow is left as it was
    # Also inside nested flows, and for several items added at once.
    with pytest.raises(errors.DependencyFailure):
        GraphFlow("g2").add(LinearFlow("l").add(P("p", provides="x")),
                            UnorderedFlow("u").add(NeedsX("q", provides="y")))


def test_graph_link_refuses_the_link_closing_a_cycle() -> None:
    a, b, c = One("a"), One("b"), One("c")
    flow = GraphFlow("g").add(a, b, c).link(a, b).link(b, c)
    with pytest.raises(errors.DependencyFailure, match="cycle"):
        flow.link(c, a)
    assert [(x.name, y.name) for x, y, _ in flow.links] == [("a", "b"), ("b", "c")]
    # A link against an implied edge closes a cycle too.
    p, q = One("p", provides="x"), NeedsX("q")
    implied = GraphFlow("g3").add(p, q)
    with pytest.raises(errors.DependencyFailure):
        implied.link(q, p)
    assert compile_flow(implied).by_name["q"].preds == (0,)
